// End to end on both devices: the seed MLP (samples/models/mlp.h, AdamW) and a small conv-free
// vision net (GroupNorm → PoolFormer's avg-pool token mixer → global pool → Linear, SGD with
// momentum) train for a few steps from the same initial weights on the same batches; the loss
// of every step must agree between the CPU and CUDA (atol 1e-5, rtol 1e-4: F32 GEMMs and
// reductions sum in another order, and the difference grows a little with each step).
// The vision net is conv-free because it predates conv2d's CUDA path; conv2d on CUDA is checked
// op by op (test_cuda_ops) and kernel by kernel (test_cuda_kernels_conv).
// Without a GPU both cases report "skipped: no CUDA device" and pass.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "cuda_kernel_util.h"
#include "models/mlp.h"

using namespace peft;

namespace {

constexpr int kSteps = 5;
const peft::testing::Tol kLossTol{1e-5, 1e-4};

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
  std::vector<double> losses;
  for (int s = 0; s < kSteps; ++s) {
    Tensor loss = nll_loss(model->forward(xb), yb);
    loss.backward();
    opt.step();
    opt.zero_grad();
    losses.push_back(loss.item());
  }
  return losses;
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
  std::vector<double> losses;
  for (int s = 0; s < kSteps; ++s) {
    Tensor z = group_norm(x, 2, gn_w, gn_b);
    Tensor mixed = add(x, sub(avg_pool2d(z, pool), z));
    Tensor feat = adaptive_avg_pool2d(gelu(mixed), {1, 1}).flatten(1);
    Tensor loss = cross_entropy(linear(feat, fc_w, fc_b), y);
    loss.backward();
    opt.step();
    opt.zero_grad();
    losses.push_back(loss.item());
  }
  return losses;
}

void compare_losses(const std::vector<double>& gpu, const std::vector<double>& cpu) {
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    INFO("step " << i << ": cpu " << cpu[i] << ", cuda " << gpu[i]);
    CHECK(std::fabs(gpu[i] - cpu[i]) <= kLossTol.atol + kLossTol.rtol * std::fabs(cpu[i]));
  }
  CHECK(cpu.back() < cpu.front());  // it trains
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

TEST_CASE("the training loops themselves run and learn on the CPU", "[cuda][training]") {
  const std::vector<double> mlp = train_mlp(Device::cpu()), net = train_poolnet(Device::cpu());
  CHECK(mlp.back() < mlp.front());
  CHECK(net.back() < net.front());
}
