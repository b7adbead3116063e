// The CUDA conv2d kernels against the CPU's im2col kernel (kernels/cpu/conv2d.h, DESIGN.md
// decision 3), as tests/test_cuda_kernels_nn.cpp does for the other nn families: the direct
// kernels (forward with and without bias, input / weight / bias gradients) and, when the build
// has cuDNN, the cuDNN products, over padding, stride, 1×1, dilation, groups (depthwise too),
// non-square kernels, an empty batch and a single pixel. Random inputs that are never zero; GPU
// outputs poisoned with NaN first, so an element never written fails.
//
// Tolerances: direct kernels F32 atol 1e-5 rtol 1e-4, F64 atol 1e-12 rtol 1e-10 (a plain sum in
// another order than the CPU's GEMM). cuDNN F32 atol 5e-5 rtol 5e-4, F64 atol 1e-10 rtol 1e-9:
// its FFT and Winograd algorithms round differently from a direct sum. Without a GPU every
// comparison prints "skipped: no CUDA device" and passes; the argument checks, which throw
// before any CUDA call, run for real in any CUDA build.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <peft/peft.h>

#include "core/cuda_api.h"
#include "cuda_kernel_util.h"
#include "kernels/cpu/conv2d.h"

#ifdef PEFT_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/conv.cuh"
#endif

using namespace peft::testing;
namespace cpu = peft::kernels::cpu;

#ifdef PEFT_WITH_CUDA
namespace gpu = peft::kernels::cuda;

namespace {

const cudaStream_t kStream = nullptr;  // the legacy default stream: DeviceBuffer copies order after it

// (N, C, H, W), (O, kh, kw), stride, padding, dilation, groups.
struct Case {
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g;
  const char* name;
};

const Case kCases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, "3x3 pad 1"},
    {2, 3, 9, 8, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, "stride 2"},
    {2, 6, 5, 4, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1, "1x1"},
    {1, 2, 9, 9, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, "dilation 2"},
    {2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, "groups 2"},
    {2, 3, 8, 7, 4, 2, 5, 2, 1, 1, 2, 1, 1, 1, "non-square kernel, stride, padding"},
    {1, 6, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, "depthwise"},
    {3, 4, 13, 11, 8, 3, 2, 3, 2, 0, 1, 2, 1, 2, "odd everything: stride 3x2, dilation 2x1, groups 2"},
    {2, 5, 33, 31, 7, 5, 5, 1, 1, 2, 2, 1, 1, 1, "5x5 on 33x31 (long weight-gradient sums)"},
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, "single pixel"},
    {0, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, "empty batch"},
};

cpu::Conv2dShape shape_of(const Case& c) {
  return cpu::conv2d_shape(c.N, c.C, c.H, c.W, c.O, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.g);
}

// The CPU's results for one case, from fixed seeds.
template <class T>
struct Reference {
  std::vector<T> x, w, b, dy, y, y_nobias, dx, dw, db;
};

template <class T>
Reference<T> reference(const cpu::Conv2dShape& s) {
  Reference<T> r;
  const size_t xn = static_cast<size_t>(s.N * s.C * s.H * s.W), yn = static_cast<size_t>(s.N * s.O * s.Ho * s.Wo);
  const size_t wn = static_cast<size_t>(s.O * (s.C / s.groups) * s.kh * s.kw), on = static_cast<size_t>(s.O);
  r.x = random_vec<T>(xn, 201);
  r.w = random_vec<T>(wn, 202);
  r.b = random_vec<T>(on, 203);
  r.dy = random_vec<T>(yn, 204);
  r.y.resize(yn);
  r.y_nobias.resize(yn);
  r.dx.resize(xn);
  r.dw.resize(wn);
  r.db.resize(on);
  cpu::conv2d_forward<T>(s, r.x.data(), r.w.data(), r.b.data(), r.y.data());
  cpu::conv2d_forward<T>(s, r.x.data(), r.w.data(), nullptr, r.y_nobias.data());
  cpu::conv2d_backward<T>(s, r.x.data(), r.w.data(), r.dy.data(), r.dx.data(), r.dw.data(), r.db.data());
  return r;
}

template <class T>
void run_direct(const Case& c) {
  const auto s = shape_of(c);
  const std::string what = std::string("direct conv2d ") + c.name + (sizeof(T) == 4 ? " F32" : " F64");
  const Reference<T> r = reference<T>(s);
  DeviceBuffer<T> dx_in(r.x), dw_in(r.w), db_in(r.b), ddy(r.dy), dy_out(r.y.size()), ddx(r.dx.size()),
      ddw(r.dw.size()), ddb(r.db.size());
  gpu::conv2d_forward_direct<T>(s, dx_in.get(), dw_in.get(), db_in.get(), dy_out.get(), kStream);
  check_close(dy_out.download(), r.y, tol_of<T>(), what + " y");
  dy_out.poison();
  gpu::conv2d_forward_direct<T>(s, dx_in.get(), dw_in.get(), nullptr, dy_out.get(), kStream);
  check_close(dy_out.download(), r.y_nobias, tol_of<T>(), what + " y without bias");
  gpu::conv2d_add_bias<T>(s, db_in.get(), dy_out.get(), kStream);  // the cuDNN path's bias step
  check_close(dy_out.download(), r.y, tol_of<T>(), what + " y + bias");
  gpu::conv2d_backward_input_direct<T>(s, dw_in.get(), ddy.get(), ddx.get(), kStream);
  check_close(ddx.download(), r.dx, tol_of<T>(), what + " dx");
  gpu::conv2d_backward_weight_direct<T>(s, dx_in.get(), ddy.get(), ddw.get(), kStream);
  check_close(ddw.download(), r.dw, tol_of<T>(), what + " dw");
  gpu::conv2d_backward_bias<T>(s, ddy.get(), ddb.get(), kStream);
  check_close(ddb.download(), r.db, tol_of<T>(), what + " db");
}

// cuDNN's products on the same data. In F32 every non-empty shape here must be served; in F64 a
// declined product is only reported (the op then runs the direct kernels, checked above).
template <class T>
void run_cudnn(const Case& c, bool tf32) {
  const auto s = shape_of(c);
  const std::string what = std::string("cuDNN conv2d ") + c.name + (sizeof(T) == 4 ? " F32" : " F64") +
                           (tf32 ? " TF32" : "");
  const Tol tol = tf32 ? Tol{1e-2, 1e-2} : (sizeof(T) == 4 ? Tol{5e-5, 5e-4} : Tol{1e-10, 1e-9});
  const Reference<T> r = reference<T>(s);
  DeviceBuffer<T> dx_in(r.x), dw_in(r.w), ddy(r.dy), dy_out(r.y.size()), ddx(r.dx.size()), ddw(r.dw.size());
  const bool empty = s.N == 0;  // declined by design: the direct kernels write the zeros
  const bool fwd = gpu::conv2d_forward_cudnn<T>(0, tf32, s, dx_in.get(), dw_in.get(), dy_out.get(), kStream);
  const bool bwd_x = gpu::conv2d_backward_input_cudnn<T>(0, tf32, s, dw_in.get(), ddy.get(), ddx.get(), kStream);
  const bool bwd_w = gpu::conv2d_backward_weight_cudnn<T>(0, tf32, s, dx_in.get(), ddy.get(), ddw.get(), kStream);
  INFO(what << ": served forward " << fwd << ", dx " << bwd_x << ", dw " << bwd_w);
  if (sizeof(T) == 4) {  // F32 shapes like these are cuDNN's bread and butter
    CHECK(fwd == !empty);
    CHECK(bwd_x == !empty);
    CHECK(bwd_w == !empty);
  } else if (!empty && !(fwd && bwd_x && bwd_w)) {
    WARN(what << ": cuDNN declined some F64 products (the op uses the direct kernels for those)");
  }
  if (fwd) check_close(dy_out.download(), r.y_nobias, tol, what + " y");
  if (bwd_x) check_close(ddx.download(), r.dx, tol, what + " dx");
  if (bwd_w) check_close(ddw.download(), r.dw, tol, what + " dw");
  // The same shape again: served from the cached plan, same results.
  if (fwd) {
    dy_out.poison();
    REQUIRE(gpu::conv2d_forward_cudnn<T>(0, tf32, s, dx_in.get(), dw_in.get(), dy_out.get(), kStream));
    check_close(dy_out.download(), r.y_nobias, tol, what + " y (cached plan)");
  }
}

}  // namespace
#endif

TEST_CASE("cuda direct conv2d kernels match the CPU, forward and every gradient", "[cuda][kernels][conv]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  for (const Case& c : kCases) {
    run_direct<float>(c);
    run_direct<double>(c);
  }
#endif
}

TEST_CASE("cuda cuDNN conv2d products match the CPU", "[cuda][kernels][conv][cudnn]") {
  if (!cuda_ready()) return;
  if (peft::cuda::cudnn_version() == 0) {
    WARN("skipped: built without cuDNN (PEFT_CUDNN=OFF or not found); conv2d runs on the direct kernels");
    return;
  }
#ifdef PEFT_WITH_CUDA
  for (const Case& c : kCases) {
    run_cudnn<float>(c, false);
    run_cudnn<double>(c, false);
  }
  run_cudnn<float>(kCases[0], true);
  run_cudnn<float>(kCases[4], true);
#endif
}

TEST_CASE("cuda conv2d launchers reject bad shapes and null pointers before touching the device",
          "[cuda][kernels][conv][errors]") {
  // These checks throw before any CUDA call, so they run for real on a machine without a GPU.
#ifdef PEFT_WITH_CUDA
  float f[4] = {1, 2, 3, 4};
  auto s = cpu::conv2d_shape(1, 2, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1, 1);
  auto bad = s;
  bad.Ho = 3;  // not what conv2d_shape says (2)
  CHECK_THROWS_WITH(gpu::conv2d_forward_direct<float>(bad, f, f, nullptr, f, kStream),
                    Catch::Contains("output size (3, 2) is not conv2d_shape's (2, 2)"));
  CHECK_THROWS_WITH(gpu::conv2d_backward_weight_direct<float>(bad, f, f, f, kStream), Catch::Contains("output size"));
  CHECK_THROWS_WITH(gpu::conv2d_forward_cudnn<float>(0, false, bad, f, f, f, kStream), Catch::Contains("output size"));
  auto grouped = cpu::conv2d_shape(1, 3, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1, 2);
  CHECK_THROWS_WITH(gpu::conv2d_backward_input_direct<float>(grouped, f, f, f, kStream),
                    Catch::Contains("groups 2 must divide in_channels 3 and out_channels 2"));
  CHECK_THROWS_WITH(gpu::conv2d_forward_direct<float>(s, f, f, nullptr, nullptr, kStream),
                    Catch::Contains("null device pointer"));
  CHECK_THROWS_WITH(gpu::conv2d_backward_bias<float>(s, f, nullptr, kStream), Catch::Contains("null device pointer"));
  CHECK_THROWS_WITH(gpu::conv2d_add_bias<float>(s, nullptr, f, kStream), Catch::Contains("null device pointer"));
#else
  WARN("skipped: no CUDA device (built without CUDA: PEFT_CUDA=OFF or no nvcc)");
#endif
}
