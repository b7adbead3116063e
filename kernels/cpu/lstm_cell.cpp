// kernels/cpu/lstm_cell.cpp — the fused LSTM cell (see the header). One row (b) at a time, its
// four gate blocks read as four contiguous H-long spans, so the inner loop is unit-stride.
#include "kernels/cpu/lstm_cell.h"

#include <cmath>

namespace peft::kernels::cpu {

namespace {

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

}  // namespace

template <class T>
void lstm_cell_forward(int64_t B, int64_t H, const T* gates_x, const T* gates_h, const T* c_prev, T* h, T* c,
                       T* act, T* tanh_c) {
  for (int64_t b = 0; b < B; ++b) {
    const T* gx = gates_x + b * 4 * H;
    const T* gh = gates_h ? gates_h + b * 4 * H : nullptr;
    T* a = act + b * 4 * H;
    for (int64_t j = 0; j < H; ++j) {
      const T zi = gx[j] + (gh ? gh[j] : T(0)), zf = gx[H + j] + (gh ? gh[H + j] : T(0));
      const T zg = gx[2 * H + j] + (gh ? gh[2 * H + j] : T(0)), zo = gx[3 * H + j] + (gh ? gh[3 * H + j] : T(0));
      const T i = sigmoid(zi), f = sigmoid(zf), g = std::tanh(zg), o = sigmoid(zo);
      const T cp = c_prev ? c_prev[b * H + j] : T(0);
      const T cn = f * cp + i * g;
      a[j] = i;
      a[H + j] = f;
      a[2 * H + j] = g;
      a[3 * H + j] = o;
      const T tc = std::tanh(cn);
      c[b * H + j] = cn;
      tanh_c[b * H + j] = tc;
      h[b * H + j] = o * tc;
    }
  }
}

template <class T>
void lstm_cell_backward(int64_t B, int64_t H, const T* act, const T* tanh_c, const T* c_prev, const T* dh,
                        const T* dc, T* dgates, T* dc_prev) {
  for (int64_t b = 0; b < B; ++b) {
    const T* a = act + b * 4 * H;
    T* dg = dgates + b * 4 * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
      const T tc = tanh_c[k];
      const T dhk = dh ? dh[k] : T(0);
      // The cell's total gradient: its own, plus the path through h = o·tanh(c).
      const T dct = (dc ? dc[k] : T(0)) + dhk * o * (T(1) - tc * tc);
      const T cp = c_prev ? c_prev[k] : T(0);
      dg[j] = dct * g * i * (T(1) - i);
      dg[H + j] = dct * cp * f * (T(1) - f);
      dg[2 * H + j] = dct * i * (T(1) - g * g);
      dg[3 * H + j] = dhk * tc * o * (T(1) - o);
      if (dc_prev) dc_prev[k] = dct * f;
    }
  }
}

template void lstm_cell_forward<float>(int64_t, int64_t, const float*, const float*, const float*, float*, float*,
                                       float*, float*);
template void lstm_cell_forward<double>(int64_t, int64_t, const double*, const double*, const double*, double*,
                                        double*, double*, double*);
template void lstm_cell_backward<float>(int64_t, int64_t, const float*, const float*, const float*, const float*,
                                        const float*, float*, float*);
template void lstm_cell_backward<double>(int64_t, int64_t, const double*, const double*, const double*, const double*,
                                         const double*, double*, double*);

}  // namespace peft::kernels::cpu
