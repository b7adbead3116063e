// Finite-difference gradient checks (F64) for the nn ops: softmax / log_softmax, layer and
// group norm, dropout, the losses, embedding, conv2d, the poolings and the LSTM. The checker
// is tests/gradcheck.h; the elementwise / linalg / view checks are in test_gradcheck.cpp.
#include <catch2/catch.hpp>

#include "gradcheck.h"

using namespace peft;
using peft::testing::analytic_grads;
using peft::testing::gradcheck;
using peft::testing::make_ids;
using peft::testing::make_randn;
using peft::testing::make_uniform;
using peft::testing::numeric_grad;
using Xs = std::vector<Tensor>;

// ---------------------------------------------------------------- softmax

TEST_CASE("gradcheck: softmax and log_softmax over several dims", "[gradcheck][softmax]") {
  for (int64_t d : {0, 1, 2, -1}) {
    DYNAMIC_SECTION("dim " << d) {
      CHECK_GRADCHECK([d](const Xs& x) { return softmax(x[0], d); }, {make_randn({2, 3, 4})});
      CHECK_GRADCHECK([d](const Xs& x) { return log_softmax(x[0], d); }, {make_randn({2, 3, 4})});
    }
  }
  SECTION("1-D and non-contiguous inputs") {
    CHECK_GRADCHECK([](const Xs& x) { return softmax(x[0], 0); }, {make_randn({5})});
    CHECK_GRADCHECK([](const Xs& x) { return log_softmax(x[0].t(), 1); }, {make_randn({4, 3})});
  }
}

// ---------------------------------------------------------------- norms

TEST_CASE("gradcheck: layer_norm with and without affine", "[gradcheck][norm]") {
  SECTION("affine over the last dim") {
    CHECK_GRADCHECK([](const Xs& x) { return layer_norm(x[0], {4}, x[1], x[2]); },
                    {make_randn({2, 3, 4}), make_randn({4}), make_randn({4})});
  }
  SECTION("no affine") {
    CHECK_GRADCHECK([](const Xs& x) { return layer_norm(x[0], {4}); }, {make_randn({3, 4})});
  }
  SECTION("affine over the last two dims") {
    CHECK_GRADCHECK([](const Xs& x) { return layer_norm(x[0], {3, 4}, x[1], x[2]); },
                    {make_randn({2, 3, 4}), make_randn({3, 4}), make_randn({3, 4})});
  }
  SECTION("weight only, frozen input") {
    CHECK_GRADCHECK([](const Xs& x) { return layer_norm(x[0], {5}, x[1]); }, {make_randn({2, 5}, false), make_randn({5})});
  }
  SECTION("bias without weight (F.layer_norm(x, shape, None, b))") {
    CHECK_GRADCHECK([](const Xs& x) { return layer_norm(x[0], {3, 4}, Tensor(), x[1]); },
                    {make_randn({2, 3, 4}), make_randn({3, 4})});
  }
  SECTION("non-contiguous input, large eps") {
    CHECK_GRADCHECK([](const Xs& x) { return layer_norm(x[0].t(), {3}, x[1], x[2], 0.1); },
                    {make_randn({3, 4}), make_randn({3}), make_randn({3})});
  }
}

TEST_CASE("gradcheck: group_norm with and without affine", "[gradcheck][norm]") {
  for (int64_t groups : {1, 2, 4}) {
    DYNAMIC_SECTION(groups << " groups") {
      CHECK_GRADCHECK([groups](const Xs& x) { return group_norm(x[0], groups, x[1], x[2]); },
                      {make_randn({2, 4, 3, 2}), make_randn({4}), make_randn({4})});
      CHECK_GRADCHECK([groups](const Xs& x) { return group_norm(x[0], groups); }, {make_randn({2, 4, 3, 2})});
    }
  }
  SECTION("bias without weight") {
    CHECK_GRADCHECK([](const Xs& x) { return group_norm(x[0], 2, Tensor(), x[1]); },
                    {make_randn({2, 4, 3}), make_randn({4})});
  }
  SECTION("only the affine parameters require grad") {
    CHECK_GRADCHECK([](const Xs& x) { return group_norm(x[0], 2, x[1], x[2]); },
                    {make_randn({2, 4, 3}, false), make_randn({4}), make_randn({4})});
  }
  SECTION("2-D and 3-D inputs") {
    CHECK_GRADCHECK([](const Xs& x) { return group_norm(x[0], 2, x[1], x[2]); },
                    {make_randn({3, 4}), make_randn({4}), make_randn({4})});
    CHECK_GRADCHECK([](const Xs& x) { return group_norm(x[0], 3, x[1], x[2]); },
                    {make_randn({2, 6, 5}), make_randn({6}), make_randn({6})});
  }
}

// ---------------------------------------------------------------- dropout

TEST_CASE("gradcheck: dropout with a fixed generator", "[gradcheck][dropout]") {
  // A fresh generator with the same seed each call: the same mask every evaluation.
  auto f = [](const Xs& x) {
    Generator gen(1234);
    return dropout(x[0], 0.4, true, &gen);
  };
  Tensor x = make_randn({4, 5});
  CHECK_GRADCHECK(f, {x});
  SECTION("the mask repeats for the same seed, and some elements are dropped") {
    NoGradGuard g;
    std::vector<double> a = f({x}).to_vector<double>(), b = f({x}).to_vector<double>();
    CHECK(a == b);
    std::vector<double> xv = x.to_vector<double>();
    int zeros = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] == 0) ++zeros;
      else CHECK(a[i] == Approx(xv[i] / 0.6));
    }
    CHECK(zeros > 0);
    CHECK(zeros < static_cast<int>(a.size()));
  }
  SECTION("eval mode and p = 0 are the identity") {
    CHECK_GRADCHECK([](const Xs& x) { return dropout(x[0], 0.5, false); }, {make_randn({3})});
    CHECK_GRADCHECK([](const Xs& x) { return dropout(x[0], 0.0, true); }, {make_randn({3})});
  }
  SECTION("p = 1 drops everything") {
    CHECK_GRADCHECK([](const Xs& x) { return dropout(x[0], 1.0, true); }, {make_randn({3})});
  }
}

// ---------------------------------------------------------------- losses

TEST_CASE("gradcheck: nll_loss for every reduction, with ignore_index", "[gradcheck][loss]") {
  Tensor target = make_ids({1, 4, 0, 4, 2}, {5});
  for (const char* red : {"mean", "sum", "none"}) {
    DYNAMIC_SECTION("reduction " << red) {
      std::string r = red;
      CHECK_GRADCHECK([target, r](const Xs& x) { return nll_loss(x[0], target, r); }, {make_randn({5, 5})});
      // ignored targets take no gradient and, for mean, do not count.
      Tensor t_ign = make_ids({1, -100, 0, 3, -100}, {5});
      CHECK_GRADCHECK([t_ign, r](const Xs& x) { return nll_loss(x[0], t_ign, r); }, {make_randn({5, 4})});
      Tensor t_custom = make_ids({2, 2, 0, 1}, {4});
      CHECK_GRADCHECK([t_custom, r](const Xs& x) { return nll_loss(x[0], t_custom, r, 2); }, {make_randn({4, 3})});
    }
  }
  SECTION("unbatched input (C) with a 0-d target") {
    Tensor t = make_ids({2}, {});
    CHECK_GRADCHECK([t](const Xs& x) { return nll_loss(x[0], t); }, {make_randn({4})});
    CHECK_GRADCHECK([t](const Xs& x) { return nll_loss(x[0], t, "none"); }, {make_randn({4})});
  }
}

TEST_CASE("gradcheck: cross_entropy for every reduction, with ignore_index", "[gradcheck][loss]") {
  for (const char* red : {"mean", "sum", "none"}) {
    DYNAMIC_SECTION("reduction " << red) {
      std::string r = red;
      Tensor t = make_ids({3, 0, 2, 3}, {4});
      CHECK_GRADCHECK([t, r](const Xs& x) { return cross_entropy(x[0], t, r); }, {make_randn({4, 4})});
      Tensor t_ign = make_ids({3, -100, 2, 1}, {4});
      CHECK_GRADCHECK([t_ign, r](const Xs& x) { return cross_entropy(x[0], t_ign, r); }, {make_randn({4, 5})});
      Tensor t_custom = make_ids({0, 1, 0}, {3});
      CHECK_GRADCHECK([t_custom, r](const Xs& x) { return cross_entropy(x[0], t_custom, r, 0); }, {make_randn({3, 2})});
    }
  }
  SECTION("unbatched logits") {
    Tensor t = make_ids({1}, {});
    CHECK_GRADCHECK([t](const Xs& x) { return cross_entropy(x[0], t); }, {make_randn({3})});
  }
}

TEST_CASE("gradcheck: mse_loss for every reduction, w.r.t. input and target", "[gradcheck][loss]") {
  for (const char* red : {"mean", "sum", "none"}) {
    DYNAMIC_SECTION("reduction " << red) {
      std::string r = red;
      CHECK_GRADCHECK([r](const Xs& x) { return mse_loss(x[0], x[1], r); }, {make_randn({3, 4}), make_randn({3, 4})});
      CHECK_GRADCHECK([r](const Xs& x) { return mse_loss(x[0], x[1], r); }, {make_randn({5}), make_randn({5}, false)});
    }
  }
}

// ---------------------------------------------------------------- embedding

TEST_CASE("gradcheck: embedding w.r.t. the weight, repeated ids accumulate", "[gradcheck][embedding]") {
  Tensor ids = make_ids({4, 0, 4, 2, 5, 4}, {2, 3});
  CHECK_GRADCHECK([ids](const Xs& x) { return embedding(x[0], ids); }, {make_randn({6, 3})});
  Tensor flat = make_ids({1, 1, 3}, {3});
  CHECK_GRADCHECK([flat](const Xs& x) { return embedding(x[0], flat); }, {make_randn({4, 2})});
  Tensor scalar_id = make_ids({2}, {});
  CHECK_GRADCHECK([scalar_id](const Xs& x) { return embedding(x[0], scalar_id); }, {make_randn({4, 2})});
}

TEST_CASE("embedding with padding_idx: the padding row reads normally but gets no gradient", "[gradcheck][embedding]") {
  // The forward uses the padding row, so its finite-difference gradient is not zero; PyTorch
  // (and we) deliberately report zero for it. Every other row must match finite differences.
  Tensor ids = make_ids({1, 3, 1, 0, 3, 2}, {3, 2});
  for (int64_t pad : {int64_t{3}, int64_t{-1}}) {  // -1 wraps to row 3
    DYNAMIC_SECTION("padding_idx " << pad) {
      peft::testing::MultiFn f = [ids, pad](const Xs& x) { return Xs{embedding(x[0], ids, pad)}; };
      Xs inputs{make_randn({4, 2})};
      Tensor analytic = analytic_grads(f, inputs)[0];
      Tensor numeric = numeric_grad(f, inputs, 0);
      std::string msg;
      const bool ok = peft::testing::grads_close(analytic.slice(0, 0, 3), numeric.slice(0, 0, 3), {}, "rows 0-2", msg);
      INFO(msg);
      CHECK(ok);
      CHECK(analytic.select(0, 3).to_vector<double>() == std::vector<double>{0.0, 0.0});
      CHECK(std::abs(numeric.select(0, 3).to_vector<double>()[0]) > 1e-3);  // the row was used
    }
  }
}

// ---------------------------------------------------------------- conv / pooling

TEST_CASE("gradcheck: conv2d with stride, padding, dilation, groups, bias", "[gradcheck][conv]") {
  struct Case {
    const char* name;
    Shape x, w;
    Conv2dOptions opt;
    bool bias;
  };
  const Case cases[] = {
      {"plain 3x3 with bias", {2, 3, 5, 5}, {4, 3, 3, 3}, {}, true},
      {"plain 3x3 without bias", {1, 2, 4, 5}, {3, 2, 3, 3}, {}, false},
      {"stride 2", {1, 2, 6, 5}, {3, 2, 3, 3}, {{2, 2}, {0, 0}, {1, 1}, 1}, true},
      {"asymmetric stride and padding", {2, 2, 5, 6}, {3, 2, 3, 2}, {{2, 1}, {1, 2}, {1, 1}, 1}, true},
      {"dilation", {1, 2, 7, 6}, {2, 2, 3, 3}, {{1, 1}, {1, 0}, {2, 1}, 1}, true},
      {"groups 2", {2, 4, 5, 5}, {6, 2, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 2}, true},
      {"depthwise", {1, 3, 4, 4}, {3, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 3}, false},
      {"1x1", {2, 3, 4, 4}, {5, 3, 1, 1}, {}, true},
      {"1x1 stride 2 no bias", {1, 4, 5, 5}, {2, 4, 1, 1}, {{2, 2}, {0, 0}, {1, 1}, 1}, false},
      {"everything at once", {2, 4, 7, 6}, {4, 2, 3, 2}, {{2, 1}, {2, 1}, {2, 2}, 2}, true},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      Conv2dOptions opt = c.opt;
      Xs inputs{make_randn(c.x), make_uniform(c.w, -0.5, 0.5)};
      if (c.bias) inputs.push_back(make_randn({c.w[0]}));
      CHECK_GRADCHECK(
          [opt](const Xs& x) { return conv2d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), opt); }, inputs);
    }
  }
  SECTION("only some of input, weight, bias require grad") {
    auto f = [](const Xs& x) { return conv2d(x[0], x[1], x[2], {{2, 1}, {1, 1}, {1, 1}, 1}); };
    CHECK_GRADCHECK(f, {make_randn({1, 2, 5, 4}), make_uniform({3, 2, 3, 3}, -0.5, 0.5, false), make_randn({3}, false)});
    CHECK_GRADCHECK(f, {make_randn({1, 2, 5, 4}, false), make_uniform({3, 2, 3, 3}, -0.5, 0.5), make_randn({3}, false)});
    CHECK_GRADCHECK(f, {make_randn({1, 2, 5, 4}, false), make_uniform({3, 2, 3, 3}, -0.5, 0.5, false), make_randn({3})});
  }
  SECTION("non-contiguous input") {
    CHECK_GRADCHECK([](const Xs& x) { return conv2d(x[0].transpose(2, 3), x[1]); },
                    {make_randn({1, 2, 5, 4}), make_uniform({2, 2, 2, 2}, -0.5, 0.5)});
  }
}

TEST_CASE("gradcheck: avg_pool2d with padding, ceil_mode and count_include_pad", "[gradcheck][pool]") {
  for (bool ceil_mode : {false, true}) {
    for (bool include_pad : {true, false}) {
      DYNAMIC_SECTION("ceil_mode " << ceil_mode << " count_include_pad " << include_pad) {
        AvgPool2dOptions o;
        o.ceil_mode = ceil_mode;
        o.count_include_pad = include_pad;
        o.kernel = {3, 3};
        o.stride = {2, 2};
        o.padding = {1, 1};
        CHECK_GRADCHECK([o](const Xs& x) { return avg_pool2d(x[0], o); }, {make_randn({2, 2, 6, 7})});
        o.kernel = {2, 3};
        o.stride = {0, 0};  // = kernel
        o.padding = {1, 0};
        CHECK_GRADCHECK([o](const Xs& x) { return avg_pool2d(x[0], o); }, {make_randn({1, 2, 5, 7})});
      }
    }
  }
  SECTION("default 2x2 window, stride = kernel") {
    CHECK_GRADCHECK([](const Xs& x) { return avg_pool2d(x[0], AvgPool2dOptions{}); }, {make_randn({1, 3, 4, 5})});
  }
}

TEST_CASE("gradcheck: adaptive_avg_pool2d to 1x1", "[gradcheck][pool]") {
  CHECK_GRADCHECK([](const Xs& x) { return adaptive_avg_pool2d(x[0], {1, 1}); }, {make_randn({2, 3, 4, 5})});
  CHECK_GRADCHECK([](const Xs& x) { return adaptive_avg_pool2d(x[0], {1, 1}); }, {make_randn({3, 2, 2})});
}

// ---------------------------------------------------------------- lstm

namespace {
// Parameters of a num_layers LSTM in PyTorch's order, small so the gates stay unsaturated.
Xs lstm_params(int64_t in, int64_t H, int64_t num_layers, bool biases) {
  Xs p;
  for (int64_t l = 0; l < num_layers; ++l) {
    p.push_back(make_uniform({4 * H, l == 0 ? in : H}, -0.6, 0.6));
    p.push_back(make_uniform({4 * H, H}, -0.6, 0.6));
    if (biases) {
      p.push_back(make_uniform({4 * H}, -0.3, 0.3));
      p.push_back(make_uniform({4 * H}, -0.3, 0.3));
    }
  }
  return p;
}
}  // namespace

TEST_CASE("gradcheck: 2-layer batch_first lstm with initial states, all inputs and weights", "[gradcheck][lstm]") {
  const int64_t B = 2, T = 3, in = 3, H = 2, L = 2;
  // inputs: x, h0, c0, then the 8 parameters.
  Xs inputs{make_randn({B, T, in}), make_uniform({L, B, H}, -0.5, 0.5), make_uniform({L, B, H}, -0.5, 0.5)};
  for (auto& p : lstm_params(in, H, L, true)) inputs.push_back(p);
  CHECK_GRADCHECK(
      [](const Xs& x) {
        Xs params(x.begin() + 3, x.end());
        LSTMResult r = lstm(x[0], LSTMState{x[1], x[2]}, params, true, 2, true);
        return Xs{r.output, r.state.h, r.state.c};
      },
      inputs);
}

TEST_CASE("gradcheck: lstm without biases, seq-first, zero initial state", "[gradcheck][lstm]") {
  const int64_t T = 4, B = 2, in = 2, H = 3;
  Xs inputs{make_randn({T, B, in})};
  for (auto& p : lstm_params(in, H, 1, false)) inputs.push_back(p);
  CHECK_GRADCHECK(
      [](const Xs& x) {
        LSTMResult r = lstm(x[0], std::nullopt, Xs(x.begin() + 1, x.end()), false, 1, false);
        return Xs{r.output, r.state.h, r.state.c};
      },
      inputs);
  SECTION("only the last hidden state is used") {
    CHECK_GRADCHECK(
        [](const Xs& x) {
          return lstm(x[0], std::nullopt, Xs(x.begin() + 1, x.end()), false, 1, false).state.h;
        },
        inputs);
  }
}

// ---------------------------------------------------------------- lstm_cell
// The fused cell on its own: its backward is one hand-written kernel, so each output alone and
// the absent-input forms (no recurrent term, zero c_prev) are checked as well as both together.

TEST_CASE("gradcheck: lstm_cell through h and c, each output alone, and from views", "[gradcheck][lstm]") {
  const int64_t B = 3, H = 4;
  Xs inputs{make_uniform({B, 4 * H}, -1.5, 1.5), make_uniform({B, 4 * H}, -1.5, 1.5), make_uniform({B, H}, -1.0, 1.0)};
  CHECK_GRADCHECK(
      [](const Xs& x) {
        auto [h, c] = lstm_cell(x[0], x[1], x[2]);
        return Xs{h, c};
      },
      inputs);
  SECTION("only h is used") {
    CHECK_GRADCHECK([](const Xs& x) { return lstm_cell(x[0], x[1], x[2]).first; }, inputs);
  }
  SECTION("only c is used") {
    CHECK_GRADCHECK([](const Xs& x) { return lstm_cell(x[0], x[1], x[2]).second; }, inputs);
  }
  SECTION("non-contiguous views as inputs") {
    Xs views{make_uniform({4 * H, B}, -1.5, 1.5), make_uniform({B, 8 * H}, -1.5, 1.5), make_uniform({H, B}, -1.0, 1.0)};
    CHECK_GRADCHECK(
        [&](const Xs& x) {
          auto [h, c] = lstm_cell(x[0].t(), x[1].slice(1, 0, 8 * H, 2), x[2].t());
          return Xs{h, c};
        },
        views);
  }
}

TEST_CASE("gradcheck: lstm_cell without a recurrent term or c_prev (zero initial state)", "[gradcheck][lstm]") {
  const int64_t B = 2, H = 3;
  Xs inputs{make_uniform({B, 4 * H}, -1.5, 1.5), make_uniform({B, H}, -1.0, 1.0)};
  CHECK_GRADCHECK(
      [](const Xs& x) {
        auto [h, c] = lstm_cell(x[0], Tensor(), Tensor());
        return Xs{h, c};
      },
      {inputs[0]});
  CHECK_GRADCHECK(
      [](const Xs& x) {
        auto [h, c] = lstm_cell(x[0], Tensor(), x[1]);
        return Xs{h, c};
      },
      inputs);
}

TEST_CASE("lstm_cell equals the op chain it fuses, and refuses mismatched shapes", "[lstm]") {
  const int64_t B = 3, H = 5;
  Tensor gx = Tensor::randn({B, 4 * H}, DType::F64), gh = Tensor::randn({B, 4 * H}, DType::F64);
  Tensor cp = Tensor::randn({B, H}, DType::F64);
  auto [h, c] = lstm_cell(gx, gh, cp);
  std::vector<Tensor> q = chunk(add(gx, gh), 4, 1);
  Tensor want_c = add(mul(sigmoid(q[1]), cp), mul(sigmoid(q[0]), tanh(q[2])));
  Tensor want_h = mul(sigmoid(q[3]), tanh(want_c));
  CHECK(max(abs(sub(c, want_c))).item<double>() < 1e-14);
  CHECK(max(abs(sub(h, want_h))).item<double>() < 1e-14);
  CHECK_THROWS_WITH(lstm_cell(Tensor::randn({B, 4 * H + 1}), Tensor(), Tensor()),
                    Catch::Matchers::Contains("lstm_cell: gates_x must be (batch, 4 * hidden)"));
  CHECK_THROWS_WITH(lstm_cell(gx, Tensor::randn({B, 4 * H}, DType::F64), Tensor::randn({B, H + 1}, DType::F64)),
                    Catch::Matchers::Contains("lstm_cell: c_prev has shape [3, 6], expected [3, 5]"));
  CHECK_THROWS_WITH(lstm_cell(gx, Tensor::randn({B, 4 * H}), cp), Catch::Matchers::Contains("lstm_cell"));
}
