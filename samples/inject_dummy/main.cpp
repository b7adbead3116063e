// PEFT README's "Inject adapters to custom models" (../shared/seeds/peft_readme.md):
// inject_adapter_in_model adapts the model in place (no PeftModel wrapper), then the model
// runs as before, now with a LoRA branch on `linear`.
//   usage: inject_dummy
#include <cstdio>
#include <iostream>

#include "inject_dummy/dummy_model.h"

using namespace peft;

int main() {
  try {
    manual_seed(0);
    nn::ModulePtr model = std::make_shared<samples::DummyModel>();
    model = inject_adapter_in_model(samples::dummy_lora_config(), model);
    std::cout << *model << "\n";

    Tensor dummy_inputs = samples::dummy_inputs();
    Tensor dummy_outputs = model->forward(dummy_inputs);
    std::cout << "dummy_outputs.shape = " << shape_str(dummy_outputs.shape()) << "\n";
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
