// BF16 activations on CUDA (mixed precision: BF16 storage, F32 math inside every kernel): each
// op a LoRA fine-tuning step uses, run on the GPU in BF16 and on the CPU in F32 from the same
// BF16-rounded inputs (fresh random values, never zero; the upstream gradient rounded too),
// forward and backward. The GPU output and every gradient must be BF16 (as in PyTorch) and
// satisfy |gpu - cpu| <= atol + rtol·|cpu|.
//
// Tolerances. BF16 keeps 8 significant bits: one rounding moves a value by up to 2^-9 ≈ 0.2%
// relative. A single-kernel op rounds once per output, so most rows use atol 1e-2, rtol 2e-2
// (values here are O(1)). A backward that autograd composes from several ops (pow's, div's,
// losses through log_softmax, mean = sum then scale) rounds every intermediate tensor, up to
// ~5 roundings in a chain, and a product of rounded factors can cancel: those rows use atol
// 3e-2, rtol 5e-2. Long reductions (conv2d's weight gradient over N·Ho·Wo terms, the norms' dw /
// db over the batch) sum exactly rounded inputs in F32 / double, but the sum of random-sign
// terms can be small next to its terms, and the GPU's saved BF16 forward values (y of softmax,
// the conv input) differ from the CPU's F32 ones by a rounding each: atol 3e-2, rtol 5e-2 too.
//
// Without a GPU every comparison prints "skipped: no CUDA device" and passes; the table's CPU
// references still run (finite gradients for every float input).
#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "cuda_kernel_util.h"
#include "cuda_op_table.h"

using namespace peft;
using peft::testing::Tol;

namespace {

constexpr Tol kOne{1e-2, 2e-2};    // one rounding per output
constexpr Tol kChain{3e-2, 5e-2};  // composed backward / long reductions (file comment)

// Random F32 values rounded to BF16 and back (exactly representable in BF16), never zero.
Tensor rnd(const Shape& shape, uint64_t seed, bool positive = false) {
  Tensor t = Tensor::from_vector(
      peft::testing::random_vec<float>(static_cast<size_t>(shape_numel(shape)), seed, positive), shape);
  return t.to(DType::BF16).to(DType::F32);
}

Tensor ids(const std::vector<int64_t>& v, const Shape& shape) { return Tensor::from_vector(v, shape); }

using Row = peft::testing::OpRow;  // tf32 stays off: BF16 rows
using peft::testing::conv_opts;

std::vector<Row> table() {
  using V = std::vector<Tensor>;
  std::vector<Row> r;
  auto un = [&](const char* name, Tol tol, std::function<Tensor(const Tensor&)> f, bool positive = false) {
    r.push_back({name, tol, [=] { return V{rnd({3, 5, 7}, 11, positive)}; }, [f](const V& v) { return f(v[0]); }});
  };
  // ---- elementwise (unary kernels and their *Backward binary kernels), broadcasting, scalars
  r.push_back({"add broadcast", kOne, [] { return V{rnd({3, 1, 5}, 1), rnd({4, 5}, 2)}; },
               [](const V& v) { return add(v[0], v[1]); }});
  r.push_back({"sub broadcast", kOne, [] { return V{rnd({2, 3, 4}, 3), rnd({3, 1}, 4)}; },
               [](const V& v) { return sub(v[0], v[1]); }});
  r.push_back({"mul transposed", kOne, [] { return V{rnd({5, 3}, 5), rnd({3, 5}, 6)}; },
               [](const V& v) { return mul(v[0].t(), v[1]); }});
  r.push_back({"div", kChain, [] { return V{rnd({4, 6}, 7), rnd({6}, 8, true)}; },
               [](const V& v) { return div(v[0], v[1]); }});
  r.push_back({"pow tensor", kChain, [] { return V{rnd({3, 4}, 9, true), rnd({1, 4}, 10)}; },
               [](const V& v) { return pow(v[0], v[1]); }});
  un("add scalar", kOne, [](const Tensor& x) { return add(x, 0.75); });
  un("mul scalar", kOne, [](const Tensor& x) { return mul(x, -1.5); });
  un("neg", kOne, [](const Tensor& x) { return neg(x); });
  un("pow 2", kOne, [](const Tensor& x) { return pow(x, 2.0); });
  un("pow 2.5", kChain, [](const Tensor& x) { return pow(x, 2.5); }, true);
  un("exp", kOne, [](const Tensor& x) { return exp(x); });
  un("log", kChain, [](const Tensor& x) { return log(x); }, true);
  un("sqrt", kChain, [](const Tensor& x) { return sqrt(x); }, true);
  un("abs", kOne, [](const Tensor& x) { return abs(x); });
  un("relu", kOne, [](const Tensor& x) { return relu(x); });
  un("gelu erf", kOne, [](const Tensor& x) { return gelu(x); });
  un("gelu tanh", kOne, [](const Tensor& x) { return gelu(x, "tanh"); });
  un("sigmoid", kOne, [](const Tensor& x) { return sigmoid(x); });
  un("tanh", kOne, [](const Tensor& x) { return tanh(x); });
  // ---- reductions and conversions (sum accumulates in double, one rounding at the end)
  un("sum all", kOne, [](const Tensor& x) { return sum(x); });
  un("sum dims keepdim", kOne, [](const Tensor& x) { return sum(x, {0, 2}, true); });
  un("mean dim of a transposed view", kChain, [](const Tensor& x) { return mean(x.transpose(0, 2), {1}); });
  un("to F32, scale, back to BF16", kOne,
     [](const Tensor& x) { return mul(x.to(DType::F32), 2.0).to(x.dtype()); });
  // ---- GEMMs (BF16 operands, F32 accumulation in cuBLAS) with the bias path of linear
  r.push_back({"matmul 2-D", kOne, [] { return V{rnd({7, 33}, 14), rnd({33, 5}, 15)}; },
               [](const V& v) { return matmul(v[0], v[1]); }});
  r.push_back({"linear 3-D input with bias", kOne,
               [] { return V{rnd({2, 3, 17}, 22), rnd({6, 17}, 23), rnd({6}, 24)}; },
               [](const V& v) { return linear(v[0], v[1], v[2]); }});
  r.push_back({"max over a middle dim (through F32)", kOne, [] { return V{rnd({3, 6, 5}, 70)}; },
               [](const V& v) { return max(v[0], 1, false).first; }});
  // ---- softmax, losses
  r.push_back({"softmax middle dim", kChain, [] { return V{rnd({3, 4, 5}, 33)}; },
               [](const V& v) { return softmax(v[0], 1); }});
  r.push_back({"log_softmax last dim", kChain, [] { return V{rnd({6, 11}, 34)}; },
               [](const V& v) { return log_softmax(v[0], -1); }});
  r.push_back({"cross_entropy mean with ignore_index", kChain,
               [] { return V{rnd({5, 7}, 35), ids({3, 0, -100, 6, 3}, {5})}; },
               [](const V& v) { return cross_entropy(v[0], v[1], "mean", -100); }});
  r.push_back({"nll_loss none", kOne, [] { return V{rnd({4, 3}, 37), ids({0, 1, 2, 1}, {4})}; },
               [](const V& v) { return nll_loss(v[0], v[1], "none"); }});
  // ---- embedding (repeated ids: the scatter-add runs in an F32 scratch), norms, pooling
  r.push_back({"embedding with padding and repeats", kOne,
               [] { return V{rnd({6, 5}, 40), ids({1, 3, 1, 0, 5, 3, 1, 1}, {2, 4})}; },
               [](const V& v) { return embedding(v[0], v[1], 3); }});
  r.push_back({"layer_norm affine", kChain, [] { return V{rnd({3, 4, 6}, 41), rnd({6}, 42), rnd({6}, 43)}; },
               [](const V& v) { return layer_norm(v[0], {6}, v[1], v[2]); }});
  r.push_back({"group_norm affine", kChain, [] { return V{rnd({2, 6, 3, 5}, 44), rnd({6}, 45), rnd({6}, 46)}; },
               [](const V& v) { return group_norm(v[0], 3, v[1], v[2]); }});
  r.push_back({"avg_pool2d padded ceil_mode", kOne, [] { return V{rnd({2, 3, 7, 6}, 47)}; },
               [](const V& v) {
                 AvgPool2dOptions o;
                 o.kernel = {3, 3};
                 o.stride = {2, 2};
                 o.padding = {1, 1};
                 o.ceil_mode = true;
                 o.count_include_pad = false;
                 return avg_pool2d(v[0], o);
               }});
  // ---- conv2d: (x, w, b), forward and the gradient of each; cuDNN and the direct kernels
  auto conv = [&](const char* name, Shape xs, Shape ws, bool bias, Conv2dOptions o, uint64_t seed, bool cudnn) {
    Row row{name, kChain,
            [=] {
              V in{rnd(xs, seed), rnd(ws, seed + 1)};
              if (bias) in.push_back(rnd({ws[0]}, seed + 2));
              return in;
            },
            [=](const V& v) { return conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), o); }};
    row.cudnn = cudnn;
    r.push_back(row);
  };
  conv("conv2d 3x3 pad 1", {2, 3, 7, 6}, {4, 3, 3, 3}, true, conv_opts({1, 1}, {1, 1}), 80, true);
  conv("conv2d groups 2, stride 2", {2, 4, 9, 8}, {6, 2, 3, 3}, true, conv_opts({2, 2}, {1, 1}, {1, 1}, 2), 83, true);
  conv("conv2d 3x3 pad 1 (direct kernels)", {2, 3, 7, 6}, {4, 3, 3, 3}, true, conv_opts({1, 1}, {1, 1}), 80, false);
  conv("conv2d groups 2, stride 2, dilation 2, no bias (direct kernels)", {2, 4, 11, 10}, {6, 2, 3, 2}, false,
       conv_opts({2, 2}, {1, 2}, {2, 2}, 2), 86, false);
  return r;
}

using Result = peft::testing::OpResult;

// One row on `dev` in `dt`, backward from a fixed BF16-exact upstream gradient; outputs and
// gradients come back as they are (dtype included) on the CPU.
Result run_row(const Row& row, const std::vector<Tensor>& cpu_inputs, Device dev, DType dt) {
  return peft::testing::run_op_row(row, cpu_inputs, dev, dt, [](const Shape& s) { return rnd(s, 1234); });
}

void compare(const Tensor& gpu, const Tensor& cpu, Tol tol, const std::string& what) {
  CHECK(gpu.dtype() == DType::BF16);
  peft::testing::compare_tensors(gpu, cpu, tol, what);
}

}  // namespace

TEST_CASE("every BF16 table row's F32 reference runs on the CPU with finite gradients", "[cuda][ops][bf16]") {
  for (const Row& row : table()) {
    INFO(row.name);
    const std::vector<Tensor> inputs = row.inputs();
    Result r = run_row(row, inputs, Device::cpu(), DType::F32);
    CHECK_FALSE(autograd::has_nonfinite(r.out));
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!is_floating(inputs[i].dtype())) continue;
      REQUIRE(r.grads[i].defined());
      CHECK_FALSE(autograd::has_nonfinite(r.grads[i]));
    }
  }
}

TEST_CASE("every op in BF16 on CUDA matches the CPU in F32 on the same rounded inputs", "[cuda][ops][bf16][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  for (const Row& row : table()) {
    const std::vector<Tensor> inputs = row.inputs();
    Result cpu = run_row(row, inputs, Device::cpu(), DType::F32);
    Result gpu = run_row(row, inputs, Device::cuda(0), DType::BF16);
    compare(gpu.out, cpu.out, row.tol, row.name + ": forward");
    for (size_t i = 0; i < inputs.size(); ++i) {
      CHECK(gpu.grads[i].defined() == cpu.grads[i].defined());
      if (cpu.grads[i].defined() && gpu.grads[i].defined())
        compare(gpu.grads[i], cpu.grads[i], row.tol, row.name + ": grad of input " + std::to_string(i));
    }
  }
}

TEST_CASE("CUDA dropout in BF16 keeps the F32 mask: its output is the F32 output rounded", "[cuda][ops][bf16][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const Device d = Device::cuda(0);
  const double p = 0.3;
  const Tensor x = rnd({9, 13}, 50), up = rnd({9, 13}, 51);
  auto run = [&](DType dt, Tensor& grad) {
    Tensor xi = x.to(dt).to(d).detach().requires_grad_();
    Generator gen(123);
    Tensor y = dropout(xi, p, true, &gen);
    y.backward(up.to(dt).to(d));
    grad = xi.grad().to(Device::cpu());
    return y.detach().to(Device::cpu());
  };
  Tensor g32, g16;
  const Tensor y32 = run(DType::F32, g32), y16 = run(DType::BF16, g16);
  REQUIRE(y16.dtype() == DType::BF16);
  REQUIRE(g16.dtype() == DType::BF16);
  // Same Philox mask, and x * scale computed in float then rounded once: bit-identical.
  CHECK(y16.to_vector<float>() == y32.to(DType::BF16).to_vector<float>());
  CHECK(g16.to_vector<float>() == g32.to(DType::BF16).to_vector<float>());
}

TEST_CASE("BF16 CUDA tensors fill, zero, accumulate in place and keep F32 norm statistics", "[cuda][ops][bf16][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const Device d = Device::cuda(0);
  // fill_ rounds to nearest even, as the CPU's conversion: 1/3 -> 0.333984375.
  Tensor t = Tensor::full({3, 5}, 1.0 / 3.0, DType::BF16, d);
  CHECK(t.dtype() == DType::BF16);
  CHECK(t.to(Device::cpu()).to_vector<float>() == std::vector<float>(15, bf16_to_float(float_to_bf16(1.f / 3.f))));
  Tensor z = Tensor::zeros({4}, DType::BF16, d);
  CHECK(z.to(Device::cpu()).to_vector<float>() == std::vector<float>(4, 0.f));
  // add_ / mul_ run the F32-math kernels on BF16 storage.
  Tensor a = rnd({6}, 60).to(DType::BF16).to(d), b = rnd({6}, 61);
  const std::vector<float> av = a.to(Device::cpu()).to_vector<float>(), bv = b.to_vector<float>();
  a.add_(b.to(DType::BF16).to(d)).mul_(0.5);
  const std::vector<float> got = a.to(Device::cpu()).to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i) {
    const float sum16 = bf16_to_float(float_to_bf16(av[i] + bv[i]));
    CHECK(got[i] == bf16_to_float(float_to_bf16(sum16 * 0.5f)));
  }
  // A BF16 weight's gradient accumulated over two backward passes stays BF16.
  Tensor w = rnd({4, 3}, 62).to(DType::BF16).to(d).detach().requires_grad_();
  Tensor x = rnd({2, 3}, 63).to(DType::BF16).to(d);
  for (int k = 0; k < 2; ++k) sum(linear(x, w)).backward();
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::BF16);
  const std::vector<float> xv = x.to(Device::cpu()).to_vector<float>(), gw = w.grad().to(Device::cpu()).to_vector<float>();
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t i = 0; i < 3; ++i) {
      const float one = bf16_to_float(float_to_bf16(xv[static_cast<size_t>(i)] + xv[static_cast<size_t>(3 + i)]));
      CHECK(gw[static_cast<size_t>(o * 3 + i)] == Approx(2 * one).epsilon(1e-2));
    }
}
