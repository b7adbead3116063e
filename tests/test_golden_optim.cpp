// Optimizers against torch.optim (tests/golden/golden_optim.py, foreach=False): from the
// stored parameters p0 (3, 4) and p1 (5), five steps with the stored per-step gradients; the
// parameters after every step must match PyTorch's. The optimizer and its options come from
// the file's __metadata__; an option absent there is left at our default, so these cases also
// pin that our defaults are PyTorch's (AdamW's weight_decay 1e-2, Adam's betas and eps).
#include <catch2/catch.hpp>

#include <memory>

#include "golden_util.h"
#include "peft.h"

using golden::Case;
using peft::Tensor;
namespace optim = peft::optim;

namespace {

constexpr int kSteps = 5;
const char* const kParams[] = {"p0", "p1"};

std::unique_ptr<optim::Optimizer> make_optimizer(const std::map<std::string, std::string>& meta,
                                                 std::vector<Tensor> params) {
  auto get = [&](const char* key, double fallback) {
    auto it = meta.find(key);
    return it == meta.end() ? fallback : std::stod(it->second);
  };
  const std::string kind = meta.at("optimizer");
  if (kind == "SGD") {
    optim::SGDOptions o;
    o.lr = get("lr", o.lr);
    o.momentum = get("momentum", o.momentum);
    o.dampening = get("dampening", o.dampening);
    o.weight_decay = get("weight_decay", o.weight_decay);
    o.nesterov = meta.count("nesterov") && meta.at("nesterov") == "true";
    return std::make_unique<optim::SGD>(std::move(params), o);
  }
  if (kind == "Adam") {
    optim::AdamOptions o;
    o.lr = get("lr", o.lr);
    o.beta1 = get("beta1", o.beta1);
    o.beta2 = get("beta2", o.beta2);
    o.eps = get("eps", o.eps);
    o.weight_decay = get("weight_decay", o.weight_decay);
    return std::make_unique<optim::Adam>(std::move(params), o);
  }
  REQUIRE(kind == "AdamW");
  optim::AdamWOptions o;
  o.lr = get("lr", o.lr);
  o.beta1 = get("beta1", o.beta1);
  o.beta2 = get("beta2", o.beta2);
  o.eps = get("eps", o.eps);
  o.weight_decay = get("weight_decay", o.weight_decay);
  return std::make_unique<optim::AdamW>(std::move(params), o);
}

// Runs the case; a parameter with no stored gradient at a step has none (PyTorch skips it).
void check_optimizer(const std::string& name) {
  Case c(name);
  std::vector<Tensor> params;
  for (const char* p : kParams) params.push_back(c.leaf(p));
  auto opt = make_optimizer(c.metadata(), params);
  for (int step = 1; step <= kSteps; ++step) {
    const std::string prefix = "step" + std::to_string(step) + ".";
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].zero_grad();
      const std::string key = prefix + "grad." + kParams[i];
      if (c.has(key)) params[i].set_grad(c.get(key).clone());
    }
    opt->step();
    for (size_t i = 0; i < params.size(); ++i) golden::expect_close(c, prefix + kParams[i], params[i]);
  }
}

}  // namespace

TEST_CASE("SGD with and without momentum matches torch.optim.SGD over 5 steps", "[golden][optim]") {
  for (const char* name : {"optim_sgd", "optim_sgd_momentum"}) DYNAMIC_SECTION(name) { check_optimizer(name); }
}

TEST_CASE("SGD with momentum, dampening and weight decay matches torch.optim.SGD over 5 steps", "[golden][optim]") {
  check_optimizer("optim_sgd_momentum_dampening_wd");
}

TEST_CASE("SGD with Nesterov momentum and weight decay matches torch.optim.SGD over 5 steps", "[golden][optim]") {
  check_optimizer("optim_sgd_nesterov_wd");
}

TEST_CASE("SGD with momentum leaves a parameter without gradient untouched and keeps its buffer, as PyTorch",
          "[golden][optim]") {
  check_optimizer("optim_sgd_momentum_skip");
}

TEST_CASE("Adam with default and custom betas, eps and L2 weight decay matches torch.optim.Adam over 5 steps",
          "[golden][optim]") {
  for (const char* name : {"optim_adam", "optim_adam_wd"}) DYNAMIC_SECTION(name) { check_optimizer(name); }
}

TEST_CASE("AdamW with decoupled weight decay matches torch.optim.AdamW over 5 steps", "[golden][optim]") {
  check_optimizer("optim_adamw");
}

TEST_CASE("AdamW with the default weight decay counts steps per parameter, skipping steps without gradient",
          "[golden][optim]") {
  check_optimizer("optim_adamw_default_wd_skip");
}
