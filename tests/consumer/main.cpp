// A downstream program: builds a Linear, runs forward and backward through the installed
// headers and library, checks the gradients, and prints OK.
#include <peft/peft.h>

#include <cmath>
#include <iostream>

int main() {
  try {
    peft::manual_seed(0);
    auto model = std::make_shared<peft::nn::Sequential>(
        std::vector<peft::nn::ModulePtr>{std::make_shared<peft::nn::Linear>(4, 2)});
    auto lin = std::dynamic_pointer_cast<peft::nn::Linear>(model->get_submodule("0"));
    peft::Tensor x = peft::Tensor::ones({3, 4});
    peft::Tensor loss = peft::sum(model->forward(x));
    loss.backward();
    // d(sum(x·Wᵀ + b))/dW = column sums of x = 3 everywhere; d/db = 3 (batch of 3).
    for (double g : lin->weight().grad().to_vector<double>())
      if (std::abs(g - 3.0) > 1e-6) throw peft::Error("unexpected weight gradient");
    for (double g : lin->bias().grad().to_vector<double>())
      if (std::abs(g - 3.0) > 1e-6) throw peft::Error("unexpected bias gradient");
    peft::optim::SGD opt(model->parameters(), {0.1});
    opt.step();
    std::cout << model->repr() << "\n";
    std::cout << "OK" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "peft_consumer failed: " << e.what() << std::endl;
    return 1;
  }
}
