// The pieces of the poolformer_lora sample (main.cpp beside this file), kept in a header so
// tests/test_samples.cpp checks the same code the program runs: the seed's timm example
// (../shared/seeds/custom_models.md) — LoRA on every `.mlp.fc1` / `.mlp.fc2` 1×1 conv of
// PoolFormer-M36, the classifier `head.fc` trained in full — plus inference from files.
#pragma once
#include <chrono>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "models/poolformer.h"

namespace peft::samples {

// The seed's config: LoraConfig(target_modules=r".*\.mlp\.fc\d", modules_to_save=["head.fc"]).
inline LoraConfig poolformer_lora_config() {
  LoraConfig config;
  config.target_modules = Regex{R"(.*\.mlp\.fc\d)"};
  config.modules_to_save = std::vector<std::string>{"head.fc"};
  return config;
}

// Prints named_modules() as the seed shows Python's list of (name, type) pairs: the first
// `head` entries, "...", then the last `tail` entries (everything when the list is short).
inline void print_named_modules(nn::Module& model, std::ostream& os, size_t head = 30, size_t tail = 5) {
  auto mods = model.named_modules();
  auto line = [&](size_t i) { return "('" + mods[i].first + "', " + mods[i].second->type_name() + ")"; };
  const bool cut = mods.size() > head + tail;
  os << "[";
  for (size_t i = 0; i < mods.size(); ++i) {
    if (cut && i == head) {
      os << ",\n ...\n " << line(mods.size() - tail);
      i = mods.size() - tail;
      continue;
    }
    os << (i == 0 ? "" : ",\n ") << line(i);
  }
  os << "]\n";
}

// Python's repr of a list of strings: ['a', 'b'].
inline std::string python_list(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", '" : "'") + names[i] + "'";
  return s + "]";
}

struct TrainStepResult {
  double loss_before = 0, loss_after = 0, seconds = 0;
};

// One optimizer step on a random batch (batch × 3 × size × size, labels in [0, num_classes),
// drawn from `seed`), then the loss of the same batch again, so a caller sees the step moved the
// adapter. With `dp` (data-parallel) every rank draws the same batch, runs forward and backward
// on its shard of it (dist::shard; PoolFormer's GroupNorm / LayerNorm are per example, so the
// shards add up to the whole batch exactly), the gradients become the whole batch's
// (sync_gradients weighted by rows, cross_entropy being a mean over rows) and the reported
// losses are the whole batch's.
inline TrainStepResult poolformer_train_step(PeftModel& model, optim::Optimizer& opt, int64_t num_classes,
                                             int64_t batch, int64_t size, uint64_t seed = 0,
                                             DataParallel* dp = nullptr) {
  Generator gen(seed);
  Tensor x = Tensor::randn({batch, 3, size, size}, DType::F32, &gen);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i)
    labels.push_back(static_cast<int64_t>(gen.uniform() * static_cast<double>(num_classes)));
  Tensor y = Tensor::from_vector(labels, {batch});
  const auto [b, e] = dp ? dist::shard(batch, dp->comm().rank(), dp->comm().size()) : std::pair<int64_t, int64_t>{0, batch};
  const Device dev = model.parameters().empty() ? Device::cpu() : model.parameters()[0].device();
  x = x.slice(0, b, e).to(dev);  // this rank's rows go where the model is
  y = y.slice(0, b, e).to(dev);

  TrainStepResult r;
  model.train();
  auto t0 = std::chrono::steady_clock::now();
  opt.zero_grad();
  double l = 0;
  if (e > b) {  // more ranks than rows: this one has none and adds nothing
    Tensor loss = cross_entropy(model.forward(x), y);
    loss.backward();
    l = loss.item();
  }
  if (dp) {
    dp->sync_gradients(e - b, batch);
    l = dp->reduce_mean(l, e - b, batch);
  }
  opt.step();
  if (dev.is_cuda()) cuda::synchronize(dev);  // the step's kernels, not just their launches
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.loss_before = l;
  NoGradGuard g;
  r.loss_after = e > b ? cross_entropy(model.forward(x), y).item() : 0.0;
  if (dp) r.loss_after = dp->reduce_mean(r.loss_after, e - b, batch);
  return r;
}

// The model a timm MetaFormer state dict describes, with those weights loaded (strict: every
// key must match by name and shape).
inline std::shared_ptr<MetaFormer> load_poolformer(const std::string& weights_path) {
  nn::StateDict sd = io::load_file(weights_path);
  auto model = std::make_shared<MetaFormer>(poolformer_config_from_state_dict(sd));
  model->load_state_dict(sd);
  return model;
}

// `poolformer_lora infer`: base weights (+ an adapter directory PEFT or save_pretrained wrote)
// applied to `x` in eval mode.
inline Tensor poolformer_infer(const std::string& weights_path, const std::string& adapter_dir, const Tensor& x) {
  nn::ModulePtr model = load_poolformer(weights_path);
  if (!adapter_dir.empty()) model = PeftModel::from_pretrained(model, adapter_dir);
  model->eval();
  NoGradGuard g;
  return model->forward(x);
}

}  // namespace peft::samples
