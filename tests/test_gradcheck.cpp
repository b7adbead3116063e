// Finite-difference gradient checks (F64) for the elementwise ops, reductions, matmul /
// linear, shape ops and the Tensor views. The nn ops (softmax, norms, losses, conv, pooling,
// embedding, dropout, lstm) are in test_gradcheck_nn.cpp; the checker is tests/gradcheck.h.
#include <catch2/catch.hpp>

#include "gradcheck.h"

using namespace peft;
using peft::testing::gradcheck;
using peft::testing::make_away_from_zero;
using peft::testing::make_distinct;
using peft::testing::make_randn;
using peft::testing::make_uniform;
using Xs = std::vector<Tensor>;

// ---------------------------------------------------------------- the checker itself

TEST_CASE("gradcheck catches a wrong backward rule", "[gradcheck]") {
  // y = x² but the recorded backward claims dy/dx = x (half the truth).
  auto wrong_square = [](const Xs& x) {
    Tensor out;
    {
      NoGradGuard g;
      out = mul(x[0], x[0]);
    }
    Tensor xs = x[0].detach();
    autograd::record("WrongSquare", {x[0]}, {out}, [xs](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {mul(g[0], xs)};
    });
    return out;
  };
  auto r = gradcheck(wrong_square, {make_randn({3, 2})});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.message, Catch::Contains("analytic"));
  CHECK_GRADCHECK([](const Xs& x) { return mul(x[0], x[0]); }, {make_randn({3, 2})});
}

TEST_CASE("gradcheck refuses F32 inputs and inputs that need no grad", "[gradcheck]") {
  auto f = [](const Xs& x) { return exp(x[0]); };
  CHECK_FALSE(gradcheck(f, {Tensor::randn({3}).set_requires_grad(true)}).ok);
  CHECK_FALSE(gradcheck(f, {make_randn({3}, false)}).ok);
}

// ---------------------------------------------------------------- elementwise

TEST_CASE("gradcheck: add, sub, mul, div with broadcasting", "[gradcheck][elementwise]") {
  using BinFn = Tensor (*)(const Tensor&, const Tensor&);
  struct Case { const char* name; BinFn fn; };
  const Case ops[] = {{"add", static_cast<BinFn>(&add)}, {"sub", static_cast<BinFn>(&sub)},
                      {"mul", static_cast<BinFn>(&mul)}, {"div", static_cast<BinFn>(&div)}};
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{2, 3}, {2, 3}},        // same shape
      {{2, 3}, {3}},           // b broadcast over rows
      {{3, 1}, {2, 3, 4}},     // a broadcast (leading dim added, size-1 dim stretched)
      {{2, 1, 4}, {3, 1}},     // both operands broadcast → (2, 3, 4)
      {{}, {2, 3}},            // 0-d scalar tensor on the left
      {{2, 3}, {}},            // and on the right
      {{1}, {2, 3}},           // 1-element 1-d tensor
  };
  for (const auto& op : ops) {
    for (const auto& [sa, sb] : shapes) {
      DYNAMIC_SECTION(op.name << " " << shape_str(sa) << " with " << shape_str(sb)) {
        // Divisors stay away from zero.
        Tensor b = make_away_from_zero(sb, 0.5, 1.5);
        CHECK_GRADCHECK([fn = op.fn](const Xs& x) { return fn(x[0], x[1]); }, {make_randn(sa), b});
      }
    }
  }
}

TEST_CASE("gradcheck: binary op where only one operand requires grad", "[gradcheck][elementwise]") {
  Tensor a = make_randn({2, 3}), b = make_away_from_zero({3}, 0.5, 1.5, false);
  CHECK_GRADCHECK([](const Xs& x) { return div(x[0], x[1]); }, {a, b});
  CHECK_GRADCHECK([](const Xs& x) { return mul(x[1], x[0]); }, {a, b});
  CHECK_GRADCHECK([](const Xs& x) { return div(x[1], x[0]); }, {b, make_away_from_zero({2, 3}, 0.5, 1.5)});
}

TEST_CASE("gradcheck: add and mul with a double, and the operators", "[gradcheck][elementwise]") {
  CHECK_GRADCHECK([](const Xs& x) { return add(x[0], 2.5); }, {make_randn({2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return mul(x[0], -1.75); }, {make_randn({2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return (x[0] - 1.0) / 4.0 + 3.0 * x[0] * x[1] - (-x[1]); },
                  {make_randn({4}), make_randn({2, 4})});
}

TEST_CASE("gradcheck: unary math", "[gradcheck][elementwise]") {
  SECTION("neg") { CHECK_GRADCHECK([](const Xs& x) { return neg(x[0]); }, {make_randn({2, 3})}); }
  SECTION("exp") { CHECK_GRADCHECK([](const Xs& x) { return exp(x[0]); }, {make_randn({2, 3})}); }
  SECTION("log of positive values") {
    CHECK_GRADCHECK([](const Xs& x) { return log(x[0]); }, {make_uniform({2, 3}, 0.3, 3.0)});
  }
  SECTION("sqrt of positive values") {
    CHECK_GRADCHECK([](const Xs& x) { return sqrt(x[0]); }, {make_uniform({2, 3}, 0.3, 3.0)});
  }
  SECTION("abs away from 0") { CHECK_GRADCHECK([](const Xs& x) { return abs(x[0]); }, {make_away_from_zero({3, 4})}); }
  SECTION("relu away from 0") { CHECK_GRADCHECK([](const Xs& x) { return relu(x[0]); }, {make_away_from_zero({3, 4})}); }
  SECTION("gelu erf form") {
    CHECK_GRADCHECK([](const Xs& x) { return gelu(x[0]); }, {make_uniform({3, 4}, -3, 3)});
  }
  SECTION("gelu tanh form") {
    CHECK_GRADCHECK([](const Xs& x) { return gelu(x[0], "tanh"); }, {make_uniform({3, 4}, -3, 3)});
  }
  SECTION("sigmoid") { CHECK_GRADCHECK([](const Xs& x) { return sigmoid(x[0]); }, {make_uniform({3, 4}, -4, 4)}); }
  SECTION("tanh") { CHECK_GRADCHECK([](const Xs& x) { return tanh(x[0]); }, {make_uniform({3, 4}, -2, 2)}); }
}

TEST_CASE("gradcheck: unary ops on a non-contiguous input", "[gradcheck][elementwise]") {
  CHECK_GRADCHECK([](const Xs& x) { return exp(x[0].t()); }, {make_randn({3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return tanh(x[0].slice(1, 0, 4, 2)); }, {make_randn({3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return mul(x[0].t(), x[1]); }, {make_randn({3, 4}), make_randn({4, 3})});
}

TEST_CASE("gradcheck: pow with a double exponent", "[gradcheck][elementwise]") {
  SECTION("square of any sign") { CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], 2.0); }, {make_randn({2, 3})}); }
  SECTION("cube of any sign") { CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], 3.0); }, {make_randn({2, 3})}); }
  SECTION("fractional and negative exponents of positive values") {
    CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], 1.5); }, {make_uniform({2, 3}, 0.3, 2.0)});
    CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], -0.5); }, {make_uniform({2, 3}, 0.3, 2.0)});
  }
  SECTION("exponent 0 has zero gradient") {
    CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], 0.0); }, {make_randn({2, 3})});
  }
}

TEST_CASE("gradcheck: pow with a tensor exponent", "[gradcheck][elementwise]") {
  SECTION("same shape") {
    CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], x[1]); }, {make_uniform({2, 3}, 0.3, 2.0), make_randn({2, 3})});
  }
  SECTION("exponent broadcast") {
    CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], x[1]); }, {make_uniform({2, 3}, 0.3, 2.0), make_randn({3})});
  }
  SECTION("base broadcast") {
    CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], x[1]); }, {make_uniform({3, 1}, 0.3, 2.0), make_randn({2, 3, 4})});
  }
  SECTION("scalar exponent tensor") {
    CHECK_GRADCHECK([](const Xs& x) { return pow(x[0], x[1]); }, {make_uniform({2, 3}, 0.3, 2.0), make_uniform({}, 0.5, 2)});
  }
}

TEST_CASE("gradcheck: sum_to reduces a broadcast gradient", "[gradcheck][elementwise]") {
  CHECK_GRADCHECK([](const Xs& x) { return sum_to(x[0], {3, 1}); }, {make_randn({2, 3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return sum_to(x[0], {}); }, {make_randn({2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return sum_to(x[0], {2, 3}); }, {make_randn({2, 3})});
}

// ---------------------------------------------------------------- reductions

TEST_CASE("gradcheck: sum and mean over dims, keepdim both ways", "[gradcheck][reduce]") {
  const std::vector<std::vector<int64_t>> dim_sets = {{0}, {1}, {-1}, {0, 2}, {2, 0, 1}};
  for (bool keepdim : {false, true}) {
    for (const auto& dims : dim_sets) {
      DYNAMIC_SECTION("dims " << shape_str(dims) << " keepdim " << keepdim) {
        CHECK_GRADCHECK([dims, keepdim](const Xs& x) { return sum(x[0], dims, keepdim); }, {make_randn({2, 3, 4})});
        CHECK_GRADCHECK([dims, keepdim](const Xs& x) { return mean(x[0], dims, keepdim); }, {make_randn({2, 3, 4})});
      }
    }
  }
  SECTION("everything") {
    CHECK_GRADCHECK([](const Xs& x) { return sum(x[0]); }, {make_randn({2, 3})});
    CHECK_GRADCHECK([](const Xs& x) { return mean(x[0]); }, {make_randn({2, 3})});
  }
  SECTION("a non-contiguous input") {
    CHECK_GRADCHECK([](const Xs& x) { return sum(x[0].permute({2, 0, 1}), {1}); }, {make_randn({2, 3, 4})});
    CHECK_GRADCHECK([](const Xs& x) { return mean(x[0].t(), {0}, true); }, {make_randn({3, 5})});
  }
}

TEST_CASE("gradcheck: max over a dim sends the gradient to the argmax", "[gradcheck][reduce]") {
  for (int64_t d : {0, 1, 2, -1}) {
    for (bool keepdim : {false, true}) {
      DYNAMIC_SECTION("dim " << d << " keepdim " << keepdim) {
        // Both outputs are returned: the I64 indices carry no gradient and must not break backward.
        CHECK_GRADCHECK(
            [d, keepdim](const Xs& x) {
              auto [v, i] = max(x[0], d, keepdim);
              return std::vector<Tensor>{v, i};
            },
            {make_distinct({3, 4, 2})});
      }
    }
  }
  SECTION("over everything") { CHECK_GRADCHECK([](const Xs& x) { return max(x[0]); }, {make_distinct({3, 4})}); }
  SECTION("of a transposed input") {
    CHECK_GRADCHECK([](const Xs& x) { return max(x[0].t(), 1).first; }, {make_distinct({3, 4})});
  }
}

// ---------------------------------------------------------------- linear algebra

TEST_CASE("gradcheck: matmul in every rank combination", "[gradcheck][linalg]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{4}, {4}},                   // dot product → 0-d
      {{3}, {3, 5}},                // vector · matrix
      {{2, 3}, {3}},                // matrix · vector
      {{2, 3}, {3, 4}},             // matrix · matrix
      {{2, 3, 4}, {4, 5}},          // 3-D · 2-D: batch folded into rows
      {{2, 3, 4}, {2, 4, 5}},       // batched
      {{2, 1, 3, 4}, {5, 4, 2}},    // batch dims broadcast both ways → (2, 5, 3, 2)
      {{3, 4}, {2, 4, 2}},          // 2-D broadcast against a batch
      {{3}, {2, 3, 4}},             // vector · batch
      {{2, 3, 4}, {4}},             // batch · vector
  };
  for (const auto& [sa, sb] : shapes) {
    DYNAMIC_SECTION(shape_str(sa) << " @ " << shape_str(sb)) {
      CHECK_GRADCHECK([](const Xs& x) { return matmul(x[0], x[1]); }, {make_randn(sa), make_randn(sb)});
    }
  }
  SECTION("transposed operands (used in place by the GEMM)") {
    CHECK_GRADCHECK([](const Xs& x) { return matmul(x[0].t(), x[1].t()); }, {make_randn({3, 2}), make_randn({4, 3})});
    CHECK_GRADCHECK([](const Xs& x) { return matmul(x[0].transpose(1, 2), x[1]); },
                    {make_randn({2, 4, 3}), make_randn({2, 4, 5})});
  }
  SECTION("only one operand requires grad") {
    CHECK_GRADCHECK([](const Xs& x) { return matmul(x[0], x[1]); }, {make_randn({2, 3, 4}, false), make_randn({4, 2})});
    CHECK_GRADCHECK([](const Xs& x) { return matmul(x[0], x[1]); }, {make_randn({2, 3, 4}), make_randn({2, 4, 2}, false)});
  }
  SECTION("a strided operand (a slice with step)") {
    CHECK_GRADCHECK([](const Xs& x) { return matmul(x[0].slice(1, 0, 6, 2), x[1]); }, {make_randn({2, 6}), make_randn({3, 4})});
  }
}

TEST_CASE("gradcheck: linear with and without bias", "[gradcheck][linalg]") {
  SECTION("2-D input with bias") {
    CHECK_GRADCHECK([](const Xs& x) { return linear(x[0], x[1], x[2]); },
                    {make_randn({2, 3}), make_randn({4, 3}), make_randn({4})});
  }
  SECTION("2-D input without bias") {
    CHECK_GRADCHECK([](const Xs& x) { return linear(x[0], x[1]); }, {make_randn({2, 3}), make_randn({4, 3})});
  }
  SECTION("3-D input") {
    CHECK_GRADCHECK([](const Xs& x) { return linear(x[0], x[1], x[2]); },
                    {make_randn({2, 3, 3}), make_randn({4, 3}), make_randn({4})});
  }
  SECTION("1-D input") {
    CHECK_GRADCHECK([](const Xs& x) { return linear(x[0], x[1], x[2]); }, {make_randn({3}), make_randn({2, 3}), make_randn({2})});
  }
  SECTION("non-contiguous input and frozen weight") {
    CHECK_GRADCHECK([](const Xs& x) { return linear(x[0].t(), x[1], x[2]); },
                    {make_randn({3, 5}), make_randn({4, 3}, false), make_randn({4})});
  }
  SECTION("only the weight requires grad") {
    CHECK_GRADCHECK([](const Xs& x) { return linear(x[0], x[1], x[2]); },
                    {make_randn({2, 3}, false), make_randn({4, 3}), make_randn({4}, false)});
  }
}

TEST_CASE("gradcheck: lora_linear w.r.t. x, W, b, A and B", "[gradcheck][linalg][lora]") {
  // inputs: x, W, b, A, B
  auto plain = [](const Xs& x) { return lora_linear(x[0], x[1], x[2], x[3], x[4], 0.75); };
  SECTION("everything requires grad") {
    CHECK_GRADCHECK(plain, {make_randn({3, 4}), make_randn({5, 4}), make_randn({5}), make_randn({2, 4}), make_randn({5, 2})});
  }
  SECTION("frozen base weight and bias, 3-D input (the LoRA training case)") {
    CHECK_GRADCHECK(plain, {make_randn({2, 3, 4}), make_randn({5, 4}, false), make_randn({5}, false), make_randn({3, 4}),
                            make_randn({5, 3})});
  }
  SECTION("no bias, non-contiguous input, rank 1") {
    CHECK_GRADCHECK([](const Xs& x) { return lora_linear(x[0].t(), x[1], Tensor(), x[2], x[3], 2.0); },
                    {make_randn({4, 3}), make_randn({2, 4}), make_randn({1, 4}), make_randn({2, 1})});
  }
  SECTION("dropout on the LoRA branch with a fixed generator") {
    auto f = [](const Xs& x) {
      Generator gen(77);
      return lora_linear(x[0], x[1], x[2], x[3], x[4], 0.5, 0.3, true, &gen);
    };
    CHECK_GRADCHECK(f, {make_randn({4, 3}), make_randn({2, 3}), make_randn({2}), make_randn({2, 3}), make_randn({2, 2})});
  }
  SECTION("dropout is off outside training") {
    CHECK_GRADCHECK([](const Xs& x) { return lora_linear(x[0], x[1], Tensor(), x[2], x[3], 1.0, 0.9, false); },
                    {make_randn({2, 3}), make_randn({2, 3}, false), make_randn({2, 3}), make_randn({2, 2})});
  }
}

TEST_CASE("gradcheck: lora_conv1x1 w.r.t. x, W, b, A and B", "[gradcheck][linalg][lora]") {
  // inputs: x (N, in, H, W), W (out, in), b, A (r, in), B (out, r)
  auto plain = [](const Xs& x) { return lora_conv1x1(x[0], x[1], x[2], x[3], x[4], 0.75); };
  SECTION("everything requires grad, two images") {
    CHECK_GRADCHECK(plain, {make_randn({2, 3, 2, 3}), make_randn({4, 3}), make_randn({4}), make_randn({2, 3}),
                            make_randn({4, 2})});
  }
  SECTION("frozen base weight and bias (the LoRA training case), three images") {
    CHECK_GRADCHECK(plain, {make_randn({3, 4, 2, 2}), make_randn({5, 4}, false), make_randn({5}, false),
                            make_randn({3, 4}), make_randn({5, 3})});
  }
  SECTION("no bias, channels-last input (non-contiguous), rank 1") {
    CHECK_GRADCHECK([](const Xs& x) { return lora_conv1x1(x[0].permute({0, 3, 1, 2}), x[1], Tensor(), x[2], x[3], 2.0); },
                    {make_randn({2, 2, 3, 4}), make_randn({2, 4}), make_randn({1, 4}), make_randn({2, 1})});
  }
  SECTION("only A and B require grad; 1×1 spatial extent") {
    CHECK_GRADCHECK(plain, {make_randn({2, 3, 1, 1}, false), make_randn({2, 3}, false), make_randn({2}, false),
                            make_randn({2, 3}), make_randn({2, 2})});
  }
}

TEST_CASE("lora_conv1x1 equals the three convolutions PEFT runs, and handles empty batches", "[linalg][lora]") {
  Tensor x = Tensor::randn({2, 3, 4, 5}, DType::F64), w = Tensor::randn({6, 3}, DType::F64),
         b = Tensor::randn({6}, DType::F64), A = Tensor::randn({2, 3}, DType::F64),
         B = Tensor::randn({6, 2}, DType::F64);
  // PEFT: base_layer(x) + lora_B(lora_A(x)) * scaling, all three nn.Conv2d with 1×1 kernels.
  Tensor ref = add(conv2d(x, w.reshape({6, 3, 1, 1}), b),
                   mul(conv2d(conv2d(x, A.reshape({2, 3, 1, 1})), B.reshape({6, 2, 1, 1})), 1.5));
  Tensor got = lora_conv1x1(x, w, b, A, B, 1.5);
  CHECK(got.shape() == ref.shape());
  CHECK(got.is_contiguous());
  CHECK(max(abs(sub(got, ref))).item() < 1e-12);
  for (const Shape& empty : {Shape{0, 3, 4, 5}, Shape{2, 3, 0, 5}}) {
    Tensor xe = Tensor::randn(empty, DType::F64).set_requires_grad(true);
    Tensor Ae = A.detach().set_requires_grad(true), Be = B.detach().set_requires_grad(true);
    Tensor be = b.detach().set_requires_grad(true);
    Tensor ye = lora_conv1x1(xe, w, be, Ae, Be, 1.5);
    CHECK(ye.shape() == Shape{empty[0], 6, empty[2], 5});
    sum(ye).backward();
    CHECK(xe.grad().shape() == empty);
    CHECK(max(abs(Ae.grad())).item() == 0.0);
    CHECK(max(abs(Be.grad())).item() == 0.0);
    CHECK(max(abs(be.grad())).item() == 0.0);
  }
}

// ---------------------------------------------------------------- cat / stack / split / chunk

TEST_CASE("gradcheck: cat along several dims", "[gradcheck][shape]") {
  CHECK_GRADCHECK([](const Xs& x) { return cat({x[0], x[1], x[2]}, 1); },
                  {make_randn({2, 1, 3}), make_randn({2, 4, 3}), make_randn({2, 2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return cat({x[0], x[1]}, 0); }, {make_randn({1, 3}), make_randn({2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return cat({x[0], x[1]}, -1); }, {make_randn({2, 2}), make_randn({2, 3}, false)});
  SECTION("the same tensor twice") {
    CHECK_GRADCHECK([](const Xs& x) { return cat({x[0], mul(x[0], x[0])}, 0); }, {make_randn({2, 3})});
  }
}

TEST_CASE("gradcheck: stack along several dims", "[gradcheck][shape]") {
  for (int64_t d : {0, 1, 2, -1}) {
    DYNAMIC_SECTION("dim " << d) {
      CHECK_GRADCHECK([d](const Xs& x) { return stack({x[0], x[1], x[2]}, d); },
                      {make_randn({2, 3}), make_randn({2, 3}), make_randn({2, 3})});
    }
  }
}

TEST_CASE("gradcheck: split and chunk, every piece weighted", "[gradcheck][shape]") {
  CHECK_GRADCHECK([](const Xs& x) { return split(x[0], 2, 1); }, {make_randn({3, 5})});  // 2 + 2 + 1
  CHECK_GRADCHECK([](const Xs& x) { return split(x[0], 1, 0); }, {make_randn({3, 2})});
  CHECK_GRADCHECK([](const Xs& x) { return chunk(x[0], 3, -1); }, {make_randn({2, 7})});
  CHECK_GRADCHECK([](const Xs& x) { return chunk(x[0], 2, 0); }, {make_randn({4, 3})});
  SECTION("only some pieces used") {
    CHECK_GRADCHECK([](const Xs& x) { return mul(chunk(x[0], 3, 1)[2], 2.0); }, {make_randn({2, 6})});
  }
}

TEST_CASE("gradcheck: index_select picks rows along a dim", "[gradcheck][shape]") {
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 0, 2, 1}, {4});
  CHECK_GRADCHECK([idx](const Xs& x) { return index_select(x[0], 0, idx); }, {make_randn({3, 2})});
  CHECK_GRADCHECK([idx](const Xs& x) { return index_select(x[0], 1, idx); }, {make_randn({2, 3, 2})});
}

// ---------------------------------------------------------------- views

TEST_CASE("gradcheck: reshape and view", "[gradcheck][view]") {
  CHECK_GRADCHECK([](const Xs& x) { return x[0].view({3, 4}); }, {make_randn({2, 6})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].view({-1}); }, {make_randn({2, 3, 2})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].reshape({4, -1}); }, {make_randn({2, 6})});
  SECTION("reshape of a non-contiguous input (copies)") {
    CHECK_GRADCHECK([](const Xs& x) { return x[0].t().reshape({-1}); }, {make_randn({3, 4})});
  }
  SECTION("reshape to a 0-d tensor and back") {
    CHECK_GRADCHECK([](const Xs& x) { return x[0].reshape({}).reshape({1, 1}); }, {make_randn({1})});
  }
}

TEST_CASE("gradcheck: transpose, t and permute", "[gradcheck][view]") {
  CHECK_GRADCHECK([](const Xs& x) { return x[0].transpose(0, 2); }, {make_randn({2, 3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].transpose(-1, 1); }, {make_randn({2, 3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].t(); }, {make_randn({2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].permute({2, 0, 1}); }, {make_randn({2, 3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].permute({1, 2, 0}).permute({0, 2, 1}); }, {make_randn({2, 3, 4})});
}

TEST_CASE("gradcheck: slice with steps and negative bounds, narrow, select", "[gradcheck][view]") {
  CHECK_GRADCHECK([](const Xs& x) { return x[0].slice(1, 1, 6, 2); }, {make_randn({2, 7})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].slice(0, -3, -1); }, {make_randn({4, 2})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].slice(2, 0, 100, 3); }, {make_randn({2, 2, 5})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].slice(0, 1, 3).slice(1, 0, 4, 2); }, {make_randn({4, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].narrow(1, 1, 2); }, {make_randn({3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].select(1, -1); }, {make_randn({2, 3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].select(0, 1); }, {make_randn({3, 4})});
  SECTION("overlapping slices of one input sum their gradients") {
    CHECK_GRADCHECK([](const Xs& x) { return add(x[0].slice(0, 0, 3), mul(x[0].slice(0, 1, 4), x[0].slice(0, 1, 4))); },
                    {make_randn({4, 2})});
  }
}

TEST_CASE("gradcheck: squeeze, unsqueeze, flatten", "[gradcheck][view]") {
  CHECK_GRADCHECK([](const Xs& x) { return x[0].squeeze(); }, {make_randn({2, 1, 3, 1})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].squeeze(1); }, {make_randn({2, 1, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].squeeze(0); }, {make_randn({2, 1, 3})});  // not size 1: no-op
  CHECK_GRADCHECK([](const Xs& x) { return x[0].unsqueeze(0); }, {make_randn({2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].unsqueeze(-1); }, {make_randn({2, 3})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].flatten(); }, {make_randn({2, 3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].flatten(1); }, {make_randn({2, 3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].transpose(0, 1).flatten(0, 1); }, {make_randn({2, 3, 4})});
}

TEST_CASE("gradcheck: expand sums the gradient over broadcast dims", "[gradcheck][view]") {
  CHECK_GRADCHECK([](const Xs& x) { return x[0].expand({2, 3, 4}); }, {make_randn({3, 1})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].expand({-1, 5}); }, {make_randn({3, 1})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].expand({2, 3}); }, {make_randn({})});
  SECTION("an expanded view feeding an op") {
    CHECK_GRADCHECK([](const Xs& x) { return mul(x[0].expand({4, 3}), x[1]); }, {make_randn({1, 3}), make_randn({4, 3})});
  }
}

TEST_CASE("gradcheck: contiguous and clone", "[gradcheck][view]") {
  CHECK_GRADCHECK([](const Xs& x) { return x[0].t().contiguous(); }, {make_randn({3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].contiguous(); }, {make_randn({3, 4})});  // already contiguous
  CHECK_GRADCHECK([](const Xs& x) { return x[0].clone(); }, {make_randn({3, 4})});
  CHECK_GRADCHECK([](const Xs& x) { return x[0].slice(1, 0, 4, 3).clone(); }, {make_randn({3, 4})});
}

TEST_CASE("gradcheck: a composite expression of many ops", "[gradcheck]") {
  // A small MLP block: gelu(x W1ᵀ + b1) W2ᵀ, layer-normed residual, mean-reduced.
  CHECK_GRADCHECK(
      [](const Xs& x) {
        Tensor h = gelu(linear(x[0], x[1], x[2]), "tanh");
        Tensor y = add(linear(h, x[3]), x[0]);
        return mean(pow(y, 2.0), {-1});
      },
      {make_randn({2, 3, 4}), make_uniform({5, 4}, -0.5, 0.5), make_randn({5}), make_uniform({4, 5}, -0.5, 0.5)});
}
