// LoRA for a layer type peft.cpp does not adapt by itself — the LSTM — through a user-written
// LoRA layer (custom_lstm/my_lora_lstm.h) registered on the config, as in the seed's
// "Experimental support for dynamic dispatch of custom modules in LoRA"
// (../shared/seeds/custom_models.md):
//   1. target "lstm" without a registration: the "not supported" error, model untouched;
//   2. register MyLoraLSTM, get_peft_model, train a few steps on a toy sequence task;
//   3. save_pretrained; load into a fresh model with the config read back from the directory
//      and the custom layer registered again; the outputs match; merge_and_unload matches too.
//   usage: custom_lstm [--steps N] [--out DIR]
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "custom_lstm/my_lora_lstm.h"

using namespace peft;

// A 2-layer LSTM over (batch, time, 4) features and a Linear head on the last time step.
class SequenceRegressor : public nn::Module {
 public:
  SequenceRegressor() {
    register_module("lstm", std::make_shared<nn::LSTM>(4, 16, /*num_layers=*/2, /*bias=*/true, /*batch_first=*/true));
    register_module("head", std::make_shared<nn::Linear>(16, 1));
  }
  std::string type_name() const override { return "SequenceRegressor"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = child("lstm")->forward(x);  // (batch, time, 16)
    return child("head")->forward(h.select(1, h.size(1) - 1));
  }
};

// Toy task: y = mean over time of x[..., 0] − x[..., 1], for x ~ N(0, 1) of shape (batch, 10, 4).
struct SequenceTask {
  Tensor x, y;
};
SequenceTask make_task(Generator& gen, int64_t batch) {
  SequenceTask t;
  t.x = Tensor::randn({batch, 10, 4}, DType::F32, &gen);
  Tensor diff = sub(t.x.select(2, 0), t.x.select(2, 1));  // (batch, 10)
  t.y = mean(diff, {1}, /*keepdim=*/true);                 // (batch, 1)
  return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }

int main(int argc, char** argv) {
  int64_t steps = 60;
  std::string out_dir = (std::filesystem::temp_directory_path() / "peft-custom-lstm").string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) steps = std::stoll(argv[++i]);
    else if (a == "--out" && i + 1 < argc) out_dir = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--steps N] [--out DIR]\n", argv[0]);
      return 2;
    }
  }
  try {
    manual_seed(0);
    auto base = std::make_shared<SequenceRegressor>();
    std::filesystem::create_directories(out_dir);
    io::save_file(base->state_dict(), out_dir + "/base_model.safetensors");  // the "pretrained" base

    // 1. Without a registration an LSTM target is refused, naming the types that are supported.
    LoraConfig config;
    config.r = 4;
    config.lora_alpha = 8;
    config.target_modules = {"lstm"};
    config.modules_to_save = std::vector<std::string>{"head"};
    try {
      get_peft_model(base, config);
      std::fprintf(stderr, "error: an LSTM target was accepted without a registered LoRA layer\n");
      return 1;
    } catch (const Error& e) {
      std::cout << "without registration: " << e.what() << "\n";
    }
    std::cout << "model unchanged: lstm is still " << base->child("lstm")->type_name() << "\n";

    // 2. Register the custom layer (PEFT: config._register_custom_module({nn.LSTM: MyLoraLSTM})).
    config.register_custom_module<nn::LSTM, samples::MyLoraLSTM>();
    auto model = get_peft_model(base, config);
    model->print_trainable_parameters();
    std::cout << "targeted_module_names: ";
    for (const auto& n : model->targeted_module_names()) std::cout << n << " ";
    std::cout << "(" << model->model()->child("lstm")->type_name() << ")\n";

    Generator data_gen(1);
    SequenceTask train = make_task(data_gen, 64), test = make_task(data_gen, 64);
    optim::Adam opt(model->trainable_parameters(), {1e-2});
    for (int64_t step = 0; step <= steps; ++step) {
      model->train();
      Tensor loss = mse_loss(model->forward(train.x), train.y);
      if (step % 20 == 0 || step == steps) {
        NoGradGuard g;
        model->eval();
        std::printf("step %3lld  train loss %.4f  test loss %.4f\n", static_cast<long long>(step), loss.item(),
                    mse_loss(model->forward(test.x), test.y).item());
      }
      if (step == steps) break;
      opt.zero_grad();
      loss.backward();
      opt.step();
    }

    // 3. Save, then load into a fresh model: read the config back, register again, load.
    model->save_pretrained(out_dir);
    std::cout << "saved adapter to " << out_dir << "\n";
    auto fresh = std::make_shared<SequenceRegressor>();
    fresh->load_state_dict(io::load_file(out_dir + "/base_model.safetensors"));
    LoraConfig loaded_config = LoraConfig::from_pretrained(out_dir);
    loaded_config.register_custom_module<nn::LSTM, samples::MyLoraLSTM>();
    auto reloaded = PeftModel::from_pretrained(fresh, out_dir, loaded_config);

    model->eval();
    reloaded->eval();
    NoGradGuard g;
    Tensor expected = model->forward(test.x);
    const double reload_diff = max_abs_diff(expected, reloaded->forward(test.x));
    std::printf("reloaded adapter: max |difference| of outputs = %.3g\n", reload_diff);
    nn::ModulePtr merged = reloaded->merge_and_unload();
    const double merge_diff = max_abs_diff(expected, merged->forward(test.x));
    std::printf("merge_and_unload (lstm is %s again): max |difference| = %.3g\n",
                merged->child("lstm")->type_name().c_str(), merge_diff);
    if (reload_diff > 1e-5 || merge_diff > 1e-4) {
      std::fprintf(stderr, "error: outputs differ\n");
      return 1;
    }
    std::cout << "outputs equal\n";
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
