// End to end on both devices: the seed MLP (samples/models/mlp.h, AdamW) and a small conv-free
// vision net (GroupNorm → PoolFormer's avg-pool token mixer → global pool → Linear, SGD with
// momentum) train for a few steps from the same initial weights on the same batches; the loss
// of every step must agree between the CPU and CUDA (atol 1e-5, rtol 1e-4: F32 GEMMs and
// reductions sum in another order, and the difference grows a little with each step).
// A small conv net (conv 3×3 → ReLU → conv 1×1 with groups → avg pool → Linear) does the same
// with looser bounds (atol 1e-4, rtol 1e-3: cuDNN may pick Winograd / FFT algorithms).
// Mixed precision: the seed MLP with LoRA (PEFT's notebook config: LoRA on seq.0 / seq.2, seq.4
// in modules_to_save) trains on CUDA with a BF16 base, F32 adapters (autocast_adapter_dtype) and
// F32 masters for the BF16 modules_to_save copy (optim::MasterWeights), against the all-F32 CPU
// run: BF16 keeps 8 mantissa bits (relative rounding 2^-9), activations are rounded at every op,
// and the first-step adapter values differ by their BF16 rounding, so losses agree to atol 2e-2,
// rtol 5e-2, and the BF16 run must itself train. The same model through the fused LoRA kernels
// (peft::cuda::set_lora_fused): BF16 adapters too (atol 3e-2, rtol 5e-2), and all F32 on TF32
// tensor cores (atol 1e-2, rtol 2e-2: ~11-bit products in every GEMM), on every CUDA LoRA path
// (Auto: merged / epilogue chain; Chain; Wmma).
// Without a GPU every GPU case reports "skipped: no CUDA device" and passes.
#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <vector>

#include "cuda_kernel_util.h"
#include "models/mlp.h"
#include "peft.h"

using namespace peft;

namespace {

constexpr int kSteps = 5;
const peft::testing::Tol kLossTol{1e-5, 1e-4};

// kSteps of: loss = step_loss(), backward, opt.step(), zero_grad; the loss of each step.
std::vector<double> run_steps(const std::function<Tensor()>& step_loss, optim::Optimizer& opt) {
  std::vector<double> losses;
  for (int s = 0; s < kSteps; ++s) {
    Tensor loss = step_loss();
    loss.backward();
    opt.step();
    opt.zero_grad();
    losses.push_back(loss.item());
  }
  return losses;
}

std::vector<double> train_mlp(Device dev) {
  manual_seed(7);  // same initial weights on both devices
  auto model = std::make_shared<samples::MLP>(32);
  Generator data_gen(3);
  samples::ToyTask task = samples::make_toy_task(data_gen, 256);
  model->to(dev);
  optim::AdamWOptions o;
  o.lr = 5e-3;
  optim::AdamW opt(model->parameters(), o);
  // One fixed batch, so the loss must fall step by step (the comparison itself needs no trend).
  Tensor xb = task.X.slice(0, 0, 64).to(dev), yb = task.y.slice(0, 0, 64).to(dev);
  return run_steps([&] { return nll_loss(model->forward(xb), yb); }, opt);
}

// GroupNorm → x + (avg_pool3x3(y) - y) → global average → Linear, cross-entropy over 4 classes.
std::vector<double> train_poolnet(Device dev) {
  Generator gen(11);
  const int64_t N = 6, C = 8, H = 5, W = 7, K = 4;
  auto param = [&](const Shape& s, double scale) {
    return mul(Tensor::randn(s, DType::F32, &gen), scale).to(dev).detach().requires_grad_();
  };
  Tensor gn_w = param({C}, 0.1), gn_b = param({C}, 0.1), fc_w = param({K, C}, 0.3), fc_b = param({K}, 0.1);
  {
    NoGradGuard g;
    gn_w.add_(Tensor::ones({C}).to(dev));
  }
  Tensor x = Tensor::randn({N, C, H, W}, DType::F32, &gen).to(dev);
  Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 3, 1, 2, 3, 0}, {N}).to(dev);
  optim::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  optim::SGD opt({gn_w, gn_b, fc_w, fc_b}, o);
  AvgPool2dOptions pool;
  pool.kernel = {3, 3};
  pool.stride = {1, 1};
  pool.padding = {1, 1};
  pool.count_include_pad = false;
  return run_steps([&] {
    Tensor z = group_norm(x, 2, gn_w, gn_b);
    Tensor mixed = add(x, sub(avg_pool2d(z, pool), z));
    Tensor feat = adaptive_avg_pool2d(gelu(mixed), {1, 1}).flatten(1);
    return cross_entropy(linear(feat, fc_w, fc_b), y);
  }, opt);
}

// conv 3×3 (pad 1) → ReLU → grouped conv 1×1 → avg pool 2×2 → flatten → Linear, SGD.
std::vector<double> train_convnet(Device dev) {
  Generator gen(21);
  const int64_t N = 4, C = 3, H = 8, W = 6, F = 8, K = 3;
  auto param = [&](const Shape& s, double scale) {
    return mul(Tensor::randn(s, DType::F32, &gen), scale).to(dev).detach().requires_grad_();
  };
  Tensor w1 = param({F, C, 3, 3}, 0.3), b1 = param({F}, 0.1), w2 = param({F, F / 2, 1, 1}, 0.3);
  Tensor fc_w = param({K, F * (H / 2) * (W / 2)}, 0.05), fc_b = param({K}, 0.1);
  Tensor x = Tensor::randn({N, C, H, W}, DType::F32, &gen).to(dev);
  Tensor y = Tensor::from_vector(std::vector<int64_t>{2, 0, 1, 2}, {N}).to(dev);
  optim::SGDOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  optim::SGD opt({w1, b1, w2, fc_w, fc_b}, o);
  Conv2dOptions c1, c2;
  c1.padding = {1, 1};
  c2.groups = 2;
  AvgPool2dOptions pool;
  pool.kernel = {2, 2};
  pool.stride = {2, 2};
  return run_steps([&] {
    Tensor h = conv2d(relu(conv2d(x, w1, b1, c1)), w2, Tensor(), c2);
    return cross_entropy(linear(avg_pool2d(h, pool).flatten(1), fc_w, fc_b), y);
  }, opt);
}

// The seed MLP with LoRA; `bf16`: the base model in BF16 (adapters cast back to F32 unless
// `bf16_adapters`: then they stay BF16, the dtype the fused LoRA kernels take).
std::vector<double> train_lora_mlp(Device dev, bool bf16, bool bf16_adapters = false) {
  manual_seed(7);
  auto mlp = std::make_shared<samples::MLP>(32);
  Generator data_gen(3);
  samples::ToyTask task = samples::make_toy_task(data_gen, 256);
  mlp->to(dev);
  if (bf16) mlp->to(DType::BF16);
  LoraConfig cfg;
  cfg.r = 8;
  cfg.target_modules = ModuleSelector{"seq.0", "seq.2"};
  cfg.modules_to_save = std::vector<std::string>{"seq.4"};
  auto model = get_peft_model(mlp, cfg, "default", !bf16_adapters);
  const DType adapters = bf16 && bf16_adapters ? DType::BF16 : DType::F32;
  for (const auto& [name, t] : model->named_parameters())
    if (name.find(".lora_") != std::string::npos) REQUIRE(t.dtype() == adapters);
  optim::MasterWeights opt(model->trainable_parameters(), [](std::vector<Tensor> m) {
    optim::AdamWOptions o;
    o.lr = 5e-3;
    return std::make_unique<optim::AdamW>(std::move(m), o);
  });
  Tensor xb = task.X.slice(0, 0, 64).to(dev), yb = task.y.slice(0, 0, 64).to(dev);
  if (bf16) xb = xb.to(DType::BF16);
  return run_steps([&] { return nll_loss(model->forward(xb), yb); }, opt);
}

void compare_losses(const std::vector<double>& gpu, const std::vector<double>& cpu,
                    peft::testing::Tol tol = kLossTol) {
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    INFO("step " << i << ": cpu " << cpu[i] << ", cuda " << gpu[i]);
    CHECK(std::fabs(gpu[i] - cpu[i]) <= tol.atol + tol.rtol * std::fabs(cpu[i]));
  }
  CHECK(cpu.back() < cpu.front());  // it trains
  CHECK(gpu.back() < gpu.front());
}

}  // namespace

TEST_CASE("the seed MLP trains to the same losses on the CPU and CUDA", "[cuda][training][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  compare_losses(train_mlp(Device::cuda(0)), train_mlp(Device::cpu()));
}

TEST_CASE("a conv-free pooling net trains to the same losses on the CPU and CUDA", "[cuda][training][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  compare_losses(train_poolnet(Device::cuda(0)), train_poolnet(Device::cpu()));
}

TEST_CASE("a small conv net trains to the same losses on the CPU and CUDA", "[cuda][training][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  compare_losses(train_convnet(Device::cuda(0)), train_convnet(Device::cpu()), {1e-4, 1e-3});
}

TEST_CASE("the seed MLP with LoRA trains in mixed precision (BF16 base, F32 adapters and masters) on CUDA",
          "[cuda][training][mixed][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  compare_losses(train_lora_mlp(Device::cuda(0), true), train_lora_mlp(Device::cpu(), false), {2e-2, 5e-2});
}

TEST_CASE("the seed MLP with LoRA trains on every CUDA LoRA path (BF16 throughout; TF32)",
          "[cuda][training][lora][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  peft::testing::CudaSwitchGuard restore;
  const std::vector<double> cpu = train_lora_mlp(Device::cpu(), false);
  for (const auto path : {cuda::LoraCudaPath::Auto, cuda::LoraCudaPath::Chain, cuda::LoraCudaPath::Wmma}) {
    INFO("path " << cuda::lora_path_name(path));
    cuda::set_lora_path(path);
    cuda::set_allow_tf32(false);
    compare_losses(train_lora_mlp(Device::cuda(0), true, true), cpu, {3e-2, 5e-2});  // BF16 adapters too
    cuda::set_allow_tf32(true);
    compare_losses(train_lora_mlp(Device::cuda(0), false), cpu, {1e-2, 2e-2});
  }
}

TEST_CASE("the training loops themselves run and learn on the CPU", "[cuda][training]") {
  const std::vector<double> mlp = train_mlp(Device::cpu()), net = train_poolnet(Device::cpu());
  const std::vector<double> conv = train_convnet(Device::cpu()), lora = train_lora_mlp(Device::cpu(), false);
  CHECK(mlp.back() < mlp.front());
  CHECK(net.back() < net.front());
  CHECK(conv.back() < conv.front());
  CHECK(lora.back() < lora.front());
}
