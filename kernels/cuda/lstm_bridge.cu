// kernels/cuda/lstm_bridge.cu — defines the lstm_cell entry points of core/cuda_ops.h: core's
// type-erased call (void pointers + DType + Device) becomes a typed launch on the device's
// stream, as kernels/cuda/ops_bridge.cu does for the other op families. A file of its own so
// the LSTM's dtype list (F32 / F64: no reduced-precision cell) does not follow the shared
// float_dispatch of ops_bridge.cu when that one grows.
#include <cstdint>

#include "core/cuda_ops.h"
#include "core/error.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/lstm_cell.cuh"

namespace peft::cuda_ops {

namespace {

using detail::Launch;  // kernels/cuda/launch.cuh

template <class F>
void lstm_dispatch(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f(float{}); return;
    case DType::F64: f(double{}); return;
    default:
      PEFT_ERROR(op, ": unsupported dtype ", dtype_name(dt), " on CUDA (F32 or F64; convert with .to(DType::F32))");
  }
}

template <class T> T* tp(void* p) { return static_cast<T*>(p); }
template <class T> const T* tp(const void* p) { return static_cast<const T*>(p); }

}  // namespace

void lstm_cell_forward(int64_t B, int64_t H, const void* gates_x, const void* gates_h, const void* c_prev, void* h,
                       void* c, void* act, void* tanh_c, DType dt, Device dev) {
  Launch l(dev);
  lstm_dispatch(dt, "lstm_cell", [&](auto z) {
    using T = decltype(z);
    kernels::cuda::lstm_cell_forward<T>(B, H, tp<T>(gates_x), tp<T>(gates_h), tp<T>(c_prev), tp<T>(h), tp<T>(c),
                                        tp<T>(act), tp<T>(tanh_c), l.stream);
  });
}

void lstm_cell_backward(int64_t B, int64_t H, const void* act, const void* tanh_c, const void* c_prev, const void* dh,
                        const void* dc, void* dgates, void* dc_prev, DType dt, Device dev) {
  Launch l(dev);
  lstm_dispatch(dt, "lstm_cell_backward", [&](auto z) {
    using T = decltype(z);
    kernels::cuda::lstm_cell_backward<T>(B, H, tp<T>(act), tp<T>(tanh_c), tp<T>(c_prev), tp<T>(dh), tp<T>(dc),
                                         tp<T>(dgates), tp<T>(dc_prev), l.stream);
  });
}

}  // namespace peft::cuda_ops
