// Layers against PyTorch's torch.nn defaults: initialisation distributions (Linear / Conv2d
// U(±1/√fan_in), Embedding N(0, 1) with a zero padding row, LSTM U(±1/√H), norms ones and
// zeros), parameter names and shapes of every layer, LayerNorm2d = LayerNorm over channels,
// Dropout in eval, and the containers' indexing and naming.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
};

Stats stats_of(const Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  Stats s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.std += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(s.std / static_cast<double>(v.size()));
  return s;
}

// U(-bound, bound): all values inside, the extremes reached, mean ≈ 0, std ≈ bound/√3.
void check_uniform(const Tensor& t, double bound, double rel_tol = 0.03) {
  INFO("shape " << shape_str(t.shape()) << ", bound " << bound);
  Stats s = stats_of(t);
  CHECK(s.min >= -bound);
  CHECK(s.max <= bound);
  CHECK(s.min < -0.9 * bound);
  CHECK(s.max > 0.9 * bound);
  const double n = static_cast<double>(t.numel());
  CHECK(std::abs(s.mean) < 4 * bound / std::sqrt(3.0 * n));  // 4 standard errors
  CHECK(s.std == Approx(bound / std::sqrt(3.0)).epsilon(rel_tol));
}

struct NamedShape {
  std::string name;
  Shape shape;
  bool operator==(const NamedShape& o) const { return name == o.name && shape == o.shape; }
};

std::ostream& operator<<(std::ostream& os, const NamedShape& n) { return os << n.name << shape_str(n.shape); }

std::vector<NamedShape> param_shapes(const nn::Module& m) {
  std::vector<NamedShape> out;
  for (auto& [name, t] : m.named_parameters()) out.push_back({name, t.shape()});
  return out;
}

std::vector<std::string> module_names(nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [name, mod] : m.named_modules()) out.push_back(name + ":" + mod->type_name());
  return out;
}

}  // namespace

// ---------------------------------------------------------------- initialisation

TEST_CASE("Linear weight and bias are U(±1/sqrt(in_features)) as PyTorch", "[layers][init]") {
  manual_seed(1);
  nn::Linear lin(256, 4096);
  check_uniform(lin.weight(), 1.0 / 16.0);
  check_uniform(lin.bias(), 1.0 / 16.0);
  nn::Linear small(9, 2000);
  check_uniform(small.weight(), 1.0 / 3.0);
  check_uniform(small.bias(), 1.0 / 3.0, 0.05);
}

TEST_CASE("Conv2d weight and bias are U(±1/sqrt(in/groups·kh·kw)) as PyTorch", "[layers][init]") {
  manual_seed(2);
  nn::Conv2d conv(64, 128, 3);  // fan_in = 64·9 = 576
  check_uniform(conv.param("weight"), 1.0 / 24.0);
  nn::Conv2dConfig g;
  g.groups = 4;
  nn::Conv2d grouped(64, 4096, {1, 4}, g);  // fan_in = 16·4 = 64
  check_uniform(grouped.param("weight"), 1.0 / 8.0);
  check_uniform(grouped.bias(), 1.0 / 8.0);
}

TEST_CASE("Embedding weight is N(0, 1) and the padding row is zero", "[layers][init]") {
  manual_seed(3);
  nn::Embedding emb(1000, 64);
  Stats s = stats_of(emb.param("weight"));
  CHECK(std::abs(s.mean) < 0.02);
  CHECK(s.std == Approx(1.0).epsilon(0.02));
  CHECK(s.max > 3.5);  // a normal, not a bounded uniform
  CHECK(s.min < -3.5);

  nn::Embedding padded(10, 4, /*padding_idx=*/3);
  Tensor w = padded.param("weight");
  CHECK(w.select(0, 3).to_vector<float>() == std::vector<float>(4, 0.0f));
  CHECK(w.select(0, 2).to_vector<float>() != std::vector<float>(4, 0.0f));
  nn::Embedding neg(10, 4, /*padding_idx=*/-1);  // normalised to 9
  CHECK(neg.padding_idx() == std::optional<int64_t>(9));
  CHECK(neg.param("weight").select(0, 9).to_vector<float>() == std::vector<float>(4, 0.0f));
}

TEST_CASE("Embedding padding row gets no gradient and looks up rows", "[layers]") {
  nn::Embedding emb(5, 3, /*padding_idx=*/0);
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 2, 2, 4}, {2, 2});
  Tensor y = emb.forward(ids);
  CHECK(y.shape() == Shape{2, 2, 3});
  CHECK(y.select(0, 1).select(0, 1).to_vector<float>() == emb.param("weight").select(0, 4).to_vector<float>());
  sum(y).backward();
  Tensor g = emb.param("weight").grad();
  CHECK(g.select(0, 0).to_vector<float>() == std::vector<float>(3, 0.0f));
  CHECK(g.select(0, 2).to_vector<float>() == std::vector<float>(3, 2.0f));
  CHECK(g.select(0, 1).to_vector<float>() == std::vector<float>(3, 0.0f));
}

TEST_CASE("LSTM parameters are U(±1/sqrt(hidden_size)) as PyTorch", "[layers][init]") {
  manual_seed(4);
  nn::LSTM lstm(100, 64, 2);
  for (auto& [name, p] : lstm.named_parameters()) {
    INFO(name);
    check_uniform(p, 1.0 / 8.0, name.rfind("bias", 0) == 0 ? 0.06 : 0.03);
  }
}

TEST_CASE("norm layers start at weight ones and bias zeros", "[layers][init]") {
  nn::GroupNorm gn(2, 6);
  nn::LayerNorm ln(Shape{3, 4});
  nn::LayerNorm2d ln2d(5);
  for (nn::Module* m : std::initializer_list<nn::Module*>{&gn, &ln, &ln2d}) {
    INFO(m->type_name());
    const std::vector<double> w = m->param("weight").to_vector<double>();
    const std::vector<double> b = m->param("bias").to_vector<double>();
    CHECK(std::all_of(w.begin(), w.end(), [](double v) { return v == 1.0; }));
    CHECK(std::all_of(b.begin(), b.end(), [](double v) { return v == 0.0; }));
  }
  CHECK(nn::GroupNorm(2, 6, 1e-5, /*affine=*/false).named_parameters().empty());
  CHECK(nn::LayerNorm(4, 1e-5, /*elementwise_affine=*/false).named_parameters().empty());
}

TEST_CASE("the same seed gives the same initial weights", "[layers][init]") {
  manual_seed(42);
  nn::Linear a(8, 4);
  manual_seed(42);
  nn::Linear b(8, 4);
  CHECK(a.weight().to_vector<float>() == b.weight().to_vector<float>());
  CHECK(a.bias().to_vector<float>() == b.bias().to_vector<float>());
  nn::Linear c(8, 4);
  CHECK(a.weight().to_vector<float>() != c.weight().to_vector<float>());
}

// ---------------------------------------------------------------- names and shapes

TEST_CASE("every layer's parameters have PyTorch's names and shapes", "[layers]") {
  using V = std::vector<NamedShape>;
  CHECK(param_shapes(nn::Linear(3, 5)) == V{{"weight", {5, 3}}, {"bias", {5}}});
  CHECK(param_shapes(nn::Linear(3, 5, /*bias=*/false)) == V{{"weight", {5, 3}}});
  CHECK(param_shapes(nn::Conv2d(3, 8, {3, 5})) == V{{"weight", {8, 3, 3, 5}}, {"bias", {8}}});
  nn::Conv2dConfig g;
  g.groups = 4;
  g.bias = false;
  CHECK(param_shapes(nn::Conv2d(8, 12, 3, g)) == V{{"weight", {12, 2, 3, 3}}});
  nn::Conv2dConfig dw;  // depthwise
  dw.groups = 6;
  CHECK(param_shapes(nn::Conv2d(6, 6, 3, dw)) == V{{"weight", {6, 1, 3, 3}}, {"bias", {6}}});
  CHECK(param_shapes(nn::Embedding(7, 2)) == V{{"weight", {7, 2}}});
  CHECK(param_shapes(nn::GroupNorm(2, 6)) == V{{"weight", {6}}, {"bias", {6}}});
  CHECK(param_shapes(nn::LayerNorm(Shape{3, 4})) == V{{"weight", {3, 4}}, {"bias", {3, 4}}});
  CHECK(param_shapes(nn::LayerNorm2d(5)) == V{{"weight", {5}}, {"bias", {5}}});
  CHECK(param_shapes(nn::ReLU()).empty());
  CHECK(param_shapes(nn::GELU()).empty());
  CHECK(param_shapes(nn::Dropout(0.1)).empty());
  CHECK(param_shapes(nn::Identity()).empty());
  CHECK(param_shapes(nn::Flatten()).empty());
  CHECK(param_shapes(nn::AvgPool2d(2, 2)).empty());
  CHECK(param_shapes(nn::LogSoftmax(-1)).empty());
}

TEST_CASE("a 2-layer LSTM names its parameters weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._l1",
          "[layers]") {
  using V = std::vector<NamedShape>;
  nn::LSTM lstm(10, 20, 2);
  CHECK(param_shapes(lstm) == V{{"weight_ih_l0", {80, 10}},
                                {"weight_hh_l0", {80, 20}},
                                {"bias_ih_l0", {80}},
                                {"bias_hh_l0", {80}},
                                {"weight_ih_l1", {80, 20}},
                                {"weight_hh_l1", {80, 20}},
                                {"bias_ih_l1", {80}},
                                {"bias_hh_l1", {80}}});
  CHECK(param_shapes(nn::LSTM(10, 20, 2, /*bias=*/false)) ==
        V{{"weight_ih_l0", {80, 10}}, {"weight_hh_l0", {80, 20}}, {"weight_ih_l1", {80, 20}}, {"weight_hh_l1", {80, 20}}});
  CHECK(lstm.flat_weights().size() == 8);
  CHECK(lstm.flat_weights()[4].is_same(lstm.param("weight_ih_l1")));
}

TEST_CASE("layers built with F64 hold F64 parameters", "[layers]") {
  nn::Linear lin(3, 2, true, DType::F64);
  for (auto& p : lin.parameters()) CHECK(p.dtype() == DType::F64);
  Tensor y = lin.forward(Tensor::ones({4, 3}, DType::F64));
  CHECK(y.dtype() == DType::F64);
  CHECK(nn::LSTM(3, 2, 1, true, false, DType::F64).param("weight_hh_l0").dtype() == DType::F64);
}

// ---------------------------------------------------------------- forward behaviour

TEST_CASE("Linear forward is x·Wᵀ + b on any leading dims", "[layers]") {
  nn::Linear lin(2, 3);
  {
    NoGradGuard g;
    lin.weight().copy_(Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2}));
    lin.param("bias").copy_(Tensor::from_vector(std::vector<float>{0.5f, -1, 0}, {3}));
  }
  Tensor x = Tensor::from_vector(std::vector<float>{1, 1, 2, -1}, {2, 1, 2});
  Tensor y = lin.forward(x);
  CHECK(y.shape() == Shape{2, 1, 3});
  CHECK(y.to_vector<float>() == std::vector<float>{3.5f, 6, 11, 0.5f, 1, 4});
}

TEST_CASE("LayerNorm2d on NCHW equals LayerNorm over channels of the NHWC permutation", "[layers]") {
  manual_seed(5);
  nn::LayerNorm2d ln2d(6, 1e-6);
  nn::LayerNorm ln(6, 1e-6);
  {
    NoGradGuard g;
    Tensor w = Tensor::randn({6}), b = Tensor::randn({6});
    ln2d.param("weight").copy_(w);
    ln2d.param("bias").copy_(b);
    ln.param("weight").copy_(w);
    ln.param("bias").copy_(b);
  }
  Tensor x = Tensor::randn({2, 6, 3, 4}).requires_grad_();
  Tensor y = ln2d.forward(x);
  Tensor ref = ln.forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
  CHECK(y.shape() == Shape{2, 6, 3, 4});
  const std::vector<float> a = y.to_vector<float>(), r = ref.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(r[i]).margin(1e-5));
  // The affine weight's gradient agrees as well.
  Tensor upstream = Tensor::randn({2, 6, 3, 4});
  sum(mul(y, upstream)).backward();
  const std::vector<float> g2d = ln2d.param("weight").grad().to_vector<float>();
  sum(mul(ref, upstream)).backward();
  const std::vector<float> gref = ln.param("weight").grad().to_vector<float>();
  for (size_t i = 0; i < g2d.size(); ++i) CHECK(g2d[i] == Approx(gref[i]).margin(1e-4));
}

TEST_CASE("Dropout is the identity in eval mode and with p=0, and zeroes everything with p=1", "[layers]") {
  Tensor x = Tensor::randn({64, 32});
  nn::Dropout d(0.3);
  d.eval();
  CHECK(d.forward(x).to_vector<float>() == x.to_vector<float>());
  nn::Dropout zero(0.0);
  CHECK(zero.forward(x).to_vector<float>() == x.to_vector<float>());
  nn::Dropout one(1.0);
  const std::vector<float> y = one.forward(x).to_vector<float>();
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.0f; }));
  // Training mode with 0 < p < 1: kept values scaled by 1/(1-p).
  nn::Dropout half(0.5);
  Tensor ones = Tensor::ones({2000});
  const std::vector<float> h = half.forward(ones).to_vector<float>();
  CHECK(std::all_of(h.begin(), h.end(), [](float v) { return v == 0.0f || v == 2.0f; }));
  const auto kept = std::count(h.begin(), h.end(), 2.0f);
  CHECK(kept > 850);
  CHECK(kept < 1150);
}

TEST_CASE("LSTM forward gives (seq, batch, H) or (batch, seq, H) outputs and (layers, batch, H) states", "[layers]") {
  nn::LSTM lstm(4, 3, 2);
  LSTMResult r = lstm.forward_with_state(Tensor::randn({5, 2, 4}));
  CHECK(r.output.shape() == Shape{5, 2, 3});
  CHECK(r.state.h.shape() == Shape{2, 2, 3});
  CHECK(r.state.c.shape() == Shape{2, 2, 3});
  // The last output step is the top layer's final hidden state.
  CHECK(r.output.select(0, 4).to_vector<float>() == r.state.h.select(0, 1).to_vector<float>());
  nn::LSTM bf(4, 3, 1, true, /*batch_first=*/true);
  CHECK(bf.forward(Tensor::randn({2, 5, 4})).shape() == Shape{2, 5, 3});
}

TEST_CASE("Conv2d, pooling and Flatten give PyTorch's output shapes", "[layers]") {
  nn::Conv2dConfig c;
  c.stride = {2, 2};
  c.padding = {1, 1};
  c.groups = 2;
  nn::Conv2d conv(4, 6, 3, c);
  Tensor y = conv.forward(Tensor::randn({2, 4, 9, 8}));
  CHECK(y.shape() == Shape{2, 6, 5, 4});
  CHECK(nn::AvgPool2d(3, 1, 1).forward(y).shape() == Shape{2, 6, 5, 4});
  CHECK(nn::AvgPool2d(2, 2).forward(y).shape() == Shape{2, 6, 2, 2});
  CHECK(nn::AdaptiveAvgPool2d(1).forward(y).shape() == Shape{2, 6, 1, 1});
  CHECK(nn::Flatten().forward(y).shape() == Shape{2, 120});
  CHECK(nn::GroupNorm(3, 6).forward(y).shape() == y.shape());
}

// ---------------------------------------------------------------- containers

TEST_CASE("Sequential push_back names children by index and forward runs them in order", "[layers][container]") {
  auto seq = std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{std::make_shared<nn::Linear>(3, 4), std::make_shared<nn::ReLU>()});
  auto head = std::make_shared<nn::Linear>(4, 2);
  seq->push_back(head);
  seq->push_back(std::make_shared<nn::LogSoftmax>(-1));
  CHECK(seq->size() == 4);
  CHECK(module_names(*seq) ==
        std::vector<std::string>{":Sequential", "0:Linear", "1:ReLU", "2:Linear", "3:LogSoftmax"});
  CHECK((*seq)[2] == head);
  CHECK(seq->child("2") == head);
  CHECK_THROWS_WITH((*seq)[4], Contains("index 4") && Contains("size 4"));
  Tensor x = Tensor::randn({5, 3});
  NoGradGuard g;
  Tensor want = log_softmax(head->forward(relu((*seq)[0]->forward(x))), -1);
  CHECK(seq->forward(x).to_vector<float>() == want.to_vector<float>());
  CHECK(nn::Sequential().forward(x).is_same(x));  // empty: identity
}

TEST_CASE("ModuleList indexes by position and has no forward", "[layers][container]") {
  auto a = std::make_shared<nn::Linear>(2, 2);
  auto b = std::make_shared<nn::ReLU>();
  auto list_ptr = std::make_shared<nn::ModuleList>(std::initializer_list<nn::ModulePtr>{a});
  nn::ModuleList& list = *list_ptr;
  list.push_back(b);
  CHECK(list.size() == 2);
  CHECK(list[0] == a);
  CHECK(list[1] == b);
  CHECK_THROWS_WITH(list[2], Contains("ModuleList") && Contains("index 2"));
  CHECK(module_names(list) == std::vector<std::string>{":ModuleList", "0:Linear", "1:ReLU"});
  std::vector<std::string> names;
  for (auto& [n, p] : list.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias"});
  CHECK_THROWS_WITH(list.forward(Tensor::ones({2})), Contains("ModuleList"));
}

TEST_CASE("ModuleDict indexes by key in insertion order and has no forward", "[layers][container]") {
  auto dict_ptr = std::make_shared<nn::ModuleDict>();
  nn::ModuleDict& dict = *dict_ptr;
  auto q = std::make_shared<nn::Linear>(2, 3);
  dict.insert("query", q);
  dict.insert("act", std::make_shared<nn::GELU>());
  CHECK(dict.size() == 2);
  CHECK(dict["query"] == q);
  CHECK(dict.contains("act"));
  CHECK_FALSE(dict.contains("value"));
  CHECK_THROWS_WITH(dict["value"], Contains("value"));
  CHECK_THROWS_AS(dict.insert("query", std::make_shared<nn::ReLU>()), Error);
  CHECK_THROWS_AS(dict.insert("a.b", std::make_shared<nn::ReLU>()), Error);
  CHECK(module_names(dict) == std::vector<std::string>{":ModuleDict", "query:Linear", "act:GELU"});
  CHECK_THROWS_WITH(dict.forward(Tensor::ones({2})), Contains("ModuleDict"));
}
