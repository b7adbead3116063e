// The DummyModel of PEFT's README (../shared/seeds/peft_readme.md, "Inject adapters to custom
// models"): Embedding(10, 10) → Linear(10, 10) → Linear(10, 10), and the README's LoraConfig.
// Shared by inject_dummy/main.cpp and tests/test_samples.cpp.
#pragma once
#include <peft/peft.h>

namespace peft::samples {

class DummyModel : public nn::Module {
 public:
  PEFT_MODULE_CLONE(DummyModel)
  DummyModel() {
    register_module("embedding", std::make_shared<nn::Embedding>(10, 10));
    register_module("linear", std::make_shared<nn::Linear>(10, 10));
    register_module("lm_head", std::make_shared<nn::Linear>(10, 10));
  }
  std::string type_name() const override { return "DummyModel"; }
  // input_ids (I64, any shape) → (..., 10). Children are looked up by name, so the LoRA layer
  // injected at "linear" is what runs.
  Tensor forward(const Tensor& input_ids) override {
    Tensor x = child("embedding")->forward(input_ids);
    x = child("linear")->forward(x);
    return child("lm_head")->forward(x);
  }
};

// LoraConfig(lora_alpha=16, lora_dropout=0.1, r=64, bias="none", target_modules=["linear"])
inline LoraConfig dummy_lora_config() {
  LoraConfig c;
  c.lora_alpha = 16;
  c.lora_dropout = 0.1;
  c.r = 64;
  c.bias = "none";
  c.target_modules = {"linear"};
  return c;
}

// torch.LongTensor([[0, 1, 2, 3, 4, 5, 6, 7]])
inline Tensor dummy_inputs() { return Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}, {1, 8}); }

}  // namespace peft::samples
