// kernels/cuda/ops_bridge.cu — defines core/cuda_ops.h (all but the GEMMs, see gemm.cu): the
// one place where core's type-erased calls (void pointers + DType + Device) become typed kernel
// launches on the device's stream, and where conv2d picks cuDNN or the direct kernels.
//
// Design: every entry point makes the tensor's device current (DeviceGuard: a launch goes to the
// current device, and the stream must belong to it), then switches on the dtype once. Nothing
// here synchronises except embedding's index check, which must read the kernel's error record.
//
// Dtypes: the activation ops (elementwise, reductions, softmax / losses, embedding, norms,
// pooling, conv2d, dropout) take F32, F64 and BF16 (kcu::Bf16 storage, F32 math inside the
// kernels: kernels/cuda/bf16.cuh); the optimizer step takes F32 / F64 only (trainable
// parameters are F32 master weights). F16 is refused outside the GEMMs (gemm.cu).
#include "core/cuda_ops.h"

#include <cstdint>

#include "core/cuda_api.h"
#include "core/error.h"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/conv.cuh"
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/index_check.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/memory.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/pool.cuh"
#include "kernels/cuda/reduce_max.cuh"
#include "kernels/cuda/softmax.cuh"

namespace peft::cuda_ops {

namespace kcu = kernels::cuda;

namespace {

// ---------------------------------------------------------------------------- helpers

using detail::Launch;  // kernels/cuda/launch.cuh

// Runs f(T{}) for F32 / F64; refuses the rest naming the op. For kernels with no BF16 version.
template <class F>
void float_dispatch(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f(float{}); return;
    case DType::F64: f(double{}); return;
    default:
      PEFT_ERROR(op, ": unsupported dtype ", dtype_name(dt), " on CUDA (this op runs in F32 or F64; convert with "
                 ".to(DType::F32))");
  }
}

// Runs f(T{}) for F32 / F64 and f(kcu::Bf16{}) for BF16 (the kernel widens to F32); refuses the
// rest naming the op. A separate function from float_dispatch so a kernel without a Bf16
// instantiation cannot be reached with BF16 data.
template <class F>
void float_bf16_dispatch(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f(float{}); return;
    case DType::F64: f(double{}); return;
    case DType::BF16: f(kcu::Bf16{}); return;
    default:
      PEFT_ERROR(op, ": unsupported dtype ", dtype_name(dt), " on CUDA (F32, F64 or BF16; F16 only in matmul / "
                 "linear; convert with .to(DType::F32) or .to(DType::BF16))");
  }
}

// A host scalar in storage type T (BF16 rounds to nearest even, as core/dtype.cpp).
template <class T> T storage_value(double v) { return static_cast<T>(v); }
template <> kcu::Bf16 storage_value<kcu::Bf16>(double v) { return kcu::Bf16{float_to_bf16(static_cast<float>(v))}; }

template <class T> using acc_t = kcu::acc_t<T>;

template <class T> T* tp(void* p) { return static_cast<T*>(p); }
template <class T> const T* tp(const void* p) { return static_cast<const T*>(p); }

// One device int64 from the caching allocator, for a kernel's bad-index record.
class Scratch {
 public:
  explicit Scratch(Device dev) : dev_(dev), p_(static_cast<int64_t*>(cuda::device_alloc(dev, sizeof(int64_t)))) {}
  ~Scratch() { cuda::device_free(dev_, p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  int64_t* get() const { return p_; }

 private:
  Device dev_;
  int64_t* p_;
};

}  // namespace

// ---------------------------------------------------------------------------- elementwise

void unary(UnaryOp op, const Dims& shape, void* out, const Dims& os, const void* a, const Dims& as, DType dt,
           Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "unary", [&](auto z) {
    using T = decltype(z);
    kcu::unary<T>(op, shape, tp<T>(out), os, tp<T>(a), as, l.stream);
  });
}

void binary(BinaryOp op, const Dims& shape, void* out, const Dims& os, const void* a, const Dims& as, const void* b,
            const Dims& bs, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "binary", [&](auto z) {
    using T = decltype(z);
    kcu::binary<T>(op, shape, tp<T>(out), os, tp<T>(a), as, tp<T>(b), bs, l.stream);
  });
}

void affine(const Dims& shape, void* out, const Dims& os, const void* a, const Dims& as, double alpha, double beta,
            DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "affine", [&](auto z) {
    using T = decltype(z);
    kcu::affine<T>(shape, tp<T>(out), os, tp<T>(a), as, static_cast<acc_t<T>>(alpha), static_cast<acc_t<T>>(beta),
                   l.stream);
  });
}

void pow_scalar(const Dims& shape, void* out, const Dims& os, const void* a, const Dims& as, double p, DType dt,
                Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "pow", [&](auto z) {
    using T = decltype(z);
    kcu::pow_scalar<T>(shape, tp<T>(out), os, tp<T>(a), as, static_cast<acc_t<T>>(p), l.stream);
  });
}

void sum_reduce(const Dims& shape, void* out, const Dims& os, const void* a, const Dims& as, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "sum", [&](auto z) {
    using T = decltype(z);
    kcu::sum_reduce<T>(shape, tp<T>(out), os, tp<T>(a), as, l.stream);
  });
}

void fill(const Dims& shape, void* out, const Dims& os, double value, DType dt, Device dev) {
  Launch l(dev);
  if (dt == DType::I64) {
    kcu::fill<int64_t>(shape, tp<int64_t>(out), os, static_cast<int64_t>(value), l.stream);
    return;
  }
  float_bf16_dispatch(dt, "fill_", [&](auto z) {
    using T = decltype(z);
    kcu::fill<T>(shape, tp<T>(out), os, storage_value<T>(value), l.stream);
  });
}

void copy_convert(const Dims& shape, void* dst, DType ddt, const Dims& ds, const void* src, DType sdt, const Dims& ss,
                  Device dev) {
  Launch l(dev);
  kcu::copy_convert(shape, dst, static_cast<int>(ddt), ds, src, static_cast<int>(sdt), ss, l.stream);
}

// ---------------------------------------------------------------------------- softmax / losses

void softmax_forward(int64_t outer, int64_t D, int64_t inner, const void* x, void* y, bool log, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, log ? "log_softmax" : "softmax", [&](auto z) {
    using T = decltype(z);
    kcu::softmax_forward<T>(outer, D, inner, tp<T>(x), tp<T>(y), log, l.stream);
  });
}

void softmax_backward(int64_t outer, int64_t D, int64_t inner, const void* y, const void* dy, void* dx, bool log,
                      DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "softmax_backward", [&](auto z) {
    using T = decltype(z);
    kcu::softmax_backward<T>(outer, D, inner, tp<T>(y), tp<T>(dy), tp<T>(dx), log, l.stream);
  });
}

void nll_loss_forward(int64_t N, int64_t C, const void* logp, const int64_t* target, int64_t ignore_index, void* per,
                      DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "nll_loss", [&](auto z) {
    using T = decltype(z);
    kcu::nll_loss_forward<T>(N, C, tp<T>(logp), target, ignore_index, tp<T>(per), nullptr, l.stream);
  });
}

void nll_loss_backward(int64_t N, int64_t C, const int64_t* target, int64_t ignore_index, const void* g, bool reduced,
                       double factor, void* dlogp, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "nll_loss_backward", [&](auto z) {
    using T = decltype(z);
    kcu::nll_loss_backward<T>(N, C, target, ignore_index, tp<T>(g), reduced, factor, tp<T>(dlogp), nullptr, l.stream);
  });
}

// ---------------------------------------------------------------------------- embedding

void embedding_forward(int64_t n, int64_t dim, int64_t V, const void* weight, const int64_t* ids, void* out, DType dt,
                       Device dev) {
  Launch l(dev);
  Scratch bad(dev);
  kcu::index_error_reset(bad.get(), l.stream);
  float_bf16_dispatch(dt, "embedding", [&](auto z) {
    using T = decltype(z);
    kcu::embedding_forward<T>(n, dim, V, tp<T>(weight), ids, tp<T>(out), bad.get(), l.stream);
  });
  // Synchronises: a bad id must surface here, as on the CPU, not as zeros in the output.
  kcu::index_error_check(bad.get(), ids, V, "embedding", l.stream);
}

void embedding_backward(int64_t n, int64_t dim, int64_t V, const int64_t* ids, const void* dy, void* dw,
                        int64_t padding_idx, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "embedding_backward", [&](auto z) {
    using T = decltype(z);
    kcu::embedding_backward<T>(n, dim, V, ids, tp<T>(dy), tp<T>(dw), padding_idx, nullptr, l.stream);
  });
}

// ---------------------------------------------------------------------------- norms

void layer_norm_forward(int64_t R, int64_t M, double eps, const void* x, const void* w, const void* b, void* y,
                        void* mean, void* rstd, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "layer_norm", [&](auto z) {
    using T = decltype(z);
    using S = acc_t<T>;  // the statistics' dtype: F32 for BF16 data (core/ops_nn.cpp allocates them so)
    kcu::layer_norm_forward<T>(R, M, static_cast<S>(eps), tp<T>(x), tp<T>(w), tp<T>(b), tp<T>(y), tp<S>(mean),
                               tp<S>(rstd), l.stream);
  });
}

void layer_norm_backward(int64_t R, int64_t M, const void* x, const void* w, const void* mean, const void* rstd,
                         const void* dy, void* dx, void* dw, void* db, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "layer_norm_backward", [&](auto z) {
    using T = decltype(z);
    using S = acc_t<T>;
    kcu::layer_norm_backward<T>(R, M, tp<T>(x), tp<T>(w), tp<S>(mean), tp<S>(rstd), tp<T>(dy), tp<T>(dx), tp<T>(dw),
                                tp<T>(db), l.stream);
  });
}

void group_norm_forward(int64_t N, int64_t C, int64_t S, int64_t G, double eps, const void* x, const void* w,
                        const void* b, void* y, void* mean, void* rstd, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "group_norm", [&](auto z) {
    using T = decltype(z);
    using St = acc_t<T>;  // as in layer_norm_forward
    kcu::group_norm_forward<T>(N, C, S, G, static_cast<St>(eps), tp<T>(x), tp<T>(w), tp<T>(b), tp<T>(y),
                               tp<St>(mean), tp<St>(rstd), l.stream);
  });
}

void group_norm_backward(int64_t N, int64_t C, int64_t S, int64_t G, const void* x, const void* w, const void* mean,
                         const void* rstd, const void* dy, void* dx, void* dw, void* db, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "group_norm_backward", [&](auto z) {
    using T = decltype(z);
    using St = acc_t<T>;
    kcu::group_norm_backward<T>(N, C, S, G, tp<T>(x), tp<T>(w), tp<St>(mean), tp<St>(rstd), tp<T>(dy), tp<T>(dx),
                                tp<T>(dw), tp<T>(db), l.stream);
  });
}

// ---------------------------------------------------------------------------- pooling

void avg_pool2d_forward(const kernels::cpu::Pool2dShape& s, const void* x, void* y, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "avg_pool2d", [&](auto z) {
    using T = decltype(z);
    kcu::avg_pool2d_forward<T>(s, tp<T>(x), tp<T>(y), l.stream);
  });
}

void avg_pool2d_backward(const kernels::cpu::Pool2dShape& s, const void* dy, void* dx, DType dt, Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "avg_pool2d_backward", [&](auto z) {
    using T = decltype(z);
    kcu::avg_pool2d_backward<T>(s, tp<T>(dy), tp<T>(dx), l.stream);
  });
}

// ---------------------------------------------------------------------------- conv2d

// cuDNN first (unless switched off); the direct kernels when it declines (kernels/cuda/conv.cuh).
// The switches are read once per call, so forward and backward of one call agree.
void conv2d_forward(const kernels::cpu::Conv2dShape& s, const void* x, const void* w, const void* b, void* y, DType dt,
                    Device dev) {
  Launch l(dev);
  const bool cudnn = cuda::cudnn_enabled(), tf32 = cuda::allow_tf32();
  float_bf16_dispatch(dt, "conv2d", [&](auto z) {
    using T = decltype(z);
    if (cudnn && kcu::conv2d_forward_cudnn<T>(dev.index, tf32, s, tp<T>(x), tp<T>(w), tp<T>(y), l.stream)) {
      if (b != nullptr) kcu::conv2d_add_bias<T>(s, tp<T>(b), tp<T>(y), l.stream);
      return;
    }
    kcu::conv2d_forward_direct<T>(s, tp<T>(x), tp<T>(w), tp<T>(b), tp<T>(y), l.stream);
  });
}

void conv2d_backward(const kernels::cpu::Conv2dShape& s, const void* x, const void* w, const void* dy, void* dx,
                     void* dw, void* db, DType dt, Device dev) {
  Launch l(dev);
  const bool cudnn = cuda::cudnn_enabled(), tf32 = cuda::allow_tf32();
  float_bf16_dispatch(dt, "conv2d_backward", [&](auto z) {
    using T = decltype(z);
    if (dx != nullptr &&
        !(cudnn && kcu::conv2d_backward_input_cudnn<T>(dev.index, tf32, s, tp<T>(w), tp<T>(dy), tp<T>(dx), l.stream)))
      kcu::conv2d_backward_input_direct<T>(s, tp<T>(w), tp<T>(dy), tp<T>(dx), l.stream);
    if (dw != nullptr &&
        !(cudnn && kcu::conv2d_backward_weight_cudnn<T>(dev.index, tf32, s, tp<T>(x), tp<T>(dy), tp<T>(dw), l.stream)))
      kcu::conv2d_backward_weight_direct<T>(s, tp<T>(x), tp<T>(dy), tp<T>(dw), l.stream);
    if (db != nullptr) kcu::conv2d_backward_bias<T>(s, tp<T>(dy), tp<T>(db), l.stream);
  });
}

// ---------------------------------------------------------------------------- dropout

void dropout_forward(int64_t n, double p, uint64_t seed, uint64_t offset, const void* x, void* y, DType dt,
                     Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "dropout", [&](auto z) {
    using T = decltype(z);
    kcu::dropout_forward<T>(n, p, seed, offset, tp<T>(x), tp<T>(y), l.stream);
  });
}

void dropout_backward(int64_t n, double p, uint64_t seed, uint64_t offset, const void* dy, void* dx, DType dt,
                      Device dev) {
  Launch l(dev);
  float_bf16_dispatch(dt, "dropout_backward", [&](auto z) {
    using T = decltype(z);
    kcu::dropout_backward<T>(n, p, seed, offset, tp<T>(dy), tp<T>(dx), l.stream);
  });
}

// ---------------------------------------------------------------------------- max

// F32 / F64 only: core's max converts BF16 to F32 first (exact), so there is no BF16 kernel.
namespace {
template <class F>
void max_dispatch(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f(float{}); return;
    case DType::F64: f(double{}); return;
    default: PEFT_ERROR(op, ": unsupported dtype ", dtype_name(dt), " on CUDA (F32 or F64; convert with .to(DType::F32))");
  }
}
}  // namespace

void max_lastdim(int64_t nrows, int64_t n, const void* x, void* values, int64_t* indices, DType dt, Device dev) {
  Launch l(dev);
  max_dispatch(dt, "max", [&](auto z) {
    using T = decltype(z);
    kcu::max_lastdim<T>(nrows, n, tp<T>(x), tp<T>(values), indices, l.stream);
  });
}

void max_backward_scatter(int64_t outer, int64_t n, int64_t inner, const int64_t* idx, const void* gv, void* gi,
                          DType dt, Device dev) {
  Launch l(dev);
  max_dispatch(dt, "max_backward", [&](auto z) {
    using T = decltype(z);
    kcu::max_backward_scatter<T>(outer, n, inner, idx, tp<T>(gv), tp<T>(gi), l.stream);
  });
}

// ---------------------------------------------------------------------------- optimizers

void adam_step(const std::vector<AdamParam>& params, double lr, double beta1, double beta2, double eps,
               double weight_decay, bool decoupled, DType dt, Device dev) {
  if (params.empty()) return;
  Launch l(dev);
  kcu::AdamHyper h;
  h.lr = lr;
  h.beta1 = beta1;
  h.beta2 = beta2;
  h.eps = eps;
  h.weight_decay = weight_decay;
  h.decoupled = decoupled;
  float_dispatch(dt, decoupled ? "AdamW" : "Adam", [&](auto z) {
    using T = decltype(z);
    std::vector<kcu::AdamTensor<T>> ts;
    ts.reserve(params.size());
    for (const AdamParam& p : params)
      ts.push_back({tp<T>(p.param), tp<T>(p.grad), tp<T>(p.exp_avg), tp<T>(p.exp_avg_sq), p.n, p.step});
    kcu::adam_step<T>(ts, h, l.stream);
  });
}

}  // namespace peft::cuda_ops
