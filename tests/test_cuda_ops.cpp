// Every op with a CUDA path, run on the GPU and on the CPU from the same fresh random inputs
// (never zeros; shapes with odd tails, broadcasts and transposed views), forward and backward:
// the output and the gradient of every float input must satisfy |gpu - cpu| <= atol + rtol·|cpu|.
//
// Tolerances (per dtype, per row): F32 rows use atol 1e-5, rtol 1e-4 (CUDA's math library is
// within a few ulp of glibc's; reductions and GEMMs sum in another order). Rows that accumulate
// long sums or chain several reductions (norm backward, losses through log_softmax) say their
// own looser bound. The TF32 rows run their GEMMs / convolutions with ~10-bit mantissas: atol
// 1e-2, rtol 1e-2. conv2d rows use atol 5e-5, rtol 5e-4: cuDNN may pick FFT or Winograd
// algorithms, whose rounding differs from a direct sum by more than a GEMM's reordering does.
// Rows marked "(direct kernels)" run with peft::cuda::set_cudnn_enabled(false), so the
// hand-written fallback is checked through the op too, in builds with cuDNN.
//
// Without a GPU every comparison reports "skipped: no CUDA device" and passes; the table itself
// still runs on the CPU (every row must give a finite gradient for every float input), and the
// switches and refusals that need no device are checked.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "cuda_kernel_util.h"
#include "cuda_op_table.h"
#include "kernels/cpu/dropout_philox.h"

using namespace peft;
using peft::testing::Tol;
using Catch::Matchers::Contains;

namespace {

constexpr Tol kF32{1e-5, 1e-4};

// Random F32 values, magnitudes in [0.1, 1.5] (positive: strictly positive), never zero.
Tensor rnd(const Shape& shape, uint64_t seed, bool positive = false) {
  return Tensor::from_vector(peft::testing::random_vec<float>(static_cast<size_t>(shape_numel(shape)), seed, positive),
                             shape);
}

Tensor ids(const std::vector<int64_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

using Row = peft::testing::OpRow;
using peft::testing::conv_opts;

std::vector<Row> table() {
  using V = std::vector<Tensor>;
  const Tol loss_tol{1e-5, 5e-4}, norm_tol{5e-5, 5e-4};
  std::vector<Row> r;
  auto un = [&](const char* name, std::function<Tensor(const Tensor&)> f, bool positive = false) {
    r.push_back({name, kF32, [=] { return V{rnd({3, 5, 7}, 11, positive)}; }, [f](const V& v) { return f(v[0]); }});
  };
  // ---- elementwise, broadcasting, scalars
  r.push_back({"add broadcast", kF32, [] { return V{rnd({3, 1, 5}, 1), rnd({4, 5}, 2)}; },
               [](const V& v) { return add(v[0], v[1]); }});
  r.push_back({"sub broadcast", kF32, [] { return V{rnd({2, 3, 4}, 3), rnd({3, 1}, 4)}; },
               [](const V& v) { return sub(v[0], v[1]); }});
  r.push_back({"mul transposed", kF32, [] { return V{rnd({5, 3}, 5), rnd({3, 5}, 6)}; },
               [](const V& v) { return mul(v[0].t(), v[1]); }});
  r.push_back({"div", kF32, [] { return V{rnd({4, 6}, 7), rnd({6}, 8, true)}; },
               [](const V& v) { return div(v[0], v[1]); }});
  r.push_back({"pow tensor", kF32, [] { return V{rnd({3, 4}, 9, true), rnd({1, 4}, 10)}; },
               [](const V& v) { return pow(v[0], v[1]); }});
  un("add scalar", [](const Tensor& x) { return add(x, 0.75); });
  un("mul scalar", [](const Tensor& x) { return mul(x, -1.5); });
  un("neg", [](const Tensor& x) { return neg(x); });
  un("pow 3", [](const Tensor& x) { return pow(x, 3.0); });
  un("pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, true);
  un("exp", [](const Tensor& x) { return exp(x); });
  un("log", [](const Tensor& x) { return log(x); }, true);
  un("sqrt", [](const Tensor& x) { return sqrt(x); }, true);
  un("abs", [](const Tensor& x) { return abs(x); });
  un("relu", [](const Tensor& x) { return relu(x); });
  un("gelu erf", [](const Tensor& x) { return gelu(x); });
  un("gelu tanh", [](const Tensor& x) { return gelu(x, "tanh"); });
  un("sigmoid", [](const Tensor& x) { return sigmoid(x); });
  un("tanh", [](const Tensor& x) { return tanh(x); });
  // ---- reductions and copies
  un("sum all", [](const Tensor& x) { return sum(x); });
  un("sum dims keepdim", [](const Tensor& x) { return sum(x, {0, 2}, true); });
  un("mean dim of a transposed view", [](const Tensor& x) { return mean(x.transpose(0, 2), {1}); });
  un("to F64 and back", [](const Tensor& x) { return mul(x.to(DType::F64), 2.0).to(DType::F32); });
  un("contiguous of a permuted slice", [](const Tensor& x) { return x.slice(2, 1, 6, 2).permute({2, 0, 1}).contiguous(); });
  r.push_back({"cat and stack", kF32, [] { return V{rnd({2, 3}, 12), rnd({2, 5}, 13)}; },
               [](const V& v) { return stack({cat({v[0], v[1]}, 1), cat({v[1], v[0]}, 1)}, 0); }});
  // ---- GEMMs
  r.push_back({"matmul 2-D", kF32, [] { return V{rnd({7, 33}, 14), rnd({33, 5}, 15)}; },
               [](const V& v) { return matmul(v[0], v[1]); }});
  r.push_back({"matmul transposed operands", kF32, [] { return V{rnd({33, 7}, 16), rnd({5, 33}, 17)}; },
               [](const V& v) { return matmul(v[0].t(), v[1].t()); }});
  r.push_back({"matmul batched broadcast", kF32, [] { return V{rnd({2, 1, 4, 9}, 18), rnd({3, 9, 6}, 19)}; },
               [](const V& v) { return matmul(v[0], v[1]); }});
  r.push_back({"matmul vector", kF32, [] { return V{rnd({9}, 20), rnd({9, 4}, 21)}; },
               [](const V& v) { return matmul(v[0], v[1]); }});
  r.push_back({"linear 3-D input with bias", kF32, [] { return V{rnd({2, 3, 17}, 22), rnd({6, 17}, 23), rnd({6}, 24)}; },
               [](const V& v) { return linear(v[0], v[1], v[2]); }});
  r.push_back({"linear TF32", Tol{1e-2, 1e-2}, [] { return V{rnd({8, 64}, 25), rnd({16, 64}, 26), rnd({16}, 27)}; },
               [](const V& v) { return linear(v[0], v[1], v[2]); }, true});
  r.push_back({"lora_linear", kF32,
               [] { return V{rnd({2, 5, 12}, 28), rnd({7, 12}, 29), rnd({7}, 30), rnd({3, 12}, 31), rnd({7, 3}, 32)}; },
               [](const V& v) { return lora_linear(v[0], v[1], v[2], v[3], v[4], 2.0); }});
  // ---- max (values; the argmax indices are compared in their own case) and index_select
  r.push_back({"max over a middle dim", kF32, [] { return V{rnd({3, 6, 5}, 70)}; },
               [](const V& v) { return max(v[0], 1, false).first; }});
  r.push_back({"max over the last dim keepdim, transposed view", kF32, [] { return V{rnd({4, 300}, 71)}; },
               [](const V& v) { return max(v[0].t(), 0, true).first; }});
  r.push_back({"max of everything", kF32, [] { return V{rnd({5, 7, 9}, 72)}; },
               [](const V& v) { return max(v[0]); }});
  r.push_back({"index_select along dim 1 with repeats", kF32,
               [] { return V{rnd({3, 5, 4}, 73), Tensor::from_vector(std::vector<int64_t>{4, 0, 4, 2}, {4})}; },
               [](const V& v) { return index_select(v[0], 1, v[1]); }});
  r.push_back({"lora_conv1x1", kF32,
               [] { return V{rnd({2, 6, 3, 5}, 75), rnd({4, 6}, 76), rnd({4}, 77), rnd({3, 6}, 78), rnd({4, 3}, 79)}; },
               [](const V& v) { return lora_conv1x1(v[0], v[1], v[2], v[3], v[4], 1.5); }});
  // ---- softmax, losses
  r.push_back({"softmax middle dim", kF32, [] { return V{rnd({3, 4, 5}, 33)}; },
               [](const V& v) { return softmax(v[0], 1); }});
  r.push_back({"log_softmax last dim", kF32, [] { return V{rnd({6, 11}, 34)}; },
               [](const V& v) { return log_softmax(v[0], -1); }});
  r.push_back({"cross_entropy mean with ignore_index", loss_tol, [] { return V{rnd({5, 7}, 35), ids({3, 0, -100, 6, 3})}; },
               [](const V& v) { return cross_entropy(v[0], v[1], "mean", -100); }});
  r.push_back({"nll_loss sum", loss_tol, [] { return V{rnd({4, 3}, 36), ids({2, 1, 0, 2})}; },
               [](const V& v) { return nll_loss(v[0], v[1], "sum"); }});
  r.push_back({"nll_loss none", kF32, [] { return V{rnd({4, 3}, 37), ids({0, 1, 2, 1})}; },
               [](const V& v) { return nll_loss(v[0], v[1], "none"); }});
  r.push_back({"mse_loss", loss_tol, [] { return V{rnd({3, 8}, 38), rnd({3, 8}, 39)}; },
               [](const V& v) { return mse_loss(v[0], v[1]); }});
  // ---- embedding, norms, pooling
  r.push_back({"embedding with padding and repeats", kF32,
               [] { return V{rnd({6, 5}, 40), Tensor::from_vector(std::vector<int64_t>{1, 3, 1, 0, 5, 3}, {2, 3})}; },
               [](const V& v) { return embedding(v[0], v[1], 3); }});
  r.push_back({"layer_norm affine", norm_tol, [] { return V{rnd({3, 4, 6}, 41), rnd({6}, 42), rnd({6}, 43)}; },
               [](const V& v) { return layer_norm(v[0], {6}, v[1], v[2]); }});
  r.push_back({"group_norm affine", norm_tol, [] { return V{rnd({2, 6, 3, 5}, 44), rnd({6}, 45), rnd({6}, 46)}; },
               [](const V& v) { return group_norm(v[0], 3, v[1], v[2]); }});
  r.push_back({"avg_pool2d padded ceil_mode", kF32, [] { return V{rnd({2, 3, 7, 6}, 47)}; },
               [](const V& v) {
                 AvgPool2dOptions o;
                 o.kernel = {3, 3};
                 o.stride = {2, 2};
                 o.padding = {1, 1};
                 o.ceil_mode = true;
                 o.count_include_pad = false;
                 return avg_pool2d(v[0], o);
               }});
  r.push_back({"adaptive_avg_pool2d", kF32, [] { return V{rnd({2, 3, 5, 4}, 48)}; },
               [](const V& v) { return adaptive_avg_pool2d(v[0], {1, 1}); }});
  r.push_back({"dropout in eval is the identity", kF32, [] { return V{rnd({4, 5}, 49)}; },
               [](const V& v) { return mul(dropout(v[0], 0.5, false), 3.0); }});
  // ---- conv2d: (x, w, b), forward and the gradient of each
  const Tol conv_tol{5e-5, 5e-4};
  auto conv = [&](const char* name, Shape xs, Shape ws, bool bias, Conv2dOptions o, uint64_t seed, bool cudnn = true,
                  bool tf32 = false) {
    Row row{name, tf32 ? Tol{1e-2, 1e-2} : conv_tol,
            [=] {
              V in{rnd(xs, seed), rnd(ws, seed + 1)};
              if (bias) in.push_back(rnd({ws[0]}, seed + 2));
              return in;
            },
            [=](const V& v) { return conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), o); }, tf32};
    row.cudnn = cudnn;
    r.push_back(row);
  };
  conv("conv2d 3x3 pad 1", {2, 3, 7, 6}, {4, 3, 3, 3}, true, conv_opts({1, 1}, {1, 1}), 80);
  conv("conv2d stride 2", {2, 3, 9, 8}, {5, 3, 3, 3}, true, conv_opts({2, 2}, {1, 1}), 83);
  conv("conv2d 1x1", {2, 6, 5, 4}, {4, 6, 1, 1}, true, conv_opts({1, 1}, {0, 0}), 86);
  conv("conv2d dilation 2", {1, 2, 9, 9}, {3, 2, 3, 3}, true, conv_opts({1, 1}, {2, 2}, {2, 2}), 89);
  conv("conv2d groups 2", {2, 4, 6, 6}, {6, 2, 3, 3}, true, conv_opts({1, 1}, {1, 1}, {1, 1}, 2), 92);
  conv("conv2d no bias", {2, 3, 5, 5}, {4, 3, 3, 3}, false, conv_opts({1, 1}, {0, 0}), 95);
  conv("conv2d non-square kernel, stride and padding", {2, 3, 8, 7}, {4, 3, 2, 5}, true,
       conv_opts({2, 1}, {1, 2}), 98);
  conv("conv2d TF32", {2, 8, 6, 6}, {8, 8, 3, 3}, true, conv_opts({1, 1}, {1, 1}), 101, true, true);
  conv("conv2d 3x3 pad 1 (direct kernels)", {2, 3, 7, 6}, {4, 3, 3, 3}, true, conv_opts({1, 1}, {1, 1}), 80, false);
  conv("conv2d groups 2, stride 2, dilation 2 (direct kernels)", {2, 4, 11, 10}, {6, 2, 3, 2}, true,
       conv_opts({2, 2}, {1, 2}, {2, 2}, 2), 104, false);
  conv("conv2d non-square, no bias (direct kernels)", {1, 3, 8, 7}, {4, 3, 2, 5}, false, conv_opts({2, 1}, {1, 2}),
       107, false);
  // ---- LSTM: a GEMM per step and the fused cell, T steps deep; output, h_n and c_n flattened
  // into one tensor so every output feeds the gradient. Weights scaled by 0.4 in the forward
  // keep the gates away from saturation, so the recurrent gradients are not all ~0.
  const Tol lstm_tol{5e-5, 5e-4};
  auto lstm_row = [&](const char* name, int64_t layers, bool bias, bool batch_first, bool state, uint64_t seed) {
    const int64_t B = 3, T = 5, in = 7, H = 6;
    r.push_back({name, lstm_tol,
                 [=] {
                   V v{rnd(batch_first ? Shape{B, T, in} : Shape{T, B, in}, seed)};
                   if (state) {
                     v.push_back(rnd({layers, B, H}, seed + 1));
                     v.push_back(rnd({layers, B, H}, seed + 2));
                   }
                   uint64_t s = seed + 3;
                   for (int64_t l = 0; l < layers; ++l) {
                     v.push_back(rnd({4 * H, l == 0 ? in : H}, s++));
                     v.push_back(rnd({4 * H, H}, s++));
                     if (bias) {
                       v.push_back(rnd({4 * H}, s++));
                       v.push_back(rnd({4 * H}, s++));
                     }
                   }
                   return v;
                 },
                 [=](const V& v) {
                   const size_t first = state ? 3 : 1;
                   V params;
                   for (size_t i = first; i < v.size(); ++i) params.push_back(mul(v[i], 0.4));
                   std::optional<LSTMState> hx;
                   if (state) hx = LSTMState{v[1], v[2]};
                   LSTMResult o = lstm(v[0], hx, params, bias, layers, batch_first);
                   return cat({o.output.reshape({-1}), o.state.h.reshape({-1}), o.state.c.reshape({-1})}, 0);
                 }});
  };
  lstm_row("lstm 2 layers, biases, batch_first, initial state", 2, true, true, true, 110);
  lstm_row("lstm 1 layer, no biases, seq first, zero state", 1, false, false, false, 130);
  return r;
}

using Result = peft::testing::OpResult;

// Fresh leaves on `dev`, backward from a fixed non-zero upstream gradient; back on the CPU.
Result run_row(const Row& row, const std::vector<Tensor>& cpu_inputs, Device dev) {
  return peft::testing::run_op_row(row, cpu_inputs, dev, DType::F32, [](const Shape& s) { return rnd(s, 1234); });
}

void compare(const Tensor& gpu, const Tensor& cpu, Tol tol, const std::string& what) {
  peft::testing::compare_tensors(gpu, cpu, tol, what);
}

}  // namespace

TEST_CASE("every table row runs on the CPU and gives a finite gradient for each float input", "[cuda][ops]") {
  for (const Row& row : table()) {
    INFO(row.name);
    const std::vector<Tensor> inputs = row.inputs();
    Result r = run_row(row, inputs, Device::cpu());
    CHECK_FALSE(autograd::has_nonfinite(r.out));
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!is_floating(inputs[i].dtype())) continue;
      REQUIRE(r.grads[i].defined());
      CHECK_FALSE(autograd::has_nonfinite(r.grads[i]));
    }
  }
}

TEST_CASE("every op matches the CPU on CUDA, forward and backward", "[cuda][ops][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  for (const Row& row : table()) {
    const std::vector<Tensor> inputs = row.inputs();
    Result cpu = run_row(row, inputs, Device::cpu());
    Result gpu = run_row(row, inputs, Device::cuda(0));
    compare(gpu.out, cpu.out, row.tol, row.name + ": forward");
    for (size_t i = 0; i < inputs.size(); ++i) {
      CHECK(gpu.grads[i].defined() == cpu.grads[i].defined());
      if (cpu.grads[i].defined() && gpu.grads[i].defined())
        compare(gpu.grads[i], cpu.grads[i], row.tol, row.name + ": grad of input " + std::to_string(i));
    }
  }
}

TEST_CASE("CUDA dropout regenerates the Philox mask of the Generator's draw in backward", "[cuda][ops][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const double p = 0.3;
  Tensor x = rnd({7, 13}, 50).to(Device::cuda(0)).detach().requires_grad_();
  Generator gen(123);
  Tensor y = dropout(x, p, true, &gen);
  Tensor up = rnd({7, 13}, 51);
  y.backward(up.to(Device::cuda(0)));
  // The seed is one draw from the Generator, the offset 0 (core/ops_nn.cpp).
  const uint64_t seed = Generator(123).next_u64();
  std::vector<uint8_t> keep(static_cast<size_t>(x.numel()));
  kernels::cpu::dropout_philox_mask(x.numel(), p, seed, 0, keep.data());
  const std::vector<float> xv = x.to_vector<float>(), yv = y.to_vector<float>(), gv = x.grad().to_vector<float>();
  const std::vector<float> uv = up.to_vector<float>();
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  size_t bad = 0;
  for (size_t i = 0; i < keep.size(); ++i) {
    const float want_y = keep[i] ? xv[i] * scale : 0.f, want_g = keep[i] ? uv[i] * scale : 0.f;
    if (std::fabs(yv[i] - want_y) > 1e-6f || std::fabs(gv[i] - want_g) > 1e-6f) ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE("CUDA embedding and nll_loss report out-of-range indices like the CPU", "[cuda][ops][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const Device d = Device::cuda(0);
  Tensor w = rnd({5, 3}, 52).to(d);
  CHECK_THROWS_WITH(embedding(w, ids({1, 7, 2}).to(d)), Contains("index 7 at position 1 is out of range"));
  CHECK_THROWS_WITH(nll_loss(rnd({2, 3}, 53).to(d), ids({0, 3}).to(d)),
                    Contains("nll_loss: target 3 at position 1 is out of bounds for 3 classes"));
  CHECK_THROWS_WITH(index_select(w, 0, ids({0, 5}).to(d)), Contains("index 5 at position 1 is out of range"));
}

TEST_CASE("CUDA max / argmax give the CPU's first maximum, NaN first; index_select moves integer data", "[cuda][ops][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const Device d = Device::cuda(0);
  const float nan = std::nanf("");
  // Ties (first wins), NaN (the first NaN wins), rows longer than a block (1000 > 256 threads).
  std::vector<float> v(3 * 1000, 0.5f);
  v[1000 + 7] = 2.f;
  v[1000 + 900] = 2.f;
  v[2000 + 500] = nan;
  v[2000 + 999] = nan;
  v[2000 + 3] = 9.f;
  Tensor x = Tensor::from_vector(v, {3, 1000});
  auto [cv, ci] = max(x, 1);
  auto [gv, gi] = max(x.to(d), 1);
  CHECK(gi.to_vector<int64_t>() == std::vector<int64_t>{0, 7, 500});
  CHECK(gi.to_vector<int64_t>() == ci.to_vector<int64_t>());
  CHECK(std::isnan(gv.to_vector<float>()[2]));
  CHECK(argmax(x.to(d), 0).to_vector<int64_t>() == argmax(x, 0).to_vector<int64_t>());
  Tensor r = rnd({6, 11, 4}, 74);
  CHECK(argmax(r.to(d), 1, true).to_vector<int64_t>() == argmax(r, 1, true).to_vector<int64_t>());
  Tensor iv = Tensor::from_vector(std::vector<int64_t>{10, 11, 12, 13, 14, 15}, {3, 2});
  CHECK(index_select(iv.to(d), 0, ids({2, 0, 2}).to(d)).to_vector<int64_t>() ==
        std::vector<int64_t>{14, 15, 10, 11, 14, 15});
}

TEST_CASE("CUDA lora_linear dropout: the Philox mask of one Generator draw, regenerated in backward",
          "[cuda][ops][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const Device d = Device::cuda(0);
  const double p = 0.25, s = 1.5;
  std::vector<Tensor> cpu = {rnd({3, 5, 12}, 80), rnd({7, 12}, 81), rnd({7}, 82), rnd({4, 12}, 83), rnd({7, 4}, 84)};
  std::vector<Tensor> gpu;
  for (Tensor& t : cpu) {
    t.requires_grad_();
    gpu.push_back(t.to(d).detach().requires_grad_());
  }
  Generator gen(99);
  Tensor y = lora_linear(gpu[0], gpu[1], gpu[2], gpu[3], gpu[4], s, p, true, &gen);
  Tensor up = rnd({3, 5, 7}, 85);
  y.backward(up.to(d));
  // Reference on the CPU with the same mask spelled out: seed = the Generator's first u64, offset 0.
  std::vector<uint8_t> keep(static_cast<size_t>(cpu[0].numel()));
  kernels::cpu::dropout_philox_mask(cpu[0].numel(), p, Generator(99).next_u64(), 0, keep.data());
  std::vector<float> m(keep.size());
  for (size_t i = 0; i < keep.size(); ++i) m[i] = keep[i] ? static_cast<float>(1.0 / (1.0 - p)) : 0.f;
  Tensor mask = Tensor::from_vector(m, cpu[0].shape());
  Tensor ref = add(linear(cpu[0], cpu[1], cpu[2]), mul(linear(linear(mul(cpu[0], mask), cpu[3]), cpu[4]), s));
  ref.backward(up);
  compare(y, ref, kF32, "lora_linear dropout: forward");
  for (size_t i = 0; i < cpu.size(); ++i)
    compare(gpu[i].grad(), cpu[i].grad(), kF32, "lora_linear dropout: grad of input " + std::to_string(i));
}

TEST_CASE("SGD, Adam and AdamW steps on CUDA match the CPU; their state lives on the device", "[cuda][optim][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  using Make = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;
  std::vector<std::pair<std::string, Make>> opts = {
      {"SGD nesterov wd", [](std::vector<Tensor> p) {
         optim::SGDOptions o;
         o.lr = 0.1;
         o.momentum = 0.9;
         o.nesterov = true;
         o.weight_decay = 0.01;
         return std::unique_ptr<optim::Optimizer>(new optim::SGD(std::move(p), o));
       }},
      {"Adam wd", [](std::vector<Tensor> p) {
         optim::AdamOptions o;
         o.lr = 0.01;
         o.weight_decay = 0.1;
         return std::unique_ptr<optim::Optimizer>(new optim::Adam(std::move(p), o));
       }},
      {"AdamW", [](std::vector<Tensor> p) {
         optim::AdamWOptions o;
         o.lr = 0.01;
         return std::unique_ptr<optim::Optimizer>(new optim::AdamW(std::move(p), o));
       }},
  };
  for (const auto& [name, make] : opts) {
    std::vector<Tensor> pc = {rnd({4, 3}, 60).requires_grad_(), rnd({5}, 61).requires_grad_()};
    std::vector<Tensor> pg = {pc[0].detach().to(Device::cuda(0)).requires_grad_(),
                              pc[1].detach().to(Device::cuda(0)).requires_grad_()};
    auto oc = make(pc), og = make(pg);
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < pc.size(); ++i) {
        Tensor g = rnd(pc[i].shape(), 70 + static_cast<uint64_t>(step * 10 + i));
        pc[i].set_grad(g);
        pg[i].set_grad(g.to(Device::cuda(0)));
      }
      oc->step();
      og->step();
    }
    for (size_t i = 0; i < pc.size(); ++i) compare(pg[i].to(Device::cpu()), pc[i], kF32, name + ": parameter " + std::to_string(i));
    for (const auto& [key, t] : og->state_dict())
      if (t.dim() > 0) CHECK(t.device() == Device::cuda(0));
  }
}

// ---------------------------------------------------------------- without a device

TEST_CASE("TF32 is off by default and the switch toggles", "[cuda][ops]") {
  CHECK_FALSE(cuda::allow_tf32());
  cuda::set_allow_tf32(true);
  CHECK(cuda::allow_tf32());
  cuda::set_allow_tf32(false);
  CHECK_FALSE(cuda::allow_tf32());
}

TEST_CASE("cuDNN is on by default, the switch toggles, and its version is 0 only without it", "[cuda][ops]") {
  CHECK(cuda::cudnn_enabled());
  cuda::set_cudnn_enabled(false);
  CHECK_FALSE(cuda::cudnn_enabled());
  cuda::set_cudnn_enabled(true);
  CHECK(cuda::cudnn_enabled());
  const int v = cuda::cudnn_version();
  if (!built_with_cuda()) CHECK(v == 0);
  CHECK(v >= 0);
  if (v > 0) CHECK(v >= 8000);  // the build requires cuDNN >= 8 (cmake/cudnn.cmake)
}

TEST_CASE("the CUDA op entry points refuse a missing device before touching memory", "[cuda][ops]") {
  if (cuda_device_count() > 0) {
    WARN("skipped: a GPU is present");
    return;
  }
  std::vector<float> host(4, 1.f);
  CHECK_THROWS_WITH(cuda_ops::unary(cuda_ops::UnaryOp::Relu, {4}, host.data(), {1}, host.data(), {1}, DType::F32,
                                    Device::cuda(0)),
                    Contains("cuda:0"));
  CHECK_THROWS_WITH(cuda_ops::gemm(false, false, 2, 2, 1, 1.0, host.data(), 1, host.data(), 2, 0.0, host.data(), 2,
                                   DType::F32, Device::cuda(0)),
                    Contains("cuda:0"));
  CHECK(host == std::vector<float>(4, 1.f));
}
