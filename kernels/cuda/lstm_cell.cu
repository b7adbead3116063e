// kernels/cuda/lstm_cell.cu — the fused LSTM cell (see the header).
//
// One thread per (b, j) element of the (B, H) state, in a grid-stride loop: it reads the four
// gate pre-activations of its column j (at j, H + j, 2H + j, 3H + j of row b, so a warp reads
// four coalesced 32-wide spans) and writes all of its outputs, so nothing is shared between
// threads and no reduction is needed. The step is memory-bound (a few flops per 10-14 loads
// and stores); fusing it replaces the ~12 elementwise launches and their intermediate
// tensors of the op chain it stands for. σ is 1 / (1 + exp(-x)) and tanh the library's, as in
// kernels/cuda/elementwise.cu, so the only GPU/CPU difference is a few ulp of the math library.
#include "kernels/cuda/lstm_cell.cuh"

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::grid_for;
using detail::kThreads;

// ---------------------------------------------------------------------------- kernels

template <class T>
__device__ __forceinline__ T sigmoid(T x) {
  return T(1) / (T(1) + detail::dexp(-x));
}

template <class T>
__global__ void lstm_cell_forward_kernel(int64_t B, int64_t H, const T* __restrict__ gates_x,
                                         const T* __restrict__ gates_h, const T* __restrict__ c_prev,
                                         T* __restrict__ h, T* __restrict__ c, T* __restrict__ act,
                                         T* __restrict__ tanh_c) {
  const int64_t n = B * H, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) {
    const int64_t b = k / H, j = k - b * H, row = b * 4 * H;
    T zi = gates_x[row + j], zf = gates_x[row + H + j], zg = gates_x[row + 2 * H + j], zo = gates_x[row + 3 * H + j];
    if (gates_h != nullptr) {
      zi += gates_h[row + j];
      zf += gates_h[row + H + j];
      zg += gates_h[row + 2 * H + j];
      zo += gates_h[row + 3 * H + j];
    }
    const T i = sigmoid(zi), f = sigmoid(zf), g = detail::dtanh(zg), o = sigmoid(zo);
    const T cp = c_prev != nullptr ? c_prev[k] : T(0);
    const T cn = f * cp + i * g;
    act[row + j] = i;
    act[row + H + j] = f;
    act[row + 2 * H + j] = g;
    act[row + 3 * H + j] = o;
    const T tc = detail::dtanh(cn);
    c[k] = cn;
    tanh_c[k] = tc;
    h[k] = o * tc;
  }
}

template <class T>
__global__ void lstm_cell_backward_kernel(int64_t B, int64_t H, const T* __restrict__ act,
                                          const T* __restrict__ tanh_c,
                                          const T* __restrict__ c_prev, const T* __restrict__ dh,
                                          const T* __restrict__ dc, T* __restrict__ dgates, T* __restrict__ dc_prev) {
  const int64_t n = B * H, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) {
    const int64_t b = k / H, j = k - b * H, row = b * 4 * H;
    const T i = act[row + j], f = act[row + H + j], g = act[row + 2 * H + j], o = act[row + 3 * H + j];
    const T tc = tanh_c[k];
    const T dhk = dh != nullptr ? dh[k] : T(0);
    const T dct = (dc != nullptr ? dc[k] : T(0)) + dhk * o * (T(1) - tc * tc);
    const T cp = c_prev != nullptr ? c_prev[k] : T(0);
    dgates[row + j] = dct * g * i * (T(1) - i);
    dgates[row + H + j] = dct * cp * f * (T(1) - f);
    dgates[row + 2 * H + j] = dct * i * (T(1) - g * g);
    dgates[row + 3 * H + j] = dhk * tc * o * (T(1) - o);
    if (dc_prev != nullptr) dc_prev[k] = dct * f;
  }
}

void check_sizes(const char* op, int64_t B, int64_t H) {
  PEFT_CHECK(B >= 0 && H >= 0, op, ": negative size (B ", B, ", H ", H, ")");
  // 4·B·H indexes the gate buffers in int64; the product must not overflow.
  PEFT_CHECK(H == 0 || B <= INT64_MAX / 4 / H, op, ": B ", B, " × 4H ", 4 * H, " overflows int64");
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

template <class T>
void lstm_cell_forward(int64_t B, int64_t H, const T* gates_x, const T* gates_h, const T* c_prev, T* h, T* c, T* act,
                       T* tanh_c, cudaStream_t stream) {
  check_sizes("cuda lstm_cell_forward", B, H);
  if (B * H == 0) return;
  PEFT_CHECK(gates_x != nullptr && h != nullptr && c != nullptr && act != nullptr && tanh_c != nullptr,
             "cuda lstm_cell_forward: null device pointer (gates_x, h, c, act and tanh_c are required)");
  lstm_cell_forward_kernel<T><<<grid_for(B * H), kThreads, 0, stream>>>(B, H, gates_x, gates_h, c_prev, h, c, act,
                                                                        tanh_c);
  PEFT_KERNEL_CHECK();
}

template <class T>
void lstm_cell_backward(int64_t B, int64_t H, const T* act, const T* tanh_c, const T* c_prev, const T* dh,
                        const T* dc, T* dgates, T* dc_prev, cudaStream_t stream) {
  check_sizes("cuda lstm_cell_backward", B, H);
  if (B * H == 0) return;
  PEFT_CHECK(act != nullptr && tanh_c != nullptr && dgates != nullptr,
             "cuda lstm_cell_backward: null device pointer (act, tanh_c and dgates are required)");
  lstm_cell_backward_kernel<T><<<grid_for(B * H), kThreads, 0, stream>>>(B, H, act, tanh_c, c_prev, dh, dc, dgates,
                                                                         dc_prev);
  PEFT_KERNEL_CHECK();
}

template void lstm_cell_forward<float>(int64_t, int64_t, const float*, const float*, const float*, float*, float*,
                                       float*, float*, cudaStream_t);
template void lstm_cell_forward<double>(int64_t, int64_t, const double*, const double*, const double*, double*,
                                        double*, double*, double*, cudaStream_t);
template void lstm_cell_backward<float>(int64_t, int64_t, const float*, const float*, const float*, const float*,
                                        const float*, float*, float*, cudaStream_t);
template void lstm_cell_backward<double>(int64_t, int64_t, const double*, const double*, const double*,
                                         const double*, const double*, double*, double*, cudaStream_t);

}  // namespace peft::kernels::cuda
