// Functional ops against PyTorch (tests/golden/golden_ops.py): outputs and the gradients of
// every input for a stored upstream gradient. Options that the files do not carry (exponents,
// conv strides, ...) are repeated here next to the case name, as in the script. Dropout cannot
// match PyTorch's RNG, so its statistical contract is tested instead (end of file).
#include <catch2/catch.hpp>

#include <functional>

#include "golden_util.h"
#include "peft.h"

using golden::Case;
using golden::check_forward_backward;
using peft::Tensor;

namespace {

using Unary = std::function<Tensor(const Tensor&)>;
using Binary = std::function<Tensor(const Tensor&, const Tensor&)>;

void check_unary(const std::string& name, const Unary& fn, golden::Tol tol = {}) {
  Case c(name);
  Tensor x = c.leaf("x");
  check_forward_backward(c, {{"out", fn(x)}}, {{"x", x}}, tol, tol);
}

void check_binary(const std::string& name, const Binary& fn) {
  Case c(name);
  Tensor a = c.leaf("a"), b = c.leaf("b");
  check_forward_backward(c, {{"out", fn(a, b)}}, {{"a", a}, {"b", b}});
}

}  // namespace

// ---------------------------------------------------------------- elementwise

TEST_CASE("add, sub, mul and div broadcast and reduce gradients to each input's shape as PyTorch",
          "[golden][op]") {
  const std::vector<std::pair<std::string, Binary>> cases = {
      {"add_broadcast", [](const Tensor& a, const Tensor& b) { return a + b; }},
      {"sub_broadcast", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"mul_broadcast", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"div_broadcast", [](const Tensor& a, const Tensor& b) { return a / b; }},
      {"div_scalar_tensor", [](const Tensor& a, const Tensor& b) { return peft::div(a, b); }},
      {"pow_tensor", [](const Tensor& a, const Tensor& b) { return peft::pow(a, b); }},
  };
  for (const auto& [name, fn] : cases) DYNAMIC_SECTION(name) { check_binary(name, fn); }
}

TEST_CASE("adding and multiplying by scalars matches PyTorch", "[golden][op]") {
  check_unary("mul_add_scalar", [](const Tensor& x) { return (x * 2.5 + (-1.25)) / 4; });
}

TEST_CASE("unary elementwise ops match PyTorch forward and gradients", "[golden][op]") {
  const std::vector<std::pair<std::string, Unary>> cases = {
      {"neg", [](const Tensor& x) { return peft::neg(x); }},
      {"exp", [](const Tensor& x) { return peft::exp(x); }},
      {"log", [](const Tensor& x) { return peft::log(x); }},
      {"sqrt", [](const Tensor& x) { return peft::sqrt(x); }},
      {"abs", [](const Tensor& x) { return peft::abs(x); }},
      {"relu", [](const Tensor& x) { return peft::relu(x); }},
      {"sigmoid", [](const Tensor& x) { return peft::sigmoid(x); }},
      {"tanh", [](const Tensor& x) { return peft::tanh(x); }},
      {"pow_scalar_3", [](const Tensor& x) { return peft::pow(x, 3.0); }},
      {"pow_scalar_2_5", [](const Tensor& x) { return peft::pow(x, 2.5); }},
      {"pow_scalar_neg_1_5", [](const Tensor& x) { return peft::pow(x, -1.5); }},
  };
  for (const auto& [name, fn] : cases) DYNAMIC_SECTION(name) { check_unary(name, fn); }
}

TEST_CASE("gelu in erf and tanh forms matches PyTorch", "[golden][op]") {
  check_unary("gelu_erf", [](const Tensor& x) { return peft::gelu(x, "none"); });
  check_unary("gelu_tanh", [](const Tensor& x) { return peft::gelu(x, "tanh"); });
}

TEST_CASE("softmax and log_softmax over the last, the second and a middle dim match PyTorch", "[golden][op]") {
  check_unary("softmax_dim1", [](const Tensor& x) { return peft::softmax(x, 1); });
  check_unary("log_softmax_dim1", [](const Tensor& x) { return peft::log_softmax(x, 1); });
  check_unary("softmax_3d_dim1", [](const Tensor& x) { return peft::softmax(x, 1); });
  check_unary("log_softmax_3d_dim1", [](const Tensor& x) { return peft::log_softmax(x, 1); });
  check_unary("softmax_3d_dim_last", [](const Tensor& x) { return peft::softmax(x, -1); });
}

// ---------------------------------------------------------------- matmul / linear

TEST_CASE("matmul in 2-D, batched with broadcast batch dims and 1-D forms matches PyTorch", "[golden][op]") {
  for (const char* name : {"matmul_2d", "matmul_batched_broadcast", "matmul_batched_2d", "matmul_1d_1d", "matmul_1d_2d",
                           "matmul_2d_1d", "matmul_3d_1d", "matmul_1d_3d"}) {
    DYNAMIC_SECTION(name) { check_binary(name, [](const Tensor& a, const Tensor& b) { return peft::matmul(a, b); }); }
  }
}

TEST_CASE("linear with and without bias on 2-D and 3-D inputs matches PyTorch", "[golden][op]") {
  SECTION("bias, 3-D input") {
    Case c("linear_bias_3d");
    Tensor x = c.leaf("x"), w = c.leaf("weight"), b = c.leaf("bias");
    check_forward_backward(c, {{"out", peft::linear(x, w, b)}}, {{"x", x}, {"weight", w}, {"bias", b}});
  }
  SECTION("no bias") {
    Case c("linear_nobias");
    Tensor x = c.leaf("x"), w = c.leaf("weight");
    check_forward_backward(c, {{"out", peft::linear(x, w)}}, {{"x", x}, {"weight", w}});
  }
}

// ---------------------------------------------------------------- reductions / shape ops

TEST_CASE("sum and mean over everything and over dims, with and without keepdim, match PyTorch", "[golden][op]") {
  check_unary("sum_all", [](const Tensor& x) { return peft::sum(x); });
  check_unary("sum_dim1", [](const Tensor& x) { return peft::sum(x, {1}); });
  check_unary("sum_dims02_keepdim", [](const Tensor& x) { return peft::sum(x, {0, 2}, true); });
  check_unary("mean_all", [](const Tensor& x) { return peft::mean(x); });
  check_unary("mean_dim_last_keepdim", [](const Tensor& x) { return peft::mean(x, {-1}, true); });
  check_unary("mean_dims02", [](const Tensor& x) { return peft::mean(x, {0, 2}); });
}

TEST_CASE("max over a dim returns PyTorch's values and indices and routes the gradient to the argmax",
          "[golden][op]") {
  SECTION("dim 1") {
    Case c("max_dim1");
    Tensor x = c.leaf("x");
    auto [values, indices] = peft::max(x, 1);
    check_forward_backward(c, {{"values", values}, {"indices", indices}}, {{"x", x}});
  }
  SECTION("last dim, keepdim") {
    Case c("max_dim_last_keepdim");
    Tensor x = c.leaf("x");
    auto [values, indices] = peft::max(x, -1, true);
    check_forward_backward(c, {{"values", values}, {"indices", indices}}, {{"x", x}});
  }
  SECTION("over everything") { check_unary("max_all", [](const Tensor& x) { return peft::max(x); }); }
}

TEST_CASE("cat, stack and split match PyTorch and split the gradient back to each input", "[golden][op]") {
  SECTION("cat along dim 1 of three sizes") {
    Case c("cat_dim1");
    Tensor a = c.leaf("a"), b = c.leaf("b"), d = c.leaf("c");
    check_forward_backward(c, {{"out", peft::cat({a, b, d}, 1)}}, {{"a", a}, {"b", b}, {"c", d}});
  }
  SECTION("stack along dim 1") {
    Case c("stack_dim1");
    Tensor a = c.leaf("a"), b = c.leaf("b");
    check_forward_backward(c, {{"out", peft::stack({a, b}, 1)}}, {{"a", a}, {"b", b}});
  }
  SECTION("split into 2, 2, 1 along dim 1") {
    Case c("split_size2_dim1");
    Tensor x = c.leaf("x");
    std::vector<Tensor> parts = peft::split(x, 2, 1);
    REQUIRE(parts.size() == 3);
    check_forward_backward(c, {{"out.0", parts[0]}, {"out.1", parts[1]}, {"out.2", parts[2]}}, {{"x", x}});
  }
}

// ---------------------------------------------------------------- losses

TEST_CASE("nll_loss and cross_entropy with mean, sum and none reductions and ignore_index match PyTorch",
          "[golden][op]") {
  struct LossCase {
    const char* name;
    bool cross_entropy;
    const char* reduction;
    int64_t ignore_index;
  };
  const LossCase cases[] = {
      {"nll_loss_mean", false, "mean", -100},           {"nll_loss_mean_ignore", false, "mean", -100},
      {"nll_loss_sum_ignore2", false, "sum", 2},          {"nll_loss_none_ignore", false, "none", -100},
      {"cross_entropy_mean", true, "mean", -100},        {"cross_entropy_mean_ignore2", true, "mean", 2},
      {"cross_entropy_sum_ignore", true, "sum", -100},   {"cross_entropy_none_ignore2", true, "none", 2},
  };
  for (const auto& lc : cases) {
    DYNAMIC_SECTION(lc.name) {
      Case c(lc.name);
      Tensor x = c.leaf("x");
      const Tensor& target = c.get("target");
      Tensor out = lc.cross_entropy ? peft::cross_entropy(x, target, lc.reduction, lc.ignore_index)
                                    : peft::nll_loss(x, target, lc.reduction, lc.ignore_index);
      check_forward_backward(c, {{"out", out}}, {{"x", x}});
    }
  }
}

TEST_CASE("mse_loss with mean, sum and none reductions matches PyTorch for input and target gradients",
          "[golden][op]") {
  for (const char* reduction : {"mean", "sum", "none"}) {
    DYNAMIC_SECTION(reduction) {
      Case c(std::string("mse_loss_") + reduction);
      Tensor x = c.leaf("x"), t = c.leaf("target");
      check_forward_backward(c, {{"out", peft::mse_loss(x, t, reduction)}}, {{"x", x}, {"target", t}});
    }
  }
}

// ---------------------------------------------------------------- embedding / conv / pooling

TEST_CASE("embedding accumulates repeated ids and gives the padding row no gradient, as PyTorch",
          "[golden][op]") {
  SECTION("no padding_idx") {
    Case c("embedding");
    Tensor w = c.leaf("weight");
    check_forward_backward(c, {{"out", peft::embedding(w, c.get("ids"))}}, {{"weight", w}});
  }
  SECTION("padding_idx 0") {
    Case c("embedding_padding_idx0");
    Tensor w = c.leaf("weight");
    check_forward_backward(c, {{"out", peft::embedding(w, c.get("ids"), 0)}}, {{"weight", w}});
  }
}

TEST_CASE("conv2d with stride, padding, dilation, groups, non-square and 1x1 kernels matches PyTorch",
          "[golden][op]") {
  struct ConvCase {
    const char* name;
    peft::Conv2dOptions opt;
  };
  const ConvCase cases[] = {
      {"conv2d_3x3", {}},
      {"conv2d_kernel3x2_stride2x1_pad1x2", {{2, 1}, {1, 2}, {1, 1}, 1}},
      {"conv2d_dilation2x1_pad2", {{1, 1}, {2, 2}, {2, 1}, 1}},
      {"conv2d_groups2_stride2_pad1", {{2, 2}, {1, 1}, {1, 1}, 2}},
      {"conv2d_depthwise", {{1, 1}, {1, 0}, {1, 1}, 4}},
      {"conv2d_1x1_nobias", {}},
      {"conv2d_all_options", {{2, 1}, {2, 1}, {1, 2}, 3}},
  };
  for (const auto& cc : cases) {
    DYNAMIC_SECTION(cc.name) {
      Case c(cc.name);
      Tensor x = c.leaf("x"), w = c.leaf("weight");
      golden::Named leaves = {{"x", x}, {"weight", w}};
      Tensor b;
      if (c.has("bias")) {
        b = c.leaf("bias");
        leaves.emplace_back("bias", b);
      }
      check_forward_backward(c, {{"out", peft::conv2d(x, w, b, cc.opt)}}, leaves);
    }
  }
}

TEST_CASE("avg_pool2d with padding, count_include_pad both ways and ceil_mode matches PyTorch", "[golden][op]") {
  struct PoolCase {
    const char* name;
    peft::AvgPool2dOptions opt;
  };
  const PoolCase cases[] = {
      {"avg_pool2d_k2", {{2, 2}, {2, 2}, {0, 0}, false, true}},
      {"avg_pool2d_k3_s2_pad1_include", {{3, 3}, {2, 2}, {1, 1}, false, true}},
      {"avg_pool2d_k3_s2_pad1_exclude", {{3, 3}, {2, 2}, {1, 1}, false, false}},
      {"avg_pool2d_k3_s2_pad1_ceil_include", {{3, 3}, {2, 2}, {1, 1}, true, true}},
      {"avg_pool2d_k3_s2_pad1_ceil_exclude", {{3, 3}, {2, 2}, {1, 1}, true, false}},
      {"avg_pool2d_k2_s2_ceil", {{2, 2}, {2, 2}, {0, 0}, true, true}},
      {"avg_pool2d_k3x2_s2x1", {{3, 2}, {2, 1}, {0, 0}, false, true}},
  };
  for (const auto& pc : cases) {
    DYNAMIC_SECTION(pc.name) { check_unary(pc.name, [&](const Tensor& x) { return peft::avg_pool2d(x, pc.opt); }); }
  }
}

TEST_CASE("adaptive_avg_pool2d to 1x1 matches PyTorch", "[golden][op]") {
  check_unary("adaptive_avg_pool2d_1x1", [](const Tensor& x) { return peft::adaptive_avg_pool2d(x, {1, 1}); });
}

// ---------------------------------------------------------------- normalisation

TEST_CASE("group_norm with and without affine parameters matches PyTorch", "[golden][op]") {
  SECTION("3 groups, affine") {
    Case c("group_norm_3groups");
    Tensor x = c.leaf("x"), w = c.leaf("weight"), b = c.leaf("bias");
    check_forward_backward(c, {{"out", peft::group_norm(x, 3, w, b, 1e-5)}}, {{"x", x}, {"weight", w}, {"bias", b}});
  }
  SECTION("2 groups, 3-D input, no affine") {
    Case c("group_norm_noaffine_3d");
    Tensor x = c.leaf("x");
    check_forward_backward(c, {{"out", peft::group_norm(x, 2, Tensor(), Tensor(), 1e-5)}}, {{"x", x}});
  }
}

TEST_CASE("layer_norm over one and two normalized dims, with and without affine, matches PyTorch",
          "[golden][op]") {
  SECTION("one dim") {
    Case c("layer_norm_1dim");
    Tensor x = c.leaf("x"), w = c.leaf("weight"), b = c.leaf("bias");
    check_forward_backward(c, {{"out", peft::layer_norm(x, {5}, w, b, 1e-5)}}, {{"x", x}, {"weight", w}, {"bias", b}});
  }
  SECTION("two dims") {
    Case c("layer_norm_2dims");
    Tensor x = c.leaf("x"), w = c.leaf("weight"), b = c.leaf("bias");
    check_forward_backward(c, {{"out", peft::layer_norm(x, {3, 5}, w, b, 1e-5)}},
                           {{"x", x}, {"weight", w}, {"bias", b}});
  }
  SECTION("no affine") {
    Case c("layer_norm_noaffine");
    Tensor x = c.leaf("x");
    check_forward_backward(c, {{"out", peft::layer_norm(x, {6})}}, {{"x", x}});
  }
}

// ---------------------------------------------------------------- LSTM

TEST_CASE("lstm with 2 layers, batch_first both ways, with and without initial states matches PyTorch "
          "output, h_n, c_n and every gradient",
          "[golden][op]") {
  struct LstmCase {
    const char* name;
    int64_t layers;
    bool batch_first, state, bias;
  };
  const LstmCase cases[] = {
      {"lstm_2layers_seq_first", 2, false, false, true},
      {"lstm_2layers_seq_first_state", 2, false, true, true},
      {"lstm_2layers_batch_first", 2, true, false, true},
      {"lstm_2layers_batch_first_state", 2, true, true, true},
      {"lstm_1layer_nobias_state", 1, false, true, false},
  };
  for (const auto& lc : cases) {
    DYNAMIC_SECTION(lc.name) {
      Case c(lc.name);
      Tensor x = c.leaf("x");
      golden::Named leaves = {{"x", x}};
      std::vector<Tensor> params;
      for (int64_t l = 0; l < lc.layers; ++l) {
        const std::string s = std::to_string(l);
        for (const std::string& name : {"weight_ih_l" + s, "weight_hh_l" + s, "bias_ih_l" + s, "bias_hh_l" + s}) {
          if (!lc.bias && name.rfind("bias", 0) == 0) continue;
          params.push_back(c.leaf(name));
          leaves.emplace_back(name, params.back());
        }
      }
      std::optional<peft::LSTMState> hx;
      if (lc.state) {
        hx = peft::LSTMState{c.leaf("h0"), c.leaf("c0")};
        leaves.emplace_back("h0", hx->h);
        leaves.emplace_back("c0", hx->c);
      }
      peft::LSTMResult r = peft::lstm(x, hx, params, lc.bias, lc.layers, lc.batch_first);
      check_forward_backward(c, {{"out", r.output}, {"h_n", r.state.h}, {"c_n", r.state.c}}, leaves);
    }
  }
}

// ---------------------------------------------------------------- views, reuse, magnitudes

TEST_CASE("ops on non-contiguous views (transposed, permuted, strided, expanded) match PyTorch", "[golden][op]") {
  check_binary("matmul_transposed_b", [](const Tensor& a, const Tensor& b) { return peft::matmul(a, b.t()); });
  check_unary("softmax_transposed", [](const Tensor& x) { return peft::softmax(x.t(), 1); });
  check_unary("sum_transposed_dim0", [](const Tensor& x) { return peft::sum(x.t(), {0}); });
  check_unary("view_chain", [](const Tensor& x) {
    Tensor y = x.permute({2, 0, 1}).slice(0, 1, 5, 2);
    y = y.select(2, 1).unsqueeze(-1).expand({2, 3, 4});
    return (y * x.slice(0, 0, 2).slice(1, 0, 3).slice(2, 0, 4)).reshape({-1});
  });
  SECTION("conv2d of an NHWC tensor permuted to NCHW") {
    Case c("conv2d_channels_last_input");
    Tensor x = c.leaf("x"), w = c.leaf("weight"), b = c.leaf("bias");
    peft::Conv2dOptions opt;
    opt.padding = {1, 1};
    check_forward_backward(c, {{"out", peft::conv2d(x.permute({0, 3, 1, 2}), w, b, opt)}},
                           {{"x", x}, {"weight", w}, {"bias", b}});
  }
}

TEST_CASE("a leaf used twice accumulates both gradients, and linear takes a 1-D input, as PyTorch",
          "[golden][op]") {
  check_unary("mul_self_accumulate", [](const Tensor& x) { return x * x + x; });
  check_binary("linear_1d", [](const Tensor& x, const Tensor& w) { return peft::linear(x, w); });
}

TEST_CASE("log_softmax, cross_entropy and layer_norm stay accurate for large logits and offset inputs",
          "[golden][op]") {
  check_unary("log_softmax_large_logits", [](const Tensor& x) { return peft::log_softmax(x, 1); });
  SECTION("cross_entropy on logits of magnitude ~50") {
    Case c("cross_entropy_large_logits");
    Tensor x = c.leaf("x");
    check_forward_backward(c, {{"out", peft::cross_entropy(x, c.get("target"))}}, {{"x", x}});
  }
  check_unary("layer_norm_offset50", [](const Tensor& x) { return peft::layer_norm(x, {8}); });
}

TEST_CASE("group_norm with one group (PoolFormer's norm) and adaptive_avg_pool2d of a 3-D input match PyTorch",
          "[golden][op]") {
  check_unary("group_norm_1group", [](const Tensor& x) { return peft::group_norm(x, 1); });
  check_unary("adaptive_avg_pool2d_3d", [](const Tensor& x) { return peft::adaptive_avg_pool2d(x, {1, 1}); });
}

// ---------------------------------------------------------------- dropout (no golden data)

TEST_CASE("dropout in training zeroes about p of a large tensor and scales kept values by 1/(1-p)",
          "[golden][op][dropout]") {
  const double p = 0.3;
  const int64_t n = 200000;
  peft::Generator gen(7);
  Tensor x = Tensor::ones({400, n / 400});
  x.set_requires_grad(true);
  Tensor y = peft::dropout(x, p, /*training=*/true, &gen);
  const std::vector<float> v = y.to_vector<float>();
  int64_t zeros = 0;
  bool kept_scaled = true;
  for (float e : v) {
    if (e == 0.0f) ++zeros;
    else kept_scaled = kept_scaled && std::abs(e - 1.0 / (1.0 - p)) <= 1e-6;
  }
  // Binomial std of the zero fraction: sqrt(p(1-p)/n) ≈ 0.001; 0.006 is six of them.
  CHECK(std::abs(static_cast<double>(zeros) / n - p) < 0.006);
  CHECK(kept_scaled);
  // The gradient is the same mask: zero where dropped, 1/(1-p) where kept.
  peft::sum(y).backward();
  CHECK(x.grad().to_vector<float>() == v);
}

TEST_CASE("dropout is the identity in eval mode and with p = 0, and zeroes everything with p = 1",
          "[golden][op][dropout]") {
  peft::Generator gen(3);
  Tensor x = Tensor::randn({50, 40}, peft::DType::F32, &gen);
  CHECK(peft::dropout(x, 0.5, /*training=*/false, &gen).to_vector<float>() == x.to_vector<float>());
  CHECK(peft::dropout(x, 0.0, /*training=*/true, &gen).to_vector<float>() == x.to_vector<float>());
  const std::vector<float> all_zero = peft::dropout(x, 1.0, /*training=*/true, &gen).to_vector<float>();
  CHECK(std::all_of(all_zero.begin(), all_zero.end(), [](float e) { return e == 0.0f; }));

  peft::nn::Dropout layer(0.5);
  layer.set_generator(&gen);
  layer.eval();
  CHECK(layer(x).to_vector<float>() == x.to_vector<float>());
}

TEST_CASE("dropout masks are deterministic for a fixed Generator seed and differ across seeds",
          "[golden][op][dropout]") {
  Tensor x = Tensor::ones({64, 64});
  peft::Generator a(42), b(42), other(43);
  const std::vector<float> ya = peft::dropout(x, 0.4, true, &a).to_vector<float>();
  CHECK(ya == peft::dropout(x, 0.4, true, &b).to_vector<float>());
  CHECK(ya != peft::dropout(x, 0.4, true, &other).to_vector<float>());
  // Re-seeding replays the stream; the next draw from the same generator is a new mask.
  a.manual_seed(42);
  CHECK(ya == peft::dropout(x, 0.4, true, &a).to_vector<float>());
  CHECK(ya != peft::dropout(x, 0.4, true, &a).to_vector<float>());
}
