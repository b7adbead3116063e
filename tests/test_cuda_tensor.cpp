// Tensors on CUDA devices: allocation, copies host <-> device <-> device, Tensor::to(Device)
// and its gradient, Module::to, the caching allocator's steady state and statistics, and
// out-of-memory errors. Cases that need a GPU report "skipped: no CUDA device" and pass on a
// machine without one; the errors a machine without a GPU must give are checked everywhere.
//
// The refusal cases use tensors *labelled* cuda:0 that wrap host memory (non-owning Storage):
// they let every "not on this device" / "not implemented on cuda" check run without a GPU.
// Those checks must fire before any memory is touched, which is exactly what they pin; such a
// tensor is never passed to anything that would copy its bytes.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

bool skip_without_gpu() {
  if (cuda_device_count() > 0) return false;
  WARN((built_with_cuda() ? "skipped: no CUDA device" : "skipped: built without CUDA (PEFT_CUDA=OFF or no nvcc)"));
  return true;
}

// What allocating on a CUDA device that is not there must say, in this build.
std::string missing_device_message(const Device& d) {
  if (!built_with_cuda()) return "CUDA is not available in this build";
  const int n = cuda_device_count();
  return d.str() + " is not available: this machine has " + std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s");
}

// A tensor labelled cuda:0 over host memory (see the file comment); never owns device memory.
Tensor fake_cuda(const Shape& shape, DType dtype = DType::F32) {
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  auto host = std::make_shared<std::vector<unsigned char>>(nbytes + 8, 0);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(host->data(), nbytes, Device::cuda(0), host);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

void check_same_values(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  CHECK(got.dtype() == want.dtype());
  CHECK(got.to_vector<double>() == want.to_vector<double>());
}

Tensor sample(DType dtype, const Shape& shape) {
  if (dtype == DType::I64) return Tensor::arange(shape_numel(shape), DType::I64).reshape(shape);
  return Tensor::randn(shape, DType::F64).to(dtype);
}

}  // namespace

// ---------------------------------------------------------------- without a device

TEST_CASE("allocating on a CUDA device that is not there is a clear error", "[cuda]") {
  const int n = cuda_device_count();
  const Device missing = Device::cuda(n);  // cuda:0 on a machine without a GPU
  CHECK_THROWS_WITH(Tensor::empty({2, 3}, DType::F32, missing), Contains(missing_device_message(missing)));
  CHECK_THROWS_WITH(Tensor::zeros({4}, DType::F32, missing), Contains(missing_device_message(missing)));
  if (n <= 7)
    CHECK_THROWS_WITH(Tensor::ones({1}, DType::F32, Device::cuda(7)), Contains(missing_device_message(Device::cuda(7))));
  CHECK_THROWS_WITH(cuda::memory_stats(missing), Contains(missing_device_message(missing)));
  CHECK_THROWS_WITH(cuda::empty_cache(missing), Contains(missing_device_message(missing)));
  if (built_with_cuda()) CHECK_THROWS_WITH(cuda::memory_stats(Device::cpu()), Contains("expected a CUDA device, got cpu"));
}

TEST_CASE("to(missing cuda device) throws and leaves the source as it was", "[cuda]") {
  const Device missing = Device::cuda(cuda_device_count());
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  x.requires_grad_();
  CHECK_THROWS_WITH(x.to(missing), Contains(missing_device_message(missing)));
  CHECK(x.device() == Device::cpu());
  CHECK(x.is_leaf());
  CHECK_FALSE(x.grad().defined());
  CHECK(x.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  CHECK(x.to(Device::cpu()).is_same(x));  // same device: no copy

  nn::Linear lin(3, 2);
  Tensor w = lin.param("weight");
  const std::vector<float> before = w.to_vector<float>();
  CHECK_THROWS_WITH(lin.to(missing), Contains(missing_device_message(missing)));
  CHECK(lin.param("weight").is_same(w));
  CHECK(w.device() == Device::cpu());
  CHECK(w.to_vector<float>() == before);
}

TEST_CASE("CPU-only helpers refuse CUDA tensors before reading memory; views work anywhere", "[cuda]") {
  Tensor g = fake_cuda({2, 3});
  CHECK_THROWS_WITH(detail::contiguous_data(g), Contains("contiguous_data: not implemented on cuda:0 yet (CPU only); "
                                                         "move the tensor with .to(Device::cpu())"));
  // Views only touch metadata, so they work on any device.
  CHECK(g.transpose(0, 1).shape() == Shape{3, 2});
  CHECK(g.reshape({6}).device() == Device::cuda(0));
}

TEST_CASE("ops with a CUDA path dispatch to the device (and fail naming it when it is missing)", "[cuda]") {
  if (cuda_device_count() > 0) {
    WARN("skipped: a GPU is present (the fake cuda:0 tensor would reach a real kernel); test_cuda_ops covers these");
    return;
  }
  const std::string missing = missing_device_message(Device::cuda(0));
  Tensor g = fake_cuda({2, 3});
  CHECK_THROWS_WITH(relu(g), Contains(missing));
  CHECK_THROWS_WITH(sum(g), Contains(missing));
  CHECK_THROWS_WITH(matmul(g, fake_cuda({3, 2})), Contains(missing));
  CHECK_THROWS_WITH(softmax(g, -1), Contains(missing));
  CHECK_THROWS_WITH(mul(g, 2.0), Contains(missing));
  CHECK_THROWS_WITH(g.mul_(2), Contains(missing));
  CHECK_THROWS_WITH(g.add_(fake_cuda({2, 3})), Contains(missing));
  CHECK_THROWS_WITH(g.fill_(3), Contains(missing));
  CHECK_THROWS_WITH(dropout(g, 0.5, true), Contains(missing));
  CHECK_THROWS_WITH(embedding(g, fake_cuda({2}, DType::I64)), Contains(missing));
  CHECK_THROWS_WITH(conv2d(fake_cuda({1, 2, 4, 4}), fake_cuda({3, 2, 3, 3}), fake_cuda({3})), Contains(missing));
  CHECK_THROWS_WITH(max(g, 0), Contains(missing));
  CHECK_THROWS_WITH(argmax(g, 1), Contains(missing));
  CHECK_THROWS_WITH(index_select(g, 0, fake_cuda({1}, DType::I64)), Contains(missing));
  CHECK_THROWS_WITH(index_select(fake_cuda({3, 2}, DType::I64), 0, fake_cuda({1}, DType::I64)), Contains(missing));
  CHECK_THROWS_WITH(lstm(fake_cuda({2, 1, 3}), std::nullopt, {fake_cuda({8, 3}), fake_cuda({8, 2})}, false, 1, false),
                    Contains(missing));
  CHECK_THROWS_WITH(lora_linear(g, fake_cuda({4, 3}), Tensor(), fake_cuda({2, 3}), fake_cuda({4, 2}), 1.0, 0.1, true),
                    Contains(missing));
  // The fake storage is untouched: every path failed before a kernel could run.
  CHECK(std::vector<unsigned char>(static_cast<unsigned char*>(g.raw_data()),
                                   static_cast<unsigned char*>(g.raw_data()) + g.nbytes()) ==
        std::vector<unsigned char>(g.nbytes(), 0));
}

TEST_CASE("mixing devices in one op is a clear error", "[cuda]") {
  Tensor c = Tensor::ones({2, 3}), g = fake_cuda({2, 3});
  CHECK_THROWS_WITH(add(c, g), Contains("add: expected all tensors on the same device, got cpu and cuda:0"));
  CHECK_THROWS_WITH(mul(g, c), Contains("mul: expected all tensors on the same device, got cuda:0 and cpu"));
  CHECK_THROWS_WITH(linear(Tensor::ones({4, 3}), fake_cuda({2, 3})),
                    Contains("linear: expected all tensors on the same device, got cpu and cuda:0"));
  CHECK_THROWS_WITH(c.add_(g), Contains("add_: expected all tensors on the same device, got cpu and cuda:0"));
  CHECK_THROWS_WITH(embedding(Tensor::ones({5, 2}), fake_cuda({3}, DType::I64)),
                    Contains("embedding: expected all tensors on the same device, got cpu (weight) and cuda:0 (indices)"));
  CHECK_THROWS_WITH(nll_loss(Tensor::ones({2, 3}), fake_cuda({2}, DType::I64)),
                    Contains("nll_loss: expected all tensors on the same device, got cpu (input) and cuda:0 (target)"));
  CHECK_THROWS_WITH(cat({c, g}), Contains("cat: tensor 1 is on cuda:0, expected cpu"));

  nn::Linear lin(3, 2);
  CHECK_THROWS_WITH(lin.forward(g), Contains("linear: expected all tensors on the same device, got cuda:0 and cpu"));
}

TEST_CASE("a gradient arriving on another device than its leaf is refused", "[cuda]") {
  Tensor x = Tensor::ones({2, 3}).requires_grad_();
  CHECK_THROWS_WITH(x.backward(fake_cuda({2, 3})), Contains("backward: gradient on cuda:0 for a leaf tensor on cpu"));
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("optimizers step CUDA parameters on the device; a gradient on another device is refused", "[cuda]") {
  if (cuda_device_count() == 0) {
    Tensor p = fake_cuda({3});
    p.requires_grad_();
    p.set_grad(fake_cuda({3}));
    const std::string missing = missing_device_message(Device::cuda(0));
    optim::SGD sgd({p}, {});
    CHECK_THROWS_WITH(sgd.step(), Contains(missing));
    optim::AdamW adamw({p}, {});
    CHECK_THROWS_WITH(adamw.step(), Contains(missing));
  }
  Tensor q = Tensor::zeros({3}).requires_grad_();
  q.set_grad(fake_cuda({3}));
  optim::SGD sgd2({q}, {});
  CHECK_THROWS_WITH(sgd2.step(), Contains("SGD: parameter 0 is on cpu but its gradient on cuda:0"));
}

TEST_CASE("reading a CUDA tensor without a usable device names the device", "[cuda]") {
  if (cuda_device_count() > 0) {
    WARN("skipped: a GPU is present (the fake cuda:0 tensor would be copied for real)");
    return;
  }
  Tensor g = fake_cuda({2});
  CHECK_THROWS_WITH(g.item(), Contains("cannot be converted to a scalar"));  // checked before any copy
  CHECK_THROWS_WITH(fake_cuda({1}).item(), Contains(missing_device_message(Device::cuda(0))));
  CHECK_THROWS_WITH(g.to_vector<float>(), Contains(missing_device_message(Device::cuda(0))));
  CHECK_THROWS_WITH(g.to_string(), Contains(missing_device_message(Device::cuda(0))));
  CHECK_THROWS_WITH(g.to(Device::cpu()), Contains(missing_device_message(Device::cuda(0))));
  Tensor c = Tensor::zeros({2});
  CHECK_THROWS_WITH(c.copy_(g), Contains(missing_device_message(Device::cuda(0))));
  CHECK(c.to_vector<float>() == std::vector<float>{0, 0});
}

// ---------------------------------------------------------------- with a GPU

TEST_CASE("host -> device -> host round trips are exact for every dtype and layout", "[cuda][gpu]") {
  if (skip_without_gpu()) return;
  const Device dev = Device::cuda(0);
  for (DType dt : {DType::F32, DType::F64, DType::I64, DType::BF16}) {
    INFO("dtype " << dtype_name(dt));
    Tensor x = sample(dt, {5, 7});
    Tensor d = x.to(dev);
    CHECK(d.device() == dev);
    check_same_values(d.to(Device::cpu()), x);
    // Non-contiguous sources on either side.
    check_same_values(x.transpose(0, 1).to(dev).to(Device::cpu()), x.transpose(0, 1));
    check_same_values(x.slice(1, 1, 6, 2).to(dev).to(Device::cpu()), x.slice(1, 1, 6, 2));
    check_same_values(d.transpose(0, 1).to(Device::cpu()), x.transpose(0, 1));
    check_same_values(d.slice(0, 1, 4).select(1, 3).to(Device::cpu()), x.slice(0, 1, 4).select(1, 3));
    check_same_values(d.transpose(0, 1).contiguous().to(Device::cpu()), x.transpose(0, 1));
    // A non-contiguous destination on the device keeps the bytes between its elements.
    Tensor dst = Tensor::full({7, 5}, 9, dt, dev);
    {
      NoGradGuard g;
      dst.slice(0, 0, 7, 2).copy_(x.transpose(0, 1).slice(0, 0, 7, 2));
    }
    Tensor want = Tensor::full({7, 5}, 9, dt);
    want.slice(0, 0, 7, 2).copy_(x.transpose(0, 1).slice(0, 0, 7, 2));
    check_same_values(dst.to(Device::cpu()), want);
  }
  // Dtype conversion and broadcasting across devices.
  Tensor x = sample(DType::F32, {3, 4});
  check_same_values(x.to(dev).to(DType::F64).to(Device::cpu()), x.to(DType::F64));
  Tensor row = Tensor::empty({3, 4}, DType::F32, dev);
  row.copy_(x.select(0, 1));
  check_same_values(row.to(Device::cpu()), x.select(0, 1).expand({3, 4}));
}

TEST_CASE("factories, item and printing work on the device", "[cuda][gpu]") {
  if (skip_without_gpu()) return;
  const Device dev = Device::cuda(0);
  CHECK(Tensor::zeros({3}, DType::F32, dev).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(Tensor::ones({2}, DType::BF16, dev).to_vector<float>() == std::vector<float>{1, 1});
  CHECK(Tensor::full({2, 2}, -2.5, DType::F64, dev).to_vector<double>() == std::vector<double>{-2.5, -2.5, -2.5, -2.5});
  CHECK(Tensor::full({}, 7, DType::I64, dev).item() == 7);
  CHECK(Tensor::empty({0}, DType::F32, dev).numel() == 0);
  const std::string s = Tensor::ones({2}, DType::F32, dev).to_string();
  CHECK_THAT(s, Contains("device=cuda:0"));
  // relu has a CUDA kernel now (it used to be refused here).
  CHECK(relu(Tensor::full({2}, -1.5, DType::F32, dev)).to_vector<float>() == std::vector<float>{0, 0});
  CHECK_THROWS_WITH(add(Tensor::ones({2}), Tensor::ones({2}, DType::F32, dev)),
                    Contains("expected all tensors on the same device, got cpu and cuda:0"));
  cuda::synchronize(dev);
}

TEST_CASE("device-to-device copies, on one device and across devices", "[cuda][gpu]") {
  if (skip_without_gpu()) return;
  Tensor x = sample(DType::F32, {64, 33});
  Tensor a = x.to(Device::cuda(0));
  Tensor b = Tensor::empty(x.shape(), DType::F32, Device::cuda(0));
  b.copy_(a);
  check_same_values(b.to(Device::cpu()), x);
  check_same_values(a.clone().to(Device::cpu()), x);
  if (cuda_device_count() < 2) {
    WARN("skipped: cross-device copies need two CUDA devices");
    return;
  }
  Tensor c = a.to(Device::cuda(1));
  CHECK(c.device() == Device::cuda(1));
  check_same_values(c.to(Device::cpu()), x);
  check_same_values(c.transpose(0, 1).to(Device::cuda(0)).to(Device::cpu()), x.transpose(0, 1));
}

TEST_CASE("gradients flow back through to(device) to the source device", "[cuda][gpu]") {
  if (skip_without_gpu()) return;
  Tensor x = Tensor::randn({3, 4}).requires_grad_();
  Tensor y = x.to(Device::cuda(0));
  CHECK(y.requires_grad());
  CHECK(y.grad_fn()->name() == "ToCopyBackward");
  sum(y.to(Device::cpu())).backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device() == Device::cpu());
  CHECK(x.grad().to_vector<float>() == std::vector<float>(12, 1.0f));
}

TEST_CASE("Module::to moves parameters and grads in place; an optimizer steps on either device", "[cuda][gpu]") {
  if (skip_without_gpu()) return;
  auto lin = std::make_shared<nn::Linear>(4, 3);
  Tensor w = lin->param("weight");
  TensorImpl* w_impl = w.unsafe_impl();
  optim::SGDOptions sgd_opt;
  sgd_opt.lr = 0.5;
  optim::SGD opt(lin->parameters(), sgd_opt);
  Tensor x = Tensor::randn({2, 4});
  sum(lin->forward(x)).backward();
  const std::vector<float> w0 = w.to_vector<float>(), g0 = w.grad().to_vector<float>();

  lin->to(Device::cuda(0));
  CHECK(w.device() == Device::cuda(0));  // the handle held outside sees the move
  CHECK(lin->param("weight").unsafe_impl() == w_impl);
  CHECK(lin->param("bias").device() == Device::cuda(0));
  CHECK(w.grad().device() == Device::cuda(0));
  CHECK(w.to_vector<float>() == w0);
  CHECK(w.grad().to_vector<float>() == g0);
  CHECK_THROWS_WITH(lin->forward(x), Contains("expected all tensors on the same device"));
  opt.step();  // on the device
  const std::vector<float> wd = w.to_vector<float>();
  for (size_t i = 0; i < w0.size(); ++i) CHECK(wd[i] == Approx(w0[i] - 0.5f * g0[i]));

  lin->to(Device::cpu());
  CHECK(w.device() == Device::cpu());
  opt.step();
  const std::vector<float> w1 = w.to_vector<float>();
  for (size_t i = 0; i < w0.size(); ++i) CHECK(w1[i] == Approx(w0[i] - 1.0f * g0[i]));
}

TEST_CASE("a loop of identical allocations stops calling cudaMalloc", "[cuda][gpu][allocator]") {
  if (skip_without_gpu()) return;
  const Device dev = Device::cuda(0);
  Tensor host = Tensor::randn({100, 100});
  auto step = [&] {
    Tensor a = Tensor::empty({256, 256}, DType::F32, dev);
    Tensor b = Tensor::zeros({1000}, DType::F32, dev);
    Tensor c = host.to(dev);
    Tensor d = c.transpose(0, 1).contiguous();
  };
  step();
  const AllocatorStats first = cuda::memory_stats(dev);
  for (int i = 0; i < 100; ++i) step();
  const AllocatorStats after = cuda::memory_stats(dev);
  CHECK(after.raw_alloc_count == first.raw_alloc_count);
  CHECK(after.cache_hit_count >= first.cache_hit_count + 400);
  CHECK(after.allocated_bytes == first.allocated_bytes);
}

TEST_CASE("memory_stats tracks the peak; empty_cache returns cached blocks", "[cuda][gpu][allocator]") {
  if (skip_without_gpu()) return;
  const Device dev = Device::cuda(0);
  cuda::reset_peak_memory_stats(dev);
  const AllocatorStats base = cuda::memory_stats(dev);
  {
    Tensor big = Tensor::empty({16 * 1024 * 1024}, DType::F32, dev);  // 64 MiB, a size class
    const AllocatorStats s = cuda::memory_stats(dev);
    CHECK(s.allocated_bytes == base.allocated_bytes + (size_t(64) << 20));
    CHECK(s.peak_allocated_bytes == s.allocated_bytes);
  }
  AllocatorStats s = cuda::memory_stats(dev);
  CHECK(s.allocated_bytes == base.allocated_bytes);
  CHECK(s.peak_allocated_bytes == base.allocated_bytes + (size_t(64) << 20));
  CHECK(s.reserved_bytes >= base.allocated_bytes + (size_t(64) << 20));  // cached
  cuda::empty_cache(dev);
  s = cuda::memory_stats(dev);
  CHECK(s.reserved_bytes == s.allocated_bytes);
  cuda::reset_peak_memory_stats(dev);
  CHECK(cuda::memory_stats(dev).peak_allocated_bytes == s.allocated_bytes);
}

TEST_CASE("an impossible allocation names its size and what is in use, and changes nothing", "[cuda][gpu][allocator]") {
  if (skip_without_gpu()) return;
  const Device dev = Device::cuda(0);
  Tensor keep = Tensor::ones({1000}, DType::F32, dev);
  const AllocatorStats before = cuda::memory_stats(dev);
  CHECK_THROWS_WITH(Tensor::empty({int64_t(1) << 48}, DType::F32, dev),  // 1 PiB
                    Contains("cuda:0 out of memory: tried to allocate 1.00 PiB;") && Contains("allocated by tensors"));
  const AllocatorStats after = cuda::memory_stats(dev);
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(after.raw_alloc_count == before.raw_alloc_count);
  CHECK(keep.to_vector<float>() == std::vector<float>(1000, 1.0f));
  // From inside an op, the error names the op (the F32 output of a 2^24 x 2^24 product: 1 PiB).
  Tensor a = Tensor::zeros({int64_t(1) << 24, 1}, DType::F32, dev), b = Tensor::zeros({1, int64_t(1) << 24}, DType::F32, dev);
  CHECK_THROWS_WITH(matmul(a, b), Contains("cuda:0 out of memory in matmul: tried to allocate 1.00 PiB;"));
  Tensor again = Tensor::zeros({10}, DType::F32, dev);  // still usable
  CHECK(again.to_vector<float>() == std::vector<float>(10, 0.0f));
}
