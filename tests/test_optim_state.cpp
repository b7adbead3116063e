// Optimizer state dicts: saving and loading resumes the exact trajectory; a state of the
// wrong shape is refused and changes nothing.
#include <catch2/catch.hpp>

#include <peft/peft.h>

using namespace peft;

namespace {
Tensor quadratic_step(optim::Optimizer& opt, Tensor& w) {
  Tensor loss = sum(mul(mul(w, w), 0.5));
  opt.zero_grad();
  loss.backward();
  opt.step();
  return w.detach().clone();
}
}  // namespace

TEST_CASE("Adam, AdamW and SGD state dicts resume the same trajectory", "[optim]") {
  for (int kind = 0; kind < 3; ++kind) {
    Tensor w1 = Tensor::from_vector(std::vector<float>{1.f, -2.f, 3.f}, {3}).set_requires_grad(true);
    Tensor w2 = w1.detach().clone().set_requires_grad(true);
    auto make = [&](Tensor& w) -> std::unique_ptr<optim::Optimizer> {
      if (kind == 0) return std::make_unique<optim::Adam>(std::vector<Tensor>{w}, optim::AdamOptions{0.1});
      if (kind == 1) return std::make_unique<optim::AdamW>(std::vector<Tensor>{w}, optim::AdamWOptions{0.1});
      return std::make_unique<optim::SGD>(std::vector<Tensor>{w}, optim::SGDOptions{0.1, 0.9});
    };
    auto a = make(w1), b = make(w2);
    for (int i = 0; i < 3; ++i) quadratic_step(*a, w1);
    // b takes over a's parameters and state, then both continue.
    {
      NoGradGuard g;
      w2.copy_(w1);
    }
    b->load_state_dict(a->state_dict());
    for (int i = 0; i < 3; ++i) {
      Tensor x = quadratic_step(*a, w1), y = quadratic_step(*b, w2);
      CHECK(max(abs(sub(x, y))).item() == 0.0);
    }
  }
}

TEST_CASE("an optimizer state of the wrong shape is refused and the optimizer is unchanged", "[optim][errors]") {
  Tensor w = Tensor::ones({4}).set_requires_grad(true);
  optim::Adam opt({w}, {0.1});
  quadratic_step(opt, w);
  optim::OptimizerState good = opt.state_dict();
  optim::OptimizerState bad = good;
  bad["0.exp_avg"] = Tensor::zeros({5});
  CHECK_THROWS_WITH(opt.load_state_dict(bad), Catch::Contains("'0.exp_avg' has shape [5], expected [4]"));
  optim::OptimizerState after = opt.state_dict();
  CHECK(max(abs(sub(after.at("0.exp_avg"), good.at("0.exp_avg")))).item() == 0.0);
  CHECK(after.at("0.step").item() == 1.0);
}
