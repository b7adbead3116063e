// Anomaly mode (torch.autograd.detect_anomaly): the first op producing NaN/Inf in forward, or
// the first backward node producing a NaN/Inf gradient, throws naming the op and the module.
#include <catch2/catch.hpp>

#include <cmath>

#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

class LogModule : public nn::Module {
 public:
  std::string type_name() const override { return "LogModule"; }
  Tensor forward(const Tensor& x) override { return peft::log(x); }
};

class SqrtModule : public nn::Module {
 public:
  std::string type_name() const override { return "SqrtModule"; }
  Tensor forward(const Tensor& x) override { return peft::sqrt(x); }
};

// Runs its child "seq" through forward() directly, as most user modules do.
class Outer : public nn::Module {
 public:
  explicit Outer(nn::ModulePtr seq) { register_module("seq", std::move(seq)); }
  std::string type_name() const override { return "Outer"; }
  Tensor forward(const Tensor& x) override { return child("seq")->forward(x); }
};

// Linear(2, 2) with weight -I and no bias: negates its input, so log() after it sees negatives.
std::shared_ptr<nn::Sequential> negate_then_log() {
  auto lin = std::make_shared<nn::Linear>(2, 2, /*bias=*/false);
  {
    NoGradGuard g;
    lin->param("weight").copy_(Tensor::from_vector(std::vector<float>{-1, 0, 0, -1}, {2, 2}));
  }
  return std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{lin, std::make_shared<LogModule>()});
}

}  // namespace

TEST_CASE("anomaly mode names the forward op and the module that produced NaN", "[anomaly]") {
  DetectAnomalyGuard anomaly;
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  auto seq = negate_then_log();
  CHECK_THROWS_WITH((*seq)(x), Contains("anomaly: log (LogBackward) produced NaN/Inf in its output (shape [2, 2])") &&
                                   Contains("in module 1 (LogModule)"));
  // The full dotted path, even when "seq" itself runs through forward().
  auto outer = std::make_shared<Outer>(seq);
  CHECK_THROWS_WITH((*outer)(x), Contains("anomaly: log") && Contains("in module seq.1 (LogModule)"));
  // Ops that record nothing (no input needs grad) are checked too.
  {
    NoGradGuard g;
    CHECK_THROWS_WITH((*outer)(x), Contains("anomaly: log") && Contains("in module seq.1 (LogModule)"));
  }
  // Outside any module.
  CHECK_THROWS_WITH(peft::log(Tensor::full({3}, -1.0)), Contains("anomaly: log") && Contains("outside any module"));
  // The op that computed the values is named, not a view that passes them on.
  CHECK_THROWS_WITH(sum(Tensor::full({4}, 3e38)), Contains("anomaly: sum (SumBackward) produced NaN/Inf"));
  // Finite results pass.
  Tensor ok = (*outer)(mul(x, -1.0));
  CHECK(std::isfinite(ok.to_vector<double>()[0]));
}

TEST_CASE("anomaly mode names the backward node that produced an Inf gradient", "[anomaly]") {
  DetectAnomalyGuard anomaly;
  Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 4}, {3}).requires_grad_();
  auto m = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{std::make_shared<SqrtModule>()});
  Tensor y = sum((*m)(x));  // sqrt(0) = 0 is finite; its gradient 1 / (2 sqrt(0)) is not
  CHECK_THROWS_WITH(y.backward(), Contains("anomaly: SqrtBackward produced NaN/Inf in a gradient (for input 0, shape [3])") &&
                                      Contains("in module 0 (SqrtModule)"));
}

TEST_CASE("anomaly mode is off by default and NaN passes silently", "[anomaly]") {
  REQUIRE_FALSE(AnomalyMode::is_enabled());
  Tensor x = Tensor::from_vector(std::vector<float>{0, -1}, {2}).requires_grad_();
  Tensor y;
  REQUIRE_NOTHROW(y = sum(add(peft::log(x), peft::sqrt(x))));
  CHECK(std::isnan(y.item()));
  REQUIRE_NOTHROW(y.backward());
  CHECK(std::isnan(x.grad().to_vector<double>()[1]));
}

TEST_CASE("DetectAnomalyGuard restores the previous state", "[anomaly]") {
  REQUIRE_FALSE(AnomalyMode::is_enabled());
  {
    DetectAnomalyGuard on;
    CHECK(AnomalyMode::is_enabled());
    {
      DetectAnomalyGuard off(false);
      CHECK_FALSE(AnomalyMode::is_enabled());
      CHECK_NOTHROW(peft::log(Tensor::full({1}, -1.0)));
    }
    CHECK(AnomalyMode::is_enabled());
  }
  CHECK_FALSE(AnomalyMode::is_enabled());
}
