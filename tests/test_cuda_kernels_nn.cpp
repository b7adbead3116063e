// The CUDA nn-layer kernels against the CPU (DESIGN.md decision 3), as tests/test_cuda_kernels.cpp
// does for the elementwise / softmax / embedding / dropout families: layer_norm and group_norm,
// avg_pool2d and adaptive_avg_pool2d, the fused LSTM cell, and the multi-tensor Adam / AdamW step against
// core/optim.cpp. Random inputs that are never zero, tails and odd sizes, GPU outputs poisoned
// with NaN first. Tolerances: F32 atol 1e-5 rtol 1e-4, F64 atol 1e-12 rtol 1e-10. Without a GPU
// every case prints "skipped: no CUDA device" and passes.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <peft/peft.h>

#include "cuda_kernel_util.h"
#include "kernels/cpu/lstm_cell.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/pool.h"

#ifdef PEFT_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/lstm_cell.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/pool.cuh"
#endif

using namespace peft::testing;
namespace cpu = peft::kernels::cpu;

#ifdef PEFT_WITH_CUDA
namespace gpu = peft::kernels::cuda;
namespace {
const cudaStream_t kStream = nullptr;  // the legacy default stream: DeviceBuffer copies order after it
}  // namespace
#endif

#ifdef PEFT_WITH_CUDA
namespace {

template <class T>
void run_layer_norm(int64_t R, int64_t M, bool affine, double shift) {
  const std::string what = "layer_norm (" + std::to_string(R) + ", " + std::to_string(M) + ")" +
                           (affine ? " affine" : "") + " shift " + std::to_string(shift);
  auto x = random_vec<T>(static_cast<size_t>(R * M), 91);
  for (auto& v : x) v = static_cast<T>(v + shift);  // a large mean must not cost precision
  const auto w = random_vec<T>(static_cast<size_t>(M), 92), b = random_vec<T>(static_cast<size_t>(M), 93);
  const auto dy = random_vec<T>(static_cast<size_t>(R * M), 94);
  const T* wp = affine ? w.data() : nullptr;
  const T* bp = affine ? b.data() : nullptr;
  std::vector<T> y(x.size()), mean(static_cast<size_t>(R)), rstd(static_cast<size_t>(R)), dx(x.size()),
      dw(static_cast<size_t>(M)), db(static_cast<size_t>(M));
  cpu::layer_norm_forward<T>(R, M, T(1e-5), x.data(), wp, bp, y.data(), mean.data(), rstd.data());
  cpu::layer_norm_backward<T>(R, M, x.data(), wp, mean.data(), rstd.data(), dy.data(), dx.data(), dw.data(),
                              db.data());
  DeviceBuffer<T> dxin(x), dwt(w), dbias(b), dyout(y.size()), dmean(mean.size()), drstd(rstd.size()), dgrad(dy),
      ddx(dx.size()), ddw(dw.size()), ddb(db.size());
  gpu::layer_norm_forward<T>(R, M, T(1e-5), dxin.get(), affine ? dwt.get() : nullptr, affine ? dbias.get() : nullptr,
                             dyout.get(), dmean.get(), drstd.get(), kStream);
  check_close(dyout.download(), y, tol_of<T>(), what + " y");
  check_close(dmean.download(), mean, tol_of<T>(), what + " mean");
  check_close(drstd.download(), rstd, tol_of<T>(), what + " rstd");
  dmean.upload(mean);  // backward from the CPU's statistics: each pass is compared on its own
  drstd.upload(rstd);
  gpu::layer_norm_backward<T>(R, M, dxin.get(), affine ? dwt.get() : nullptr, dmean.get(), drstd.get(), dgrad.get(),
                              ddx.get(), ddw.get(), ddb.get(), kStream);
  check_close(ddx.download(), dx, tol_of<T>(), what + " dx");
  check_close(ddw.download(), dw, tol_of<T>(), what + " dw");
  check_close(ddb.download(), db, tol_of<T>(), what + " db");
  ddx.poison();  // null dx: dw alone, dx untouched
  gpu::layer_norm_backward<T>(R, M, dxin.get(), wp ? dwt.get() : nullptr, dmean.get(), drstd.get(), dgrad.get(),
                              nullptr, ddw.get(), nullptr, kStream);
  check_close(ddw.download(), dw, tol_of<T>(), what + " dw alone");
  check_close(ddx.download(), poisoned<T>(dx.size()), tol_of<T>(), what + " dx untouched");
}

template <class T>
void run_group_norm(int64_t N, int64_t C, int64_t S, int64_t G, bool affine) {
  const std::string what = "group_norm (" + std::to_string(N) + ", " + std::to_string(C) + ", " + std::to_string(S) +
                           ") G " + std::to_string(G) + (affine ? " affine" : "");
  const size_t n = static_cast<size_t>(N * C * S);
  const auto x = random_vec<T>(n, 101), dy = random_vec<T>(n, 102);
  const auto w = random_vec<T>(static_cast<size_t>(C), 103), b = random_vec<T>(static_cast<size_t>(C), 104);
  const T* wp = affine ? w.data() : nullptr;
  const size_t ng = static_cast<size_t>(N * G);
  std::vector<T> y(n), mean(ng), rstd(ng), dx(n), dw(static_cast<size_t>(C)), db(static_cast<size_t>(C));
  cpu::group_norm_forward<T>(N, C, S, G, T(1e-5), x.data(), wp, affine ? b.data() : nullptr, y.data(), mean.data(),
                             rstd.data());
  cpu::group_norm_backward<T>(N, C, S, G, x.data(), wp, mean.data(), rstd.data(), dy.data(), dx.data(), dw.data(),
                              db.data());
  DeviceBuffer<T> dxin(x), dwt(w), dbias(b), dyout(n), dmean(ng), drstd(ng), dgrad(dy), ddx(n), ddw(dw.size()),
      ddb(db.size());
  T* dwp = affine ? dwt.get() : nullptr;
  gpu::group_norm_forward<T>(N, C, S, G, T(1e-5), dxin.get(), dwp, affine ? dbias.get() : nullptr, dyout.get(),
                             dmean.get(), drstd.get(), kStream);
  check_close(dyout.download(), y, tol_of<T>(), what + " y");
  check_close(dmean.download(), mean, tol_of<T>(), what + " mean");
  check_close(drstd.download(), rstd, tol_of<T>(), what + " rstd");
  dmean.upload(mean);
  drstd.upload(rstd);
  gpu::group_norm_backward<T>(N, C, S, G, dxin.get(), dwp, dmean.get(), drstd.get(), dgrad.get(), ddx.get(),
                              ddw.get(), ddb.get(), kStream);
  check_close(ddx.download(), dx, tol_of<T>(), what + " dx");
  check_close(ddw.download(), dw, tol_of<T>(), what + " dw");
  check_close(ddb.download(), db, tol_of<T>(), what + " db");
}

}  // namespace
#endif

TEST_CASE("cuda layer_norm and group_norm forward and backward match the CPU", "[cuda][kernels][norm]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  for (bool affine : {false, true}) {
    for (auto rm : {std::pair<int64_t, int64_t>{1, 1}, {7, 1023}, {33, 7}, {4, 2000}, {300, 64}}) {
      run_layer_norm<float>(rm.first, rm.second, affine, 0.0);
      run_layer_norm<double>(rm.first, rm.second, affine, 0.0);
    }
    run_layer_norm<float>(5, 257, affine, 100.0);
    for (auto c : {std::array<int64_t, 4>{2, 6, 7, 3}, {1, 4, 1, 1}, {3, 32, 65, 8}, {2, 8, 1023, 2}, {5, 3, 1, 3}}) {
      run_group_norm<float>(c[0], c[1], c[2], c[3], affine);
      run_group_norm<double>(c[0], c[1], c[2], c[3], affine);
    }
  }
#endif
}

TEST_CASE("cuda avg_pool2d and adaptive_avg_pool2d match the CPU / PyTorch's windows", "[cuda][kernels][pool]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  struct P { int64_t N, C, H, W, k, s, p; bool ceil, cip; };
  const P cases[] = {{2, 3, 7, 7, 3, 2, 1, false, true}, {1, 2, 8, 9, 2, 2, 0, false, true},
                     {2, 1, 5, 6, 3, 2, 1, true, false}, {1, 1, 1, 1, 1, 1, 0, false, true},
                     {1, 3, 33, 31, 4, 3, 2, true, true}, {1, 1, 6, 6, 2, 3, 1, true, false},
                     {3, 2, 10, 4, 5, 1, 2, false, false}};
  for (const P& c : cases) {
    const auto s = cpu::pool2d_shape(c.N, c.C, c.H, c.W, c.k, c.k, c.s, c.s, c.p, c.p, c.ceil, c.cip);
    const std::string what = "avg_pool2d H " + std::to_string(c.H) + " W " + std::to_string(c.W) + " k " +
                             std::to_string(c.k) + " s " + std::to_string(c.s) + " p " + std::to_string(c.p) +
                             (c.ceil ? " ceil" : "") + (c.cip ? " count_include_pad" : "");
    const size_t xn = static_cast<size_t>(c.N * c.C * c.H * c.W), yn = static_cast<size_t>(c.N * c.C * s.Ho * s.Wo);
    const auto x = random_vec<float>(xn, 111), dy = random_vec<float>(yn, 112);
    std::vector<float> y(yn), dx(xn);
    cpu::avg_pool2d_forward<float>(s, x.data(), y.data());
    cpu::avg_pool2d_backward<float>(s, dy.data(), dx.data());
    DeviceBuffer<float> dxin(x), dyout(yn), dgrad(dy), ddx(xn);
    gpu::avg_pool2d_forward<float>(s, dxin.get(), dyout.get(), kStream);
    check_close(dyout.download(), y, tol_of<float>(), what + " forward");
    gpu::avg_pool2d_backward<float>(s, dgrad.get(), ddx.get(), kStream);
    check_close(ddx.download(), dx, tol_of<float>(), what + " backward");
  }
  // Adaptive: PyTorch's windows [floor(o*I/O), ceil((o+1)*I/O)), written out here as loops.
  struct A { int64_t N, C, H, W, Ho, Wo; };
  for (const A& c : {A{2, 3, 7, 7, 1, 1}, A{1, 2, 10, 9, 3, 4}, A{1, 1, 5, 5, 7, 7}, A{2, 2, 33, 17, 5, 3}}) {
    const int64_t planes = c.N * c.C;
    const auto x = random_vec<double>(static_cast<size_t>(planes * c.H * c.W), 121);
    const auto dy = random_vec<double>(static_cast<size_t>(planes * c.Ho * c.Wo), 122);
    std::vector<double> y(dy.size()), dx(x.size(), 0.0);
    for (int64_t pl = 0; pl < planes; ++pl)
      for (int64_t oh = 0; oh < c.Ho; ++oh)
        for (int64_t ow = 0; ow < c.Wo; ++ow) {
          const int64_t h0 = oh * c.H / c.Ho, h1 = ((oh + 1) * c.H + c.Ho - 1) / c.Ho;
          const int64_t w0 = ow * c.W / c.Wo, w1 = ((ow + 1) * c.W + c.Wo - 1) / c.Wo;
          const double cnt = static_cast<double>((h1 - h0) * (w1 - w0));
          double sum = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) sum += x[static_cast<size_t>((pl * c.H + ih) * c.W + iw)];
          const size_t o = static_cast<size_t>((pl * c.Ho + oh) * c.Wo + ow);
          y[o] = sum / cnt;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) dx[static_cast<size_t>((pl * c.H + ih) * c.W + iw)] += dy[o] / cnt;
        }
    const std::string what = "adaptive_avg_pool2d (" + std::to_string(c.H) + ", " + std::to_string(c.W) + ") -> (" +
                             std::to_string(c.Ho) + ", " + std::to_string(c.Wo) + ")";
    DeviceBuffer<double> dxin(x), dyout(y.size()), dgrad(dy), ddx(dx.size());
    gpu::adaptive_avg_pool2d_forward<double>(c.N, c.C, c.H, c.W, c.Ho, c.Wo, dxin.get(), dyout.get(), kStream);
    check_close(dyout.download(), y, tol_of<double>(), what + " forward");
    gpu::adaptive_avg_pool2d_backward<double>(c.N, c.C, c.H, c.W, c.Ho, c.Wo, dgrad.get(), ddx.get(), kStream);
    check_close(ddx.download(), dx, tol_of<double>(), what + " backward");
  }
#endif
}

#ifdef PEFT_WITH_CUDA
namespace {

// Several steps of the GPU step against core/optim.cpp's Adam / AdamW on CPU tensors. 30
// tensors (more than one launch's kAdamTensorsPerLaunch); on the first step only every other
// tensor has a gradient, so the tensors' step counts (and bias corrections) differ after it.
template <class T>
void run_adam(bool decoupled) {
  const std::vector<int64_t> sizes{1, 7, 1023, 70001, 3, 1024, 1025, 5, 2, 9, 4096, 33, 1, 1, 100, 7, 8, 255,
                                   256, 257, 6, 12, 77, 1000, 2048, 31, 64, 65, 11, 4};
  const peft::DType dt = sizeof(T) == 4 ? peft::DType::F32 : peft::DType::F64;
  std::vector<peft::Tensor> params;
  std::vector<std::unique_ptr<DeviceBuffer<T>>> dp, dm, dv, dg;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto w = random_vec<T>(static_cast<size_t>(sizes[i]), 140 + i);
    params.push_back(peft::Tensor::from_vector(std::vector<T>(w), {sizes[i]}).to(dt));
    params.back().requires_grad_(true);
    dp.push_back(std::make_unique<DeviceBuffer<T>>(w));
    dm.push_back(std::make_unique<DeviceBuffer<T>>(std::vector<T>(w.size(), T(0))));
    dv.push_back(std::make_unique<DeviceBuffer<T>>(std::vector<T>(w.size(), T(0))));
    dg.push_back(std::make_unique<DeviceBuffer<T>>(w.size()));
  }
  gpu::AdamHyper h;
  h.lr = 2e-3;
  h.weight_decay = 0.05;
  h.decoupled = decoupled;
  std::unique_ptr<peft::optim::Optimizer> opt;
  if (decoupled)
    opt = std::make_unique<peft::optim::AdamW>(
        params, peft::optim::AdamWOptions{h.lr, h.beta1, h.beta2, h.eps, h.weight_decay});
  else
    opt = std::make_unique<peft::optim::Adam>(
        params, peft::optim::AdamOptions{h.lr, h.beta1, h.beta2, h.eps, h.weight_decay});
  std::vector<int64_t> steps(sizes.size(), 0);
  for (int step = 0; step < 4; ++step) {
    std::vector<gpu::AdamTensor<T>> list;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (step == 0 && i % 2 == 1) {
        params[i].zero_grad();
        continue;
      }
      const auto g = random_vec<T>(static_cast<size_t>(sizes[i]), 1000 * step + i);
      params[i].set_grad(peft::Tensor::from_vector(std::vector<T>(g), {sizes[i]}).to(dt));
      dg[i]->upload(g);
      list.push_back({dp[i]->get(), dg[i]->get(), dm[i]->get(), dv[i]->get(), sizes[i], ++steps[i]});
    }
    opt->step();
    gpu::adam_step<T>(list, h, kStream);
  }
  const auto state = opt->state_dict();
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string what = std::string(decoupled ? "AdamW" : "Adam") + " tensor " + std::to_string(i) + " (n " +
                             std::to_string(sizes[i]) + ")";
    auto host = [](const peft::Tensor& t) {
      const peft::Tensor c = t.contiguous();
      return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
    };
    check_close(dp[i]->download(), host(params[i]), tol_of<T>(), what + " param");
    check_close(dm[i]->download(), host(state.at(std::to_string(i) + ".exp_avg")), tol_of<T>(), what + " exp_avg");
    check_close(dv[i]->download(), host(state.at(std::to_string(i) + ".exp_avg_sq")), tol_of<T>(),
                what + " exp_avg_sq");
  }
}

}  // namespace
#endif

TEST_CASE("cuda multi-tensor Adam / AdamW step matches core/optim.cpp", "[cuda][kernels][optim]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  run_adam<float>(true);
  run_adam<float>(false);
  run_adam<double>(true);
#endif
}

// ---------------------------------------------------------------------------- lstm_cell

#ifdef PEFT_WITH_CUDA
namespace {

// Forward and backward of the fused cell on poisoned GPU outputs, with every optional input
// present (full) or absent (gates_h, c_prev, dh or dc null; dc_prev not wanted).
template <class T>
void run_lstm_cell(int64_t B, int64_t H, bool full) {
  const std::string what = "lstm_cell (" + std::to_string(B) + ", " + std::to_string(H) + ")" + (full ? "" : " nulls");
  const size_t ng = static_cast<size_t>(B * 4 * H), ns = static_cast<size_t>(B * H);
  const auto gx = random_vec<T>(ng, 111), gh = random_vec<T>(ng, 112), cp = random_vec<T>(ns, 113);
  const auto dh = random_vec<T>(ns, 114), dc = random_vec<T>(ns, 115);
  std::vector<T> h(ns), c(ns), act(ng), tc(ns), dg(ng), dcp = poisoned<T>(ns);
  cpu::lstm_cell_forward<T>(B, H, gx.data(), full ? gh.data() : nullptr, full ? cp.data() : nullptr, h.data(), c.data(),
                            act.data(), tc.data());
  cpu::lstm_cell_backward<T>(B, H, act.data(), tc.data(), full ? cp.data() : nullptr, dh.data(),
                             full ? dc.data() : nullptr, dg.data(), full ? dcp.data() : nullptr);
  DeviceBuffer<T> dgx(gx), dgh(gh), dcpin(cp), ddh(dh), ddc(dc), dhout(ns), dcout(ns), dact(ng), dtc(ns), ddg(ng),
      ddcp(ns);
  gpu::lstm_cell_forward<T>(B, H, dgx.get(), full ? dgh.get() : nullptr, full ? dcpin.get() : nullptr, dhout.get(),
                            dcout.get(), dact.get(), dtc.get(), kStream);
  check_close(dhout.download(), h, tol_of<T>(), what + " h");
  check_close(dcout.download(), c, tol_of<T>(), what + " c");
  check_close(dact.download(), act, tol_of<T>(), what + " gates");
  check_close(dtc.download(), tc, tol_of<T>(), what + " tanh(c)");
  dact.upload(act);  // backward from the CPU's forward: each pass is compared on its own
  dtc.upload(tc);
  gpu::lstm_cell_backward<T>(B, H, dact.get(), dtc.get(), full ? dcpin.get() : nullptr, ddh.get(),
                             full ? ddc.get() : nullptr, ddg.get(), full ? ddcp.get() : nullptr, kStream);
  check_close(ddg.download(), dg, tol_of<T>(), what + " dgates");
  check_close(ddcp.download(), dcp, tol_of<T>(), what + (full ? " dc_prev" : " dc_prev untouched"));
}

}  // namespace
#endif

TEST_CASE("cuda fused lstm_cell forward and backward match the CPU, with and without the optional inputs",
          "[cuda][kernels][lstm]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  for (bool full : {true, false}) {
    for (auto bh : {std::pair<int64_t, int64_t>{1, 1}, {3, 6}, {16, 128}, {5, 333}, {700, 97}}) {
      run_lstm_cell<float>(bh.first, bh.second, full);
      run_lstm_cell<double>(bh.first, bh.second, full);
    }
  }
  CHECK_THROWS_WITH(gpu::lstm_cell_forward<float>(-1, 4, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                  kStream),
                    Catch::Matchers::Contains("cuda lstm_cell_forward: negative size"));
  CHECK_THROWS_WITH(gpu::lstm_cell_backward<float>(2, 4, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                   kStream),
                    Catch::Matchers::Contains("null device pointer"));
#endif
}
