// The built-in LoRA layers (Linear, Embedding, Conv2d, with and without DoRA) against PyTorch
// (tests/golden/golden_lora.py writes PEFT's math in torch; each case's weights load here by
// their state-dict names) and PEFT's layer behaviour: default init keeps the base output,
// merge / unmerge / safe_merge, grouped conv, several adapters, delete_adapter, dropout
// handling and the dispatch table. Layer configurations are repeated next to each case name.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "adapters/lora_conv2d.h"
#include "adapters/lora_dora.h"
#include "adapters/lora_embedding.h"
#include "golden_util.h"
#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;
using golden::Case;

namespace {

LoraLayerSettings lora(int64_t r, double alpha, LoraInit init = LoraInit::Random) {
  LoraLayerSettings s;
  s.r = r;
  s.lora_alpha = alpha;
  s.init = init;
  return s;
}
LoraLayerSettings with_dora(LoraLayerSettings s) {
  s.use_dora = true;
  return s;
}

std::set<std::string> names_of(const NamedTensors& tensors) {
  std::set<std::string> s;
  for (const auto& kv : tensors) s.insert(kv.first);
  return s;
}

void expect_near(const Tensor& actual, const Tensor& expected, double atol, double rtol = 0) {
  REQUIRE(actual.shape() == expected.shape());
  const std::vector<double> a = actual.to_vector<double>(), b = expected.to_vector<double>();
  double worst = 0;
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - b[i]);
    if (!(d <= atol + rtol * std::abs(b[i]))) ++bad;
    if (d > worst || std::isnan(d)) worst = d;
  }
  INFO("max abs diff " << worst << " (atol " << atol << ", rtol " << rtol << ")");
  CHECK(bad == 0);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

std::shared_ptr<DoraLayer> dora_of(const LoraLayer& l, const std::string& adapter = "default") {
  return std::dynamic_pointer_cast<DoraLayer>(l.child("lora_magnitude_vector")->child(adapter));
}

// The magnitude moved off its initial norms (m·(1 + 0.1·N(0, 1))), so DoRA's factor is not 1.
void perturb_magnitude(LoraLayer& l) {
  NoGradGuard g;
  Tensor& m = dora_of(l)->magnitude();
  m.copy_(mul(m, add(mul(Tensor::randn(m.shape()), 0.1), 1.0)));
}

Tensor adapter_param(const LoraLayer& l, const std::string& prefix) {
  for (const auto& kv : l.named_parameters())
    if (kv.first.rfind(prefix, 0) == 0) return kv.second;
  FAIL("no parameter starting with " << prefix);
  return Tensor();
}

// Loads the case into `layer` by name (strict), freezes the base as get_peft_model does, runs
// forward/backward and compares out, grad.x and the adapter gradients with PyTorch.
void check_golden(const std::string& name, LoraLayer& layer) {
  Case c(name);
  const NamedTensors sd = c.with_prefix("state_dict.");
  {
    INFO("golden case " << name << ": the LoRA layer's state-dict names must be PEFT's");
    CHECK(names_of(layer.state_dict()) == names_of(sd));
  }
  nn::LoadResult r = layer.load_state_dict(sd);
  CHECK(r.missing_keys.empty());
  for (auto& kv : layer.base_layer()->named_parameters()) kv.second.set_requires_grad(false);
  const bool float_input = c.get("x").dtype() != DType::I64;
  Tensor x = float_input ? c.leaf("x") : c.get("x");
  golden::Named leaves;
  if (float_input) leaves.emplace_back("x", x);
  for (const auto& kv : layer.named_parameters())
    if (kv.first.rfind("base_layer.", 0) != 0) leaves.push_back(kv);
  golden::check_forward_backward(c, {{"out", layer.forward(x)}}, leaves);
}

// ||W + s·B·A|| as the DoRA layer computes it, against torch.linalg.norm (case "weight_norm").
void check_dora_norm(const std::string& name, LoraLayer& layer, const Tensor& lora_weight) {
  Case c(name);
  golden::expect_close(c, "weight_norm",
                       dora_of(layer)->weight_norm(layer.base_layer()->param("weight"), lora_weight,
                                                   layer.scaling("default")));
}

// One layer kind of the property tests: how to build it and a matching input.
struct Kind {
  std::string label;
  std::function<std::shared_ptr<LoraLayer>(const LoraLayerSettings&)> make;
  std::function<Tensor()> input;
  std::string a_name = "lora_A.default.weight";  // the A matrix's parameter name
  bool lora_bias_ok = true;
};

std::vector<Kind> kinds() {
  nn::Conv2dConfig pad1;
  pad1.padding = {1, 1};
  return {
      {"Linear(6, 4)", [](const LoraLayerSettings& s) { return std::make_shared<LoraLinear>(std::make_shared<nn::Linear>(6, 4), "default", s); },
       [] { return Tensor::randn({3, 2, 6}); }},
      {"Conv2d(3, 5, 3, padding=1)", [pad1](const LoraLayerSettings& s) { return std::make_shared<LoraConv2d>(std::make_shared<nn::Conv2d>(3, 5, 3, pad1), "default", s); },
       [] { return Tensor::randn({2, 3, 5, 4}); }},
      {"Conv2d(4, 6, 1) (fused path)", [](const LoraLayerSettings& s) { return std::make_shared<LoraConv2d>(std::make_shared<nn::Conv2d>(4, 6, 1), "default", s); },
       [] { return Tensor::randn({2, 4, 3, 3}); }},
      {"Embedding(12, 5, padding_idx=0)", [](const LoraLayerSettings& s) { return std::make_shared<LoraEmbedding>(std::make_shared<nn::Embedding>(12, 5, 0), "default", s); },
       [] { return Tensor::from_vector(std::vector<int64_t>{1, 0, 3, 11, 5, 3}, {2, 3}); }, "lora_embedding_A.default",
       false},
  };
}

Tensor no_grad_forward(nn::Module& m, const Tensor& x) {
  NoGradGuard g;
  return m.forward(x);
}

}  // namespace

// ---------------------------------------------------------------- PyTorch golden cases

TEST_CASE("LoRA Linear matches PyTorch: forward and gradients of x, A, B", "[lora][linear][golden]") {
  SECTION("Linear(6, 4), r=3, alpha=6, 3-D input") {
    LoraLinear l(std::make_shared<nn::Linear>(6, 4), "default", lora(3, 6));
    check_golden("lora_linear", l);
  }
  SECTION("rslora: Linear(5, 4), r=4, alpha=3, scaling 3/√4") {
    LoraLayerSettings s = lora(4, 3);
    s.use_rslora = true;
    LoraLinear l(std::make_shared<nn::Linear>(5, 4), "default", s);
    CHECK(l.scaling("default") == Approx(1.5));
    check_golden("lora_linear_rslora", l);
  }
  SECTION("lora_bias: Linear(5, 3), r=2, alpha=5") {
    LoraLayerSettings s = lora(2, 5);
    s.lora_bias = true;
    LoraLinear l(std::make_shared<nn::Linear>(5, 3), "default", s);
    check_golden("lora_linear_lora_bias", l);
  }
}

TEST_CASE("LoRA Conv2d matches PyTorch: k×k, 1×1 through the fused op, grouped", "[lora][conv][golden]") {
  SECTION("Conv2d(4, 6, 3, stride=2, padding=1), r=2, alpha=4") {
    nn::Conv2dConfig cfg;
    cfg.stride = {2, 2};
    cfg.padding = {1, 1};
    LoraConv2d l(std::make_shared<nn::Conv2d>(4, 6, 3, cfg), "default", lora(2, 4));
    check_golden("lora_conv2d_3x3", l);
  }
  SECTION("Conv2d(5, 7, 1, bias=False), r=3, alpha=6") {
    nn::Conv2dConfig cfg;
    cfg.bias = false;
    LoraConv2d l(std::make_shared<nn::Conv2d>(5, 7, 1, cfg), "default", lora(3, 6));
    check_golden("lora_conv2d_1x1", l);
    CHECK(no_grad_forward(l, Tensor::randn({1, 5, 2, 3})).is_contiguous());  // NCHW like a convolution's output
  }
  SECTION("Conv2d(5, 7, 1), r=3, alpha=4, lora_bias") {
    LoraLayerSettings s = lora(3, 4);
    s.lora_bias = true;
    LoraConv2d l(std::make_shared<nn::Conv2d>(5, 7, 1), "default", s);
    check_golden("lora_conv2d_1x1_lora_bias", l);
  }
  SECTION("Conv2d(4, 6, 3, padding=1, groups=2), r=4, alpha=4: lora_B has groups=2") {
    nn::Conv2dConfig cfg;
    cfg.padding = {1, 1};
    cfg.groups = 2;
    LoraConv2d l(std::make_shared<nn::Conv2d>(4, 6, 3, cfg), "default", lora(4, 4));
    CHECK(adapter_param(l, "lora_B.default.weight").shape() == Shape{6, 2, 1, 1});
    check_golden("lora_conv2d_groups2", l);
  }
}

TEST_CASE("LoRA Embedding matches PyTorch, looking up A with the base's padding_idx", "[lora][embedding][golden]") {
  // Embedding(10, 5, padding_idx=2), r=3, alpha=6: column 2 of A gets no gradient.
  LoraEmbedding l(std::make_shared<nn::Embedding>(10, 5, 2), "default", lora(3, 6));
  CHECK(adapter_param(l, "lora_embedding_A.default").shape() == Shape{3, 10});
  CHECK(adapter_param(l, "lora_embedding_B.default").shape() == Shape{5, 3});
  check_golden("lora_embedding", l);
}

TEST_CASE("DoRA matches PyTorch: forward and gradients of x, A, B and the magnitude", "[lora][dora][golden]") {
  SECTION("Linear(6, 5), r=3, alpha=3") {
    LoraLinear l(std::make_shared<nn::Linear>(6, 5), "default", with_dora(lora(3, 3)));
    check_golden("lora_dora_linear", l);
    check_dora_norm("lora_dora_linear", l,
                    matmul(adapter_param(l, "lora_B.default.weight"), adapter_param(l, "lora_A.default.weight")));
  }
  SECTION("Linear(4, 3, bias=False), r=2, alpha=4") {
    LoraLinear l(std::make_shared<nn::Linear>(4, 3, false), "default", with_dora(lora(2, 4)));
    check_golden("lora_dora_linear_nobias", l);
  }
  SECTION("Conv2d(4, 6, 3, padding=1), r=2, alpha=4: magnitude (1, 6, 1, 1)") {
    nn::Conv2dConfig cfg;
    cfg.padding = {1, 1};
    LoraConv2d l(std::make_shared<nn::Conv2d>(4, 6, 3, cfg), "default", with_dora(lora(2, 4)));
    CHECK(dora_of(l)->magnitude().shape() == Shape{1, 6, 1, 1});
    check_golden("lora_dora_conv2d", l);
    Tensor A = adapter_param(l, "lora_A.default.weight"), B = adapter_param(l, "lora_B.default.weight");
    check_dora_norm("lora_dora_conv2d", l, matmul(B.reshape({6, 2}), A.reshape({2, -1})).reshape({6, 4, 3, 3}));
  }
  SECTION("Embedding(10, 5), r=3, alpha=3: magnitude per embedding dimension") {
    LoraEmbedding l(std::make_shared<nn::Embedding>(10, 5), "default", with_dora(lora(3, 3)));
    CHECK(dora_of(l)->magnitude().shape() == Shape{5});
    check_golden("lora_dora_embedding", l);
    check_dora_norm("lora_dora_embedding", l,
                    matmul(adapter_param(l, "lora_embedding_B.default"), adapter_param(l, "lora_embedding_A.default")));
  }
}

// ---------------------------------------------------------------- PEFT's layer behaviour

TEST_CASE("default and gaussian init leave the output equal to the base output", "[lora]") {
  manual_seed(11);
  for (const auto& k : kinds())
    for (LoraInit init : {LoraInit::Default, LoraInit::Gaussian})
      for (bool dora : {false, true}) {
        INFO(k.label << (init == LoraInit::Default ? ", init True" : ", init gaussian") << (dora ? ", DoRA" : ""));
        LoraLayerSettings s = lora(2, 4, init);
        s.use_dora = dora;
        auto l = k.make(s);
        const Tensor x = k.input();
        expect_near(no_grad_forward(*l, x), no_grad_forward(*l->base_layer(), x), 1e-6);
      }
}

TEST_CASE("init: Embedding A = 0 and B ~ N(0, 1); DoRA magnitude starts at ||W + s·B·A||", "[lora][dora]") {
  manual_seed(12);
  LoraEmbedding e(std::make_shared<nn::Embedding>(20, 500), "default", lora(8, 8, LoraInit::Gaussian));
  for (double v : adapter_param(e, "lora_embedding_A.default").to_vector<double>()) REQUIRE(v == 0.0);
  const std::vector<double> b = adapter_param(e, "lora_embedding_B.default").to_vector<double>();
  double mean = 0, sq = 0;
  for (double v : b) mean += v / static_cast<double>(b.size());
  for (double v : b) sq += (v - mean) * (v - mean) / static_cast<double>(b.size());
  CHECK(std::abs(mean) < 0.1);
  CHECK(std::sqrt(sq) == Approx(1.0).epsilon(0.1));

  auto base = std::make_shared<nn::Linear>(6, 4);
  LoraLinear l(base, "default", with_dora(lora(2, 3)));
  Tensor v = add(base->weight(), mul(matmul(adapter_param(l, "lora_B.default.weight"),
                                            adapter_param(l, "lora_A.default.weight")), 1.5));
  expect_near(dora_of(l)->magnitude(), sqrt(sum(mul(v, v), {1})), 1e-6);
  CHECK(dora_of(l)->magnitude().requires_grad());
}

TEST_CASE("merge gives the adapter output, unmerge restores the base weight", "[lora][merge]") {
  manual_seed(13);
  for (const auto& k : kinds())
    for (int variant = 0; variant < 3; ++variant)
      for (bool safe : {false, true}) {
        if (variant == 2 && !k.lora_bias_ok) continue;
        INFO(k.label << (variant == 1 ? ", DoRA" : variant == 2 ? ", lora_bias" : "") << (safe ? ", safe_merge" : ""));
        LoraLayerSettings s = lora(2, 4);
        s.use_dora = variant == 1;
        s.lora_bias = variant == 2;
        auto l = k.make(s);
        if (s.use_dora) perturb_magnitude(*l);
        const Tensor x = k.input();
        nn::Module& base = *l->base_layer();
        const Tensor w0 = base.param("weight").clone();
        const Tensor b0 = base.has_param("bias") ? base.param("bias").clone() : Tensor();
        const Tensor y_base = no_grad_forward(base, x), y = no_grad_forward(*l, x);
        REQUIRE(max_abs_diff(y, y_base) > 1e-3);  // the adapter does change the output
        l->merge(safe);
        CHECK(l->merged());
        CHECK(l->merged_adapters() == std::vector<std::string>{"default"});
        expect_near(no_grad_forward(*l, x), y, 1e-4, 1e-4);
        expect_near(no_grad_forward(base, x), y, 1e-4, 1e-4);
        l->unmerge();
        CHECK_FALSE(l->merged());
        expect_near(base.param("weight"), w0, 1e-5, 1e-5);
        if (b0.defined()) expect_near(base.param("bias"), b0, 1e-5, 1e-5);
        expect_near(no_grad_forward(*l, x), y, 1e-5, 1e-5);
        // A disabled layer unmerges on its next forward, as PEFT's does.
        l->merge();
        l->enable_adapters(false);
        expect_near(no_grad_forward(*l, x), y_base, 1e-5, 1e-5);
        CHECK_FALSE(l->merged());
        expect_near(base.param("weight"), w0, 1e-5, 1e-5);
      }
}

TEST_CASE("safe_merge refuses NaN weights and leaves the layer unmerged", "[lora][merge]") {
  manual_seed(14);
  for (const auto& k : kinds())
    for (bool dora : {false, true}) {
      INFO(k.label << (dora ? ", DoRA" : ""));
      LoraLayerSettings s = lora(2, 4);
      s.use_dora = dora;
      auto l = k.make(s);
      Tensor A = adapter_param(*l, k.a_name);
      {
        NoGradGuard g;
        A.reshape({-1}).select(0, 0).fill_(std::numeric_limits<double>::quiet_NaN());
      }
      const Tensor w0 = l->base_layer()->param("weight").clone();
      CHECK_THROWS_WITH(l->merge(/*safe_merge=*/true),
                        Contains("NaNs detected in the merged weights. The adapter default seems to be broken"));
      CHECK_FALSE(l->merged());
      CHECK(l->base_layer()->param("weight").to_vector<double>() == w0.to_vector<double>());
    }
}

TEST_CASE("grouped Conv2d: rank must divide by groups, merging is refused", "[lora][conv]") {
  nn::Conv2dConfig cfg;
  cfg.padding = {1, 1};
  cfg.groups = 2;
  auto base = std::make_shared<nn::Conv2d>(4, 6, 3, cfg);
  CHECK_THROWS_WITH(LoraConv2d(base, "default", lora(3, 4)),
                    Contains("Targeting a Conv2d with groups=2 and rank 3. Currently, support is limited to conv "
                             "layers where the rank is divisible by groups."));
  LoraConv2d l(base, "default", lora(4, 4));
  const Tensor w0 = base->param("weight").clone();
  CHECK_THROWS_WITH(l.merge(), Contains("Merging is not supported for _ConvNd layers with groups > 1!"));
  CHECK_FALSE(l.merged());
  CHECK(base->param("weight").to_vector<double>() == w0.to_vector<double>());
  CHECK(no_grad_forward(l, Tensor::randn({1, 4, 4, 4})).shape() == Shape{1, 6, 4, 4});
}

TEST_CASE("lora_A ignores the base's dilation as PEFT does; a size mismatch is a clear error", "[lora][conv]") {
  nn::Conv2dConfig cfg;
  cfg.padding = {2, 2};
  cfg.dilation = {2, 2};
  LoraConv2d l(std::make_shared<nn::Conv2d>(3, 4, 3, cfg), "default", lora(2, 4));
  CHECK(std::dynamic_pointer_cast<nn::Conv2d>(l.child("lora_A")->child("default"))->config().dilation ==
        std::make_pair<int64_t, int64_t>(1, 1));
  CHECK_THROWS_WITH(l.forward(Tensor::randn({1, 3, 6, 6})), Contains("not its dilation 2x2"));
}

TEST_CASE("two active adapters add up; one adapter alone gives its own output", "[lora]") {
  manual_seed(15);
  for (const auto& k : kinds()) {
    INFO(k.label);
    auto l = k.make(lora(2, 4));
    l->update_layer("other", lora(3, 3));
    const Tensor x = k.input();
    const Tensor y_base = no_grad_forward(*l->base_layer(), x);
    l->set_adapter({"default"});
    const Tensor ya = no_grad_forward(*l, x);
    l->set_adapter({"other"});
    const Tensor yb = no_grad_forward(*l, x);
    l->set_adapter({"default", "other"});
    const Tensor yab = no_grad_forward(*l, x);
    REQUIRE(max_abs_diff(ya, yb) > 1e-3);
    expect_near(yab, sub(add(ya, yb), y_base), 1e-5, 1e-5);
    // Both merged at once give the same output.
    l->merge();
    expect_near(no_grad_forward(*l, x), yab, 1e-4, 1e-4);
    l->unmerge();
  }
}

TEST_CASE("delete_adapter removes the adapter's tensors and is refused while merged", "[lora]") {
  manual_seed(16);
  for (const auto& k : kinds())
    for (bool dora : {false, true}) {
      INFO(k.label << (dora ? ", DoRA" : ""));
      LoraLayerSettings s = lora(2, 4);
      s.use_dora = dora;
      auto l = k.make(s);
      const std::set<std::string> before = names_of(l->state_dict());
      l->update_layer("other", s);
      CHECK(names_of(l->state_dict()).size() == before.size() + (dora ? 3 : 2));
      l->merge(false, {"other"});
      CHECK_THROWS_WITH(l->delete_adapter("other"), Contains("unmerge it before deleting it"));
      l->unmerge();
      l->delete_adapter("other");
      CHECK(names_of(l->state_dict()) == before);
      CHECK(l->adapter_names() == std::vector<std::string>{"default"});
      CHECK_THROWS_WITH(l->delete_adapter("other"), Contains("no adapter named 'other'"));
      CHECK(no_grad_forward(*l, k.input()).defined());
    }
}

TEST_CASE("DoRA with dropout in training recomputes the base product on the dropped-out input", "[lora][dora]") {
  manual_seed(17);
  const double p = 0.5, s = 4.0 / 2.0;
  LoraLayerSettings st = with_dora(lora(2, 4));
  st.lora_dropout = p;
  Generator g1(42), g2(42);  // the layer's dropout mask and ours are the same draw
  SECTION("Linear(6, 4)") {
    auto base = std::make_shared<nn::Linear>(6, 4);
    LoraLinear l(base, "default", st);
    perturb_magnitude(l);
    std::dynamic_pointer_cast<nn::Dropout>(l.child("lora_dropout")->child("default"))->set_generator(&g1);
    const Tensor x = Tensor::randn({5, 6});
    const Tensor A = adapter_param(l, "lora_A.default.weight"), B = adapter_param(l, "lora_B.default.weight");
    const Tensor W = base->weight(), b = base->bias();
    NoGradGuard ng;
    const Tensor v = add(W, mul(matmul(B, A), s));
    const Tensor f = div(dora_of(l)->magnitude(), sqrt(sum(mul(v, v), {1})));
    const Tensor h = dropout(x, p, true, &g2);
    const Tensor expected = add(add(linear(x, W, b), mul(add(f, -1.0), linear(h, W))),
                                mul(mul(f, linear(linear(h, A), B)), s));
    expect_near(l.forward(x), expected, 1e-5, 1e-5);
    // In eval the dropout is off and the output is f·(W + s·B·A)·x + b.
    l.eval();
    expect_near(l.forward(x), add(mul(f, linear(x, v)), b), 1e-5, 1e-5);
  }
  SECTION("Conv2d(3, 4, 3, padding=1)") {
    nn::Conv2dConfig cfg;
    cfg.padding = {1, 1};
    auto base = std::make_shared<nn::Conv2d>(3, 4, 3, cfg);
    LoraConv2d l(base, "default", st);
    perturb_magnitude(l);
    std::dynamic_pointer_cast<nn::Dropout>(l.child("lora_dropout")->child("default"))->set_generator(&g1);
    const Tensor x = Tensor::randn({2, 3, 4, 5});
    const Tensor A = adapter_param(l, "lora_A.default.weight"), B = adapter_param(l, "lora_B.default.weight");
    const Tensor& W = base->param("weight");
    NoGradGuard ng;
    const Tensor v = add(W, mul(matmul(B.reshape({4, 2}), A.reshape({2, -1})).reshape(W.shape()), s));
    const Tensor f = div(dora_of(l)->magnitude(), sqrt(sum(mul(v, v), {1, 2, 3})).reshape({1, -1, 1, 1}));
    const Tensor h = dropout(x, p, true, &g2);
    Conv2dOptions a_opt;
    a_opt.padding = {1, 1};
    const Tensor lora_out = conv2d(conv2d(h, A, Tensor(), a_opt), B);
    const Tensor expected = add(add(conv2d(x, W, base->bias(), base->options()),
                                    mul(add(f, -1.0), conv2d(h, W, Tensor(), base->options()))),
                                mul(mul(f, lora_out), s));
    expect_near(l.forward(x), expected, 1e-5, 1e-5);
  }
}

TEST_CASE("Embedding never applies lora_dropout, as PEFT", "[lora][embedding]") {
  manual_seed(18);
  LoraLayerSettings s = lora(2, 4);
  s.lora_dropout = 0.5;
  LoraEmbedding l(std::make_shared<nn::Embedding>(8, 4), "default", s);
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 7}, {4});
  REQUIRE(l.is_training());
  const Tensor y1 = no_grad_forward(l, ids), y2 = no_grad_forward(l, ids);
  CHECK(y1.to_vector<double>() == y2.to_vector<double>());
  l.eval();
  CHECK(no_grad_forward(l, ids).to_vector<double>() == y1.to_vector<double>());
}

TEST_CASE("lora_bias is refused for Embedding and together with DoRA", "[lora]") {
  LoraLayerSettings s = lora(2, 4);
  s.lora_bias = true;
  CHECK_THROWS_WITH(LoraEmbedding(std::make_shared<nn::Embedding>(8, 4), "default", s),
                    Contains("lora_bias=True is not supported for Embedding."));
  s.use_dora = true;
  CHECK_THROWS_WITH(LoraLinear(std::make_shared<nn::Linear>(4, 3), "default", s),
                    Contains("The argument lora_bias=True is not supported for DoRA, please pass use_dora=False"));
  CHECK_THROWS_WITH(LoraConv2d(std::make_shared<nn::Conv2d>(4, 3, 1), "default", s),
                    Contains("The argument lora_bias=True is not supported for DoRA"));
}

TEST_CASE("the built-in registry adapts Linear, Embedding and Conv2d, in PEFT's order", "[lora][dispatch]") {
  std::vector<std::string> types;
  for (const auto& e : builtin_lora_layers()) types.push_back(e.base_type);
  CHECK(types == std::vector<std::string>{"Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d", "Conv1D",
                                          "MultiheadAttention"});

  manual_seed(19);
  SECTION("Embedding + Linear") {
    auto model = std::make_shared<nn::Sequential>(
        std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Embedding>(10, 4), std::make_shared<nn::Linear>(4, 3)});
    const Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 9, 4}, {3});
    const Tensor y_base = no_grad_forward(*model, ids);
    LoraConfig cfg;
    cfg.target_modules = {"0", "1"};
    auto pm = get_peft_model(model, cfg);
    CHECK(pm->model()->get_submodule("0")->type_name() == "lora.Embedding");
    CHECK(pm->model()->get_submodule("1")->type_name() == "lora.Linear");
    expect_near(no_grad_forward(*pm, ids), y_base, 1e-6);
  }
  SECTION("Conv2d (3×3 and 1×1) with DoRA, merged and unloaded") {
    auto model = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
        std::make_shared<nn::Conv2d>(3, 4, 3), std::make_shared<nn::ReLU>(), std::make_shared<nn::Conv2d>(4, 2, 1)});
    LoraConfig cfg;
    cfg.target_modules = {"0", "2"};
    cfg.use_dora = true;
    cfg.init_lora_weights = LoraInit::Random;
    auto pm = get_peft_model(model, cfg);
    CHECK(pm->model()->get_submodule("0")->type_name() == "lora.Conv2d");
    CHECK(pm->model()->get_submodule("2")->type_name() == "lora.Conv2d");
    const Tensor x = Tensor::randn({2, 3, 5, 5});
    const Tensor y = no_grad_forward(*pm, x);
    nn::ModulePtr merged = pm->merge_and_unload();
    CHECK(merged->get_submodule("0")->type_name() == "Conv2d");
    expect_near(no_grad_forward(*merged, x), y, 1e-4, 1e-4);
  }
}

TEST_CASE("a DoRA magnitude is saved under PEFT's key '<module>.lora_magnitude_vector' and loads back", "[lora][dora]") {
  manual_seed(20);
  auto model = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Linear>(4, 3)});
  LoraConfig cfg;
  cfg.target_modules = {"0"};
  cfg.use_dora = true;
  auto pm = get_peft_model(model, cfg);
  NamedTensors sd = get_peft_model_state_dict(*pm->model(), cfg, "default", "base_model.model.");
  CHECK(names_of(sd) == std::set<std::string>{"base_model.model.0.lora_A.weight", "base_model.model.0.lora_B.weight",
                                              "base_model.model.0.lora_magnitude_vector"});
  NamedTensors changed;
  for (const auto& [k, t] : sd) changed.emplace_back(k, add(t, 1.0));
  AdapterLoadResult r = set_peft_model_state_dict(*pm->model(), changed, "default");
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  auto layer = std::dynamic_pointer_cast<LoraLayer>(pm->model()->get_submodule("0"));
  for (const auto& [k, t] : changed)
    if (k == "base_model.model.0.lora_magnitude_vector") expect_near(dora_of(*layer)->magnitude(), t, 0);
}
