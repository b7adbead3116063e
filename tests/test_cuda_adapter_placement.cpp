// Every way an adapter or a trainable copy comes into being puts it on its base layer's device
// (PEFT's _move_adapter_to_device_of_base_layer): get_peft_model, inject_adapter_in_model,
// add_adapter, load_adapter, from_pretrained, add_weighted_adapter (linear and svd),
// modules_to_save copies, a user-registered LoRA layer (samples/custom_lstm's MyLoraLSTM), DoRA,
// LoRA Conv2d and Embedding, and the optimizer's state (created where its parameter lives).
// Each case moves a model to CUDA first, then checks every parameter's device and runs a
// forward + backward there (which throws "expected all tensors on the same device" otherwise).
// With a BF16 base the adapters are F32 (autocast_adapter_dtype) and still on the GPU.
// Without a GPU every case reports "skipped: no CUDA device" and passes.
#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <string>

#include "cuda_kernel_util.h"
#include "custom_lstm/my_lora_lstm.h"
#include "models/mlp.h"
#include "peft.h"

using namespace peft;

namespace {

const Device kCuda = Device::cuda(0);

void require_all_on(const nn::Module& m, Device dev) {
  for (const auto& [name, t] : m.named_parameters()) {
    INFO("parameter " << name);
    REQUIRE(t.device() == dev);
  }
  for (const auto& [name, t] : m.named_buffers()) {
    INFO("buffer " << name);
    REQUIRE(t.device() == dev);
  }
}

std::shared_ptr<samples::MLP> mlp_on_cuda(DType dt = DType::F32) {
  manual_seed(11);
  auto mlp = std::make_shared<samples::MLP>(32);
  mlp->to(kCuda);
  if (dt != DType::F32) mlp->to(dt);
  return mlp;
}

LoraConfig mlp_config() {
  LoraConfig cfg;
  cfg.r = 4;
  cfg.target_modules = ModuleSelector{"seq.0", "seq.2"};
  cfg.modules_to_save = std::vector<std::string>{"seq.4"};
  return cfg;
}

// forward + backward on the GPU; every trainable parameter gets a gradient there.
void train_step(nn::Module& m, DType dt = DType::F32) {
  Tensor x = Tensor::rand({8, 20}, DType::F32).to(kCuda).to(dt);
  Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 1, 0, 1, 1, 0, 1, 0}, {8}).to(kCuda);
  Tensor loss = nll_loss(m.forward(x).to(DType::F32), y);
  loss.backward();
  for (const auto& [name, p] : m.named_parameters()) {
    if (!p.requires_grad()) continue;
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    REQUIRE(p.grad().device() == kCuda);
  }
}

std::string temp_dir(const std::string& tag) {
  auto d = std::filesystem::temp_directory_path() / ("peft_placement_" + tag);
  std::filesystem::remove_all(d);
  return d.string();
}

}  // namespace

TEST_CASE("get_peft_model creates adapters and modules_to_save copies on the base's GPU", "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  auto pm = get_peft_model(mlp_on_cuda(), mlp_config());
  require_all_on(*pm, kCuda);
  train_step(*pm);
}

TEST_CASE("a BF16 base on the GPU gets F32 adapters on the GPU (autocast_adapter_dtype)", "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  auto pm = get_peft_model(mlp_on_cuda(DType::BF16), mlp_config());
  require_all_on(*pm, kCuda);
  for (const auto& [name, t] : pm->named_parameters())
    if (name.find(".lora_") != std::string::npos) CHECK(t.dtype() == DType::F32);
  train_step(*pm, DType::BF16);
}

TEST_CASE("inject_adapter_in_model and add_adapter place new adapters on the GPU", "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  nn::ModulePtr m = inject_adapter_in_model(mlp_config(), mlp_on_cuda());
  require_all_on(*m, kCuda);
  train_step(*m);

  auto pm = get_peft_model(mlp_on_cuda(), mlp_config());
  LoraConfig other = mlp_config();
  other.r = 2;
  other.use_dora = true;  // DoRA's norm reads the base weight and B·A together at creation
  pm->add_adapter("second", other);
  pm->set_adapter("second");
  require_all_on(*pm, kCuda);
  train_step(*pm);
}

TEST_CASE("load_adapter and from_pretrained load adapters onto the GPU", "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const std::string dir = temp_dir("load");
  {
    auto src = get_peft_model(std::make_shared<samples::MLP>(32), mlp_config());  // saved from the CPU
    src->save_pretrained(dir);
  }
  auto loaded = PeftModel::from_pretrained(mlp_on_cuda(), dir, std::nullopt, "default", /*is_trainable=*/true);
  require_all_on(*loaded, kCuda);
  train_step(*loaded);
  loaded->load_adapter(dir, "again", /*is_trainable=*/true);
  loaded->set_adapter("again");
  require_all_on(*loaded, kCuda);
  train_step(*loaded);
  std::filesystem::remove_all(dir);
}

TEST_CASE("add_weighted_adapter combines adapters on the GPU (linear and svd)", "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  LoraConfig cfg = mlp_config();
  cfg.modules_to_save.reset();
  cfg.init_lora_weights = LoraInit::Random;  // nonzero B, so the combination is not trivially zero
  auto pm = get_peft_model(mlp_on_cuda(), cfg);
  pm->add_adapter("b", cfg);
  pm->add_weighted_adapter({"default", "b"}, {0.5, 0.5}, "lin", "linear");
  pm->add_weighted_adapter({"default", "b"}, {1.0, 0.3}, "svd", "svd");
  require_all_on(*pm, kCuda);
  for (const char* a : {"lin", "svd"}) {
    pm->set_adapter(std::string(a));
    train_step(*pm);
  }
}

TEST_CASE("LoRA Conv2d and Embedding adapters (DoRA too) follow their GPU base", "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  manual_seed(5);
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(3, 8, 3), std::make_shared<nn::Conv2d>(8, 4, 1)});
  net->to(kCuda);
  LoraConfig cfg;
  cfg.r = 2;
  cfg.use_dora = true;
  cfg.target_modules = ModuleSelector{"0", "1"};
  auto pm = get_peft_model(net, cfg);
  require_all_on(*pm, kCuda);
  Tensor out = pm->forward(Tensor::randn({2, 3, 8, 8}).to(kCuda));
  sum(out, {0, 1, 2, 3}).backward();

  auto emb = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Embedding>(50, 6)});
  emb->to(kCuda);
  LoraConfig ecfg;
  ecfg.r = 3;
  ecfg.target_modules = ModuleSelector{"0"};
  auto pe = get_peft_model(emb, ecfg);
  require_all_on(*pe, kCuda);
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 7, 49, 0}, {4}).to(kCuda);
  sum(pe->forward(ids), {0, 1}).backward();
}

TEST_CASE("a user-registered LoRA layer follows its GPU base (the registry's device contract)",
          "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  manual_seed(3);
  auto lstm = std::make_shared<nn::LSTM>(4, 8, /*num_layers=*/1, /*bias=*/true, /*batch_first=*/true);
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{lstm});
  net->to(kCuda);
  LoraConfig cfg;
  cfg.r = 2;
  cfg.target_modules = ModuleSelector{"0"};
  cfg.register_custom_module<nn::LSTM, samples::MyLoraLSTM>();
  auto pm = get_peft_model(net, cfg);
  require_all_on(*pm, kCuda);
  Tensor x = Tensor::randn({2, 5, 4}).to(kCuda);
  sum(pm->forward(x), {0, 1, 2}).backward();
}

TEST_CASE("optimizer state is created where its parameter lives", "[cuda][placement][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  auto pm = get_peft_model(mlp_on_cuda(), mlp_config());
  optim::AdamWOptions o;
  o.lr = 1e-3;
  optim::AdamW opt(pm->trainable_parameters(), o);
  train_step(*pm);
  opt.step();  // state is made here; an adapter on the CPU would make it throw
  for (const auto& [k, t] : opt.state_dict()) {
    INFO("optimizer state " << k);
    if (t.numel() > 1) CHECK(t.device() == kCuda);
  }
  require_all_on(*pm, kCuda);
}
