// Bad input to the ops (DESIGN.md decision 5): every case throws peft::Error whose message
// names the op and the offending shape / value / dtype, and leaves its inputs as they were
// (values, layout, requires_grad, no gradient).
#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

struct Snapshot {
  Shape shape, strides;
  int64_t offset = 0;
  DType dtype = DType::F32;
  bool requires_grad = false, has_grad = false, has_grad_fn = false;
  std::vector<double> values;
  bool operator==(const Snapshot& o) const {
    return shape == o.shape && strides == o.strides && offset == o.offset && dtype == o.dtype &&
           requires_grad == o.requires_grad && has_grad == o.has_grad && has_grad_fn == o.has_grad_fn &&
           values == o.values;
  }
};

std::vector<Snapshot> snapshot(const std::vector<Tensor>& ts) {
  std::vector<Snapshot> out;
  NoGradGuard g;
  for (const auto& t : ts)
    out.push_back({t.shape(), t.strides(), t.offset(), t.dtype(), t.requires_grad(), t.grad().defined(),
                   t.grad_fn() != nullptr, t.to_vector<double>()});
  return out;
}

void expect_op_error(const std::vector<Tensor>& inputs, const std::function<void()>& call,
                     const std::vector<std::string>& parts, const char* expr) {
  INFO("expression: " << expr);
  const std::vector<Snapshot> before = snapshot(inputs);
  REQUIRE_THROWS_AS(call(), Error);
  std::string msg;
  try {
    call();
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO("message: " << msg);
  for (const auto& p : parts) CHECK_THAT(msg, Contains(p));
  CHECK(snapshot(inputs) == before);
}

Tensor f32(const Shape& s) { return Tensor::randn(s).set_requires_grad(true); }
Tensor f64(const Shape& s) { return Tensor::randn(s, DType::F64).set_requires_grad(true); }
template <class... Ts>
std::vector<Tensor> on(const Ts&... ts) { return {ts...}; }
Tensor ids(const std::vector<int64_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

}  // namespace

// Checks that EXPR throws peft::Error naming every one of the strings, with INPUTS unchanged.
#define EXPECT_OP_ERROR(INPUTS, EXPR, ...) expect_op_error(INPUTS, [&] { (void)(EXPR); }, {__VA_ARGS__}, #EXPR)

TEST_CASE("elementwise ops refuse shapes that do not broadcast", "[errors][elementwise]") {
  Tensor a = f32({2, 3}), b = f32({4}), c = f32({3, 2});
  EXPECT_OP_ERROR(on(a, b), add(a, b), "add", "[2, 3]", "[4]");
  EXPECT_OP_ERROR(on(a, b), sub(a, b), "sub", "[2, 3]", "[4]");
  EXPECT_OP_ERROR(on(a, c), mul(a, c), "mul", "[2, 3]", "[3, 2]");
  EXPECT_OP_ERROR(on(b, a), div(b, a), "div", "[4]", "[2, 3]");
  EXPECT_OP_ERROR(on(a, c), pow(a, c), "pow", "[2, 3]", "[3, 2]");
  EXPECT_OP_ERROR(on(a, c), a + c, "add", "[2, 3]", "[3, 2]");
  Tensor d = f32({2, 1, 3}), e = f32({4, 2});
  EXPECT_OP_ERROR(on(d, e), add(d, e), "add", "[2, 1, 3]", "[4, 2]");
  EXPECT_OP_ERROR(on(a, c), mse_loss(a, c), "mse_loss", "[2, 3]", "[3, 2]");
}

TEST_CASE("ops refuse an F32 / F64 dtype mismatch", "[errors][dtype]") {
  Tensor a = f32({2, 3}), b = f64({2, 3});
  EXPECT_OP_ERROR(on(a, b), add(a, b), "add", "F32", "F64");
  EXPECT_OP_ERROR(on(a, b), mul(b, a), "mul", "F64", "F32");
  Tensor m = f64({3, 4});
  EXPECT_OP_ERROR(on(a, m), matmul(a, m), "matmul", "F32", "F64");
  Tensor w64 = f64({4, 3}), bias = f32({4});
  EXPECT_OP_ERROR(on(a, w64), linear(a, w64), "linear", "F32", "F64");
  Tensor w32 = f32({4, 3});
  EXPECT_OP_ERROR(on(a, w32, bias), linear(a, w32, Tensor::zeros({4}, DType::F64)), "linear", "F64");
  Tensor x = f32({1, 2, 5, 5}), k = f64({3, 2, 3, 3});
  EXPECT_OP_ERROR(on(x, k), conv2d(x, k), "conv2d", "F32", "F64");
  Tensor k32 = f32({3, 2, 3, 3}), b64 = f64({3});
  EXPECT_OP_ERROR(on(x, k32, b64), conv2d(x, k32, b64), "conv2d", "F64");
  Tensor ln_w = f64({3});
  EXPECT_OP_ERROR(on(a, ln_w), layer_norm(a, {3}, ln_w), "layer_norm", "F32", "F64");
}

TEST_CASE("integer (I64) tensors are refused by float ops", "[errors][dtype]") {
  Tensor i = Tensor::arange(6, DType::I64).view({2, 3});
  Tensor f = f32({2, 3});
  EXPECT_OP_ERROR(on(i), exp(i), "exp", "I64", "[2, 3]");
  EXPECT_OP_ERROR(on(i), relu(i), "relu", "I64");
  EXPECT_OP_ERROR(on(i, f), add(i, f), "add", "I64");
  EXPECT_OP_ERROR(on(f, i), mul(f, i), "mul", "I64");
  EXPECT_OP_ERROR(on(i), mul(i, 2.0), "mul", "I64");
  EXPECT_OP_ERROR(on(i), sum(i), "sum", "I64");
  EXPECT_OP_ERROR(on(i), softmax(i, 1), "softmax", "I64");
  EXPECT_OP_ERROR(on(i), matmul(i, i.t()), "matmul", "I64");
  Tensor w = f32({4, 3});
  EXPECT_OP_ERROR(on(i, w), linear(i, w), "linear", "I64");
  Tensor x = Tensor::zeros({1, 1, 3, 3}, DType::I64), k = f32({1, 1, 2, 2});
  EXPECT_OP_ERROR(on(x, k), conv2d(x, k), "conv2d", "I64");
  EXPECT_OP_ERROR(on(i), layer_norm(i, {3}), "layer_norm", "I64");
  // And the index arguments must be I64.
  Tensor table = f32({5, 2}), fids = Tensor::zeros({3});
  EXPECT_OP_ERROR(on(table, fids), embedding(table, fids), "embedding", "F32");
  Tensor logp = f32({3, 4});
  EXPECT_OP_ERROR(on(logp, fids), nll_loss(logp, fids), "nll_loss", "F32");
}

TEST_CASE("matmul and linear refuse mismatched inner sizes and wrong ranks", "[errors][linalg]") {
  Tensor a = f32({2, 3}), b = f32({4, 5});
  EXPECT_OP_ERROR(on(a, b), matmul(a, b), "matmul", "[2, 3]", "[4, 5]", "3 vs 4");
  Tensor v3 = f32({3}), v4 = f32({4});
  EXPECT_OP_ERROR(on(v3, v4), matmul(v3, v4), "matmul", "[3]", "[4]");
  Tensor ba = f32({2, 3, 4}), bb = f32({3, 4, 5});
  EXPECT_OP_ERROR(on(ba, bb), matmul(ba, bb), "matmul", "[2, 3, 4]", "[3, 4, 5]");
  Tensor bc = f32({2, 5, 6});
  EXPECT_OP_ERROR(on(ba, bc), matmul(ba, bc), "matmul", "[2, 3, 4]", "[2, 5, 6]");
  Tensor s = Tensor::scalar(1);
  EXPECT_OP_ERROR(on(s, a), matmul(s, a), "matmul", "[]");
  Tensor x = f32({2, 3}), w = f32({4, 5}), bias = f32({3});
  EXPECT_OP_ERROR(on(x, w), linear(x, w), "linear", "3 features", "[2, 3]", "[4, 5]");
  Tensor w2 = f32({4, 3});
  EXPECT_OP_ERROR(on(x, w2, bias), linear(x, w2, bias), "linear", "bias", "[3]", "[4, 3]");
  Tensor w1 = f32({3});
  EXPECT_OP_ERROR(on(x, w1), linear(x, w1), "linear", "[3]");
}

TEST_CASE("lora_linear and lora_conv1x1 refuse inconsistent shapes", "[errors][linalg][lora]") {
  Tensor x = f32({2, 4, 3, 3}), w = f32({5, 4}), b = f32({5}), A = f32({2, 4}), B = f32({5, 2});
  Tensor x3 = f32({4, 3, 3});
  EXPECT_OP_ERROR(on(x3, w, A, B), lora_conv1x1(x3, w, b, A, B, 1.0), "lora_conv1x1", "(N, 4, H, W)", "[4, 3, 3]");
  Tensor x_wrong_c = f32({2, 3, 3, 3});
  EXPECT_OP_ERROR(on(x_wrong_c, w), lora_conv1x1(x_wrong_c, w, b, A, B, 1.0), "lora_conv1x1", "[2, 3, 3, 3]");
  Tensor w4 = f32({5, 4, 1, 1});
  EXPECT_OP_ERROR(on(x, w4), lora_conv1x1(x, w4, b, A, B, 1.0), "lora_conv1x1", "weight must be 2-D", "[5, 4, 1, 1]");
  Tensor A_bad = f32({2, 3});
  EXPECT_OP_ERROR(on(x, A_bad), lora_conv1x1(x, w, b, A_bad, B, 1.0), "lora_conv1x1", "lora_A must be (r, 4)",
                  "[2, 3]");
  Tensor B_bad = f32({5, 3});
  EXPECT_OP_ERROR(on(x, B_bad), lora_conv1x1(x, w, b, A, B_bad, 1.0), "lora_conv1x1", "lora_B must be (5, 2)",
                  "[5, 3]");
  Tensor b_bad = f32({4});
  EXPECT_OP_ERROR(on(x, b_bad), lora_conv1x1(x, w, b_bad, A, B, 1.0), "lora_conv1x1", "bias shape [4]", "5 output");
  Tensor x64 = f64({2, 4, 3, 3});
  EXPECT_OP_ERROR(on(x64, w), lora_conv1x1(x64, w, b, A, B, 1.0), "lora_conv1x1", "F64", "F32");
  Tensor rows = f32({6, 3});
  EXPECT_OP_ERROR(on(rows, w), lora_linear(rows, w, b, A, B, 1.0), "lora_linear", "3 features", "expected 4");
  Tensor rows4 = f32({6, 4});
  EXPECT_OP_ERROR(on(rows4, A), lora_linear(rows4, w, b, A, B, 1.0, 1.0, true), "lora_linear", "dropout probability");
}

TEST_CASE("conv2d and pooling refuse wrong ranks and inconsistent shapes", "[errors][conv]") {
  Tensor x3 = f32({1, 2, 3}), w = f32({3, 2, 3, 3});
  EXPECT_OP_ERROR(on(x3, w), conv2d(x3, w), "conv2d", "4-D input", "[1, 2, 3]");
  Tensor x = f32({1, 2, 5, 5}), w3 = f32({3, 2, 3});
  EXPECT_OP_ERROR(on(x, w3), conv2d(x, w3), "conv2d", "[3, 2, 3]");
  Tensor wc = f32({3, 4, 3, 3});
  EXPECT_OP_ERROR(on(x, wc), conv2d(x, wc), "conv2d", "[3, 4, 3, 3]", "[1, 2, 5, 5]");
  Conv2dOptions g3;
  g3.groups = 3;
  EXPECT_OP_ERROR(on(x, w), conv2d(x, w, Tensor(), g3), "conv2d", "groups 3");
  Tensor big = f32({3, 2, 7, 7});
  EXPECT_OP_ERROR(on(x, big), conv2d(x, big), "conv2d", "[1, 2, 5, 5]", "7x7");
  Tensor bad_b = f32({4});
  EXPECT_OP_ERROR(on(x, w, bad_b), conv2d(x, w, bad_b), "conv2d", "bias", "[4]");
  AvgPool2dOptions o;
  EXPECT_OP_ERROR(on(x3), avg_pool2d(x3, o), "avg_pool2d", "[1, 2, 3]");
  AvgPool2dOptions wide;
  wide.kernel = {2, 2};
  wide.padding = {2, 0};
  EXPECT_OP_ERROR(on(x), avg_pool2d(x, wide), "avg_pool2d", "pad");
  Tensor v = f32({4});
  EXPECT_OP_ERROR(on(v), adaptive_avg_pool2d(v, {1, 1}), "adaptive_avg_pool2d", "[4]");
  EXPECT_OP_ERROR(on(x), adaptive_avg_pool2d(x, {2, 2}), "adaptive_avg_pool2d", "(2, 2)");
}

TEST_CASE("ops refuse out-of-range dims", "[errors][dims]") {
  Tensor a = f32({2, 3});
  EXPECT_OP_ERROR(on(a), sum(a, {2}), "sum", "dimension 2", "rank 2");
  EXPECT_OP_ERROR(on(a), sum(a, {0, 0}), "sum", "more than once");
  EXPECT_OP_ERROR(on(a), mean(a, {-3}), "mean", "-3");
  EXPECT_OP_ERROR(on(a), max(a, 2), "max", "dimension 2");
  EXPECT_OP_ERROR(on(a), softmax(a, 2), "softmax", "dimension 2");
  EXPECT_OP_ERROR(on(a), log_softmax(a, -3), "log_softmax", "-3");
  EXPECT_OP_ERROR(on(a), cat({a, a}, 2), "cat", "dimension 2");
  EXPECT_OP_ERROR(on(a), stack({a, a}, 3), "stack", "dimension 3");
  EXPECT_OP_ERROR(on(a), split(a, 1, 2), "split", "dimension 2");
  EXPECT_OP_ERROR(on(a), chunk(a, 2, -3), "chunk", "-3");
  EXPECT_OP_ERROR(on(a), a.transpose(0, 2), "transpose", "dimension 2");
  EXPECT_OP_ERROR(on(a), a.permute({0, 0}), "permute", "repeated");
  EXPECT_OP_ERROR(on(a), a.permute({0}), "permute", "rank 2");
  EXPECT_OP_ERROR(on(a), a.slice(2, 0, 1), "slice", "dimension 2");
  EXPECT_OP_ERROR(on(a), a.select(-3, 0), "select", "-3");
  EXPECT_OP_ERROR(on(a), a.select(0, 2), "select", "index 2", "size 2");
  EXPECT_OP_ERROR(on(a), a.squeeze(5), "squeeze", "dimension 5");
  EXPECT_OP_ERROR(on(a), a.unsqueeze(3), "unsqueeze", "dimension 3");
  EXPECT_OP_ERROR(on(a), a.flatten(0, 4), "flatten", "dimension 4");
  EXPECT_OP_ERROR(on(a), a.size(2), "size", "dimension 2");
}

TEST_CASE("cat and stack refuse mismatched shapes", "[errors][shape]") {
  Tensor a = f32({2, 3}), b = f32({2, 4}), c = f32({3, 3});
  EXPECT_OP_ERROR(on(a, b), cat({a, b}, 0), "cat", "[2, 3]", "[2, 4]");
  Tensor i = Tensor::zeros({2, 3}, DType::F64);
  EXPECT_OP_ERROR(on(a, i), cat({a, i}, 0), "cat", "F64");
  EXPECT_OP_ERROR(on(a, c), stack({a, c}), "stack", "[2, 3]", "[3, 3]");
  EXPECT_OP_ERROR(on(a), split(a, 0, 0), "split", "0");
  EXPECT_OP_ERROR(on(a), chunk(a, 0, 0), "chunk", "0");
}

TEST_CASE("embedding refuses indices out of range, including negative ones", "[errors][embedding]") {
  Tensor table = f32({5, 2});
  Tensor too_big = ids({1, 5, 2}), negative = ids({0, -1});
  EXPECT_OP_ERROR(on(table, too_big), embedding(table, too_big), "embedding", "index 5", "position 1", "5 rows");
  EXPECT_OP_ERROR(on(table, negative), embedding(table, negative), "embedding", "index -1", "position 1");
  Tensor ok = ids({0, 1});
  EXPECT_OP_ERROR(on(table, ok), embedding(table, ok, 5), "embedding", "padding_idx 5");
  Tensor flat = f32({5});
  EXPECT_OP_ERROR(on(flat, ok), embedding(flat, ok), "embedding", "[5]");
}

TEST_CASE("nll_loss and cross_entropy refuse targets out of range", "[errors][loss]") {
  Tensor logp = f32({3, 4});
  Tensor hi = ids({0, 4, 1}), neg = ids({0, 1, -2});
  EXPECT_OP_ERROR(on(logp, hi), nll_loss(logp, hi), "nll_loss", "target 4", "position 1", "4 classes");
  EXPECT_OP_ERROR(on(logp, neg), nll_loss(logp, neg), "nll_loss", "target -2", "position 2");
  EXPECT_OP_ERROR(on(logp, hi), cross_entropy(logp, hi), "nll_loss", "target 4");
  Tensor short_t = ids({0, 1});
  EXPECT_OP_ERROR(on(logp, short_t), nll_loss(logp, short_t), "nll_loss", "[2]", "[3, 4]");
  Tensor t = ids({0, 1, 2});
  EXPECT_OP_ERROR(on(logp, t), nll_loss(logp, t, "avg"), "nll_loss", "'avg'");
  EXPECT_OP_ERROR(on(logp, t), cross_entropy(logp, t, "max"), "cross_entropy", "'max'");
  Tensor x3 = f32({2, 3, 4});
  EXPECT_OP_ERROR(on(x3, t), cross_entropy(x3, t), "cross_entropy", "[2, 3, 4]");
  Tensor target = f32({3, 4});
  EXPECT_OP_ERROR(on(logp, target), mse_loss(logp, target, "avg"), "mse_loss", "'avg'");
}

TEST_CASE("norms refuse shapes they cannot normalise", "[errors][norm]") {
  Tensor x = f32({2, 6, 4});
  EXPECT_OP_ERROR(on(x), layer_norm(x, {6}), "layer_norm", "[2, 6, 4]");
  Tensor w = f32({5});
  EXPECT_OP_ERROR(on(x, w), layer_norm(x, {4}, w), "layer_norm", "weight", "[5]");
  EXPECT_OP_ERROR(on(x), group_norm(x, 4), "group_norm", "(6)", "(4)");
  Tensor gw = f32({4});
  EXPECT_OP_ERROR(on(x, gw), group_norm(x, 2, gw), "group_norm", "weight", "[4]");
  Tensor v = f32({6});
  EXPECT_OP_ERROR(on(v), group_norm(v, 2), "group_norm", "[6]");
}

TEST_CASE("misc arguments: gelu approximate, dropout p, lstm weights", "[errors]") {
  Tensor a = f32({2, 3});
  EXPECT_OP_ERROR(on(a), gelu(a, "fast"), "gelu", "'fast'");
  EXPECT_OP_ERROR(on(a), dropout(a, 1.5, true), "dropout", "1.5");
  Tensor in = f32({4, 2, 3});
  std::vector<Tensor> params{f32({8, 3}), f32({8, 2}), f32({8}), f32({8})};
  std::vector<Tensor> all{in, params[0], params[1], params[2], params[3]};
  EXPECT_OP_ERROR(all, lstm(in, std::nullopt, params, true, 2, false), "lstm", "8 parameter tensors", "2 layers");
  std::vector<Tensor> bad{f32({8, 4}), params[1], params[2], params[3]};
  EXPECT_OP_ERROR(all, lstm(in, std::nullopt, bad, true, 1, false), "lstm", "weight_ih_l0", "[8, 4]", "[8, 3]");
  LSTMState st{f32({1, 3, 2}), f32({1, 3, 2})};
  EXPECT_OP_ERROR(all, lstm(in, st, params, true, 1, false), "lstm", "[1, 2, 2]", "[1, 3, 2]");
  Tensor in2 = f32({4, 3});
  EXPECT_OP_ERROR(on(in2), lstm(in2, std::nullopt, params, true, 1, false), "lstm", "[4, 3]");
}

TEST_CASE("view refuses incompatible strides and sizes; reshape refuses bad sizes", "[errors][view]") {
  Tensor a = f32({2, 3});
  Tensor t = a.t();
  EXPECT_OP_ERROR(on(a), t.view({6}), "view", "[6]", "[3, 2]", "reshape");
  EXPECT_OP_ERROR(on(a), a.view({4}), "view", "[4]", "size 6");
  EXPECT_OP_ERROR(on(a), a.view({-1, -1}), "view", "only one dimension");
  EXPECT_OP_ERROR(on(a), a.reshape({5, -1}), "reshape", "[5, -1]", "size 6");
  EXPECT_OP_ERROR(on(a), a.flatten(1, 0), "flatten", "start_dim");
  EXPECT_OP_ERROR(on(a), a.slice(0, 0, 2, 0), "slice", "step");
}

TEST_CASE("expand refuses incompatible shapes", "[errors][view]") {
  Tensor a = f32({2, 3});
  EXPECT_OP_ERROR(on(a), a.expand({2, 4}), "expand", "[2, 4]", "[2, 3]", "dimension 1");
  EXPECT_OP_ERROR(on(a), a.expand({3}), "expand", "greater or equal");
  EXPECT_OP_ERROR(on(a), a.expand({-1, 2, 3}), "expand", "-1");
  Tensor dst = Tensor::zeros({2, 4});
  EXPECT_OP_ERROR(on(dst, a), dst.copy_(a), "expand", "[2, 4]", "[2, 3]");
}

TEST_CASE("error messages carry the source file and line", "[errors]") {
  Tensor a = f32({2, 3}), b = f32({4});
  EXPECT_OP_ERROR(on(a, b), add(a, b), "core/ops_elementwise.cpp:");
}

TEST_CASE("BF16 tensors on the CPU are refused with the op and the dtype, not computed", "[errors][dtype][bf16]") {
  // BF16 math exists only in the CUDA kernels (storage BF16, F32 inside); the CPU computes in
  // F32 / F64, so each op must say so rather than read 16-bit data as floats.
  auto bf = [](const Shape& s) { return Tensor::randn(s).to(DType::BF16).set_requires_grad(true); };
  Tensor a = bf({2, 3}), b = bf({2, 3});
  EXPECT_OP_ERROR(on(a), relu(a), "relu", "BF16");
  EXPECT_OP_ERROR(on(a), exp(a), "exp", "BF16");
  EXPECT_OP_ERROR(on(a, b), add(a, b), "add", "BF16");
  EXPECT_OP_ERROR(on(a), mul(a, 2.0), "mul", "BF16");
  EXPECT_OP_ERROR(on(a), pow(a, 2.0), "pow", "BF16");
  EXPECT_OP_ERROR(on(a), sum(a), "sum", "BF16");
  EXPECT_OP_ERROR(on(a), mean(a, {1}), "BF16");
  EXPECT_OP_ERROR(on(a), softmax(a, 1), "softmax", "BF16");
  EXPECT_OP_ERROR(on(a), log_softmax(a, 1), "log_softmax", "BF16");
  EXPECT_OP_ERROR(on(a), layer_norm(a, {3}), "layer_norm", "BF16");
  EXPECT_OP_ERROR(on(a), dropout(a, 0.5, true), "dropout", "BF16");
  Tensor m = bf({3, 4});
  EXPECT_OP_ERROR(on(a, m), matmul(a, m), "matmul", "BF16");
  Tensor w = bf({4, 3});
  EXPECT_OP_ERROR(on(a, w), linear(a, w), "BF16");
  Tensor x = bf({1, 2, 5, 5}), k = bf({3, 2, 3, 3});
  EXPECT_OP_ERROR(on(x, k), conv2d(x, k), "conv2d", "BF16");
  EXPECT_OP_ERROR(on(x), group_norm(x, 2), "group_norm", "BF16");
  AvgPool2dOptions po;
  po.kernel = {2, 2};
  EXPECT_OP_ERROR(on(x), avg_pool2d(x, po), "avg_pool2d", "BF16");
  Tensor table = bf({5, 2});
  EXPECT_OP_ERROR(on(table), embedding(table, ids({1, 4})), "embedding", "BF16");
  Tensor logp = bf({2, 4});
  EXPECT_OP_ERROR(on(logp), nll_loss(logp, ids({1, 3})), "nll_loss", "BF16");
  Tensor acc = Tensor::zeros({2, 3}, DType::BF16);
  EXPECT_OP_ERROR(on(acc), acc.add_(Tensor::ones({2, 3}, DType::BF16)), "add_", "BF16");
  EXPECT_OP_ERROR(on(acc), acc.mul_(2.0), "mul_", "BF16");
}
