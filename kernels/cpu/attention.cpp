// kernels/cpu/attention.cpp — see attention.h. Each block of query rows: S = scale·Q·Kᵀ
// (+ mask, causal cut) → row softmax kept as P in the scratch → out = P·V; backward per
// key/value head: P again from lse, dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ O)),
// dQ = scale·dS·K, dK += scale·dSᵀ·Q.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/eigen.h"

namespace peft::kernels::cpu {

namespace {

constexpr int64_t kQueryBlock = 128;

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMap = Eigen::Map<const Mat<T>>;
template <class T>
using MMap = Eigen::Map<Mat<T>>;

// S (n × Tk) = scale · q[i0 : i0+n] · kᵀ + mask, with the causal cut set to -inf.
template <class T>
void block_logits(const SdpaShape& s, const T* qh, const T* kh, const SdpaMask<T>& mask, int64_t b, int64_t h,
                  int64_t i0, int64_t n, bool causal, int64_t causal_offset, T scale, Mat<T>& S) {
  S.resize(n, s.Tk);
  S.noalias() = scale * (CMap<T>(qh + i0 * s.D, n, s.D) * CMap<T>(kh, s.Tk, s.D).transpose());
  if (mask.data) {
    for (int64_t r = 0; r < n; ++r) {
      const T* m = mask.data + b * mask.sb + h * mask.sh + (i0 + r) * mask.si;
      T* row = S.data() + r * s.Tk;
      if (mask.sj == 1) {
        for (int64_t j = 0; j < s.Tk; ++j) row[j] += m[j];
      } else {
        for (int64_t j = 0; j < s.Tk; ++j) row[j] += m[j * mask.sj];
      }
    }
  }
  if (causal) {
    const T ninf = -std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < n; ++r) {
      const int64_t first_cut = std::max<int64_t>(0, i0 + r + causal_offset + 1);
      T* row = S.data() + r * s.Tk;
      for (int64_t j = first_cut; j < s.Tk; ++j) row[j] = ninf;
    }
  }
}

int64_t blocks_of(int64_t Tq) { return (Tq + kQueryBlock - 1) / kQueryBlock; }

}  // namespace

template <class T>
void sdpa_forward(const SdpaShape& s, const T* q, const T* k, const T* v, const SdpaMask<T>& mask, bool causal,
                  int64_t causal_offset, T scale, T* out, T* lse) {
  const int64_t group = s.H / s.Hkv, nb = blocks_of(s.Tq), items = s.B * s.H * nb;
  const T ninf = -std::numeric_limits<T>::infinity();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (items > 1 && s.Tq * s.Tk * (s.D + s.Dv) * s.B * s.H > (1 << 15))
#endif
  for (int64_t it = 0; it < items; ++it) {
    const int64_t bh = it / nb, blk = it % nb, b = bh / s.H, h = bh % s.H, hk = b * s.Hkv + h / group;
    const int64_t i0 = blk * kQueryBlock, n = std::min(kQueryBlock, s.Tq - i0);
    Mat<T> S;
    block_logits(s, q + bh * s.Tq * s.D, k + hk * s.Tk * s.D, mask, b, h, i0, n, causal, causal_offset, scale, S);
    T* lrow = lse + bh * s.Tq + i0;
    for (int64_t r = 0; r < n; ++r) {
      auto row = S.row(r).array();
      const T mx = s.Tk ? row.maxCoeff() : ninf;
      if (mx == ninf) {  // every key dropped: 0, not softmax's 0/0
        row.setZero();
        lrow[r] = ninf;
        continue;
      }
      row = (row - mx).exp();
      const T l = row.sum();
      row /= l;
      lrow[r] = mx + std::log(l);
    }
    MMap<T>(out + (bh * s.Tq + i0) * s.Dv, n, s.Dv).noalias() = S * CMap<T>(v + hk * s.Tk * s.Dv, s.Tk, s.Dv);
  }
}

template <class T>
void sdpa_backward(const SdpaShape& s, const T* q, const T* k, const T* v, const SdpaMask<T>& mask, bool causal,
                   int64_t causal_offset, T scale, const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv) {
  const int64_t group = s.H / s.Hkv, nb = blocks_of(s.Tq), items = s.B * s.Hkv;
  const T ninf = -std::numeric_limits<T>::infinity();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (items > 1 && s.Tq * s.Tk * (s.D + s.Dv) * s.B * s.H > (1 << 14))
#endif
  for (int64_t it = 0; it < items; ++it) {
    const int64_t b = it / s.Hkv, hk = it;  // hk: flat (b, kv head) index
    CMap<T> K(k + hk * s.Tk * s.D, s.Tk, s.D), V(v + hk * s.Tk * s.Dv, s.Tk, s.Dv);
    Mat<T> dK = Mat<T>::Zero(s.Tk, s.D), dV = Mat<T>::Zero(s.Tk, s.Dv), S, dP;
    for (int64_t g = 0; g < group; ++g) {
      const int64_t h = (it % s.Hkv) * group + g, bh = b * s.H + h;
      const T* qh = q + bh * s.Tq * s.D;
      for (int64_t blk = 0; blk < nb; ++blk) {
        const int64_t i0 = blk * kQueryBlock, n = std::min(kQueryBlock, s.Tq - i0);
        block_logits(s, qh, K.data(), mask, b, h, i0, n, causal, causal_offset, scale, S);
        const T* lrow = lse + bh * s.Tq + i0;
        for (int64_t r = 0; r < n; ++r) {
          if (lrow[r] == ninf) S.row(r).setZero();
          else S.row(r) = (S.row(r).array() - lrow[r]).exp();
        }
        CMap<T> dO(dout + (bh * s.Tq + i0) * s.Dv, n, s.Dv), O(out + (bh * s.Tq + i0) * s.Dv, n, s.Dv);
        if (dv) dV.noalias() += S.transpose() * dO;
        if (!dq && !dk) continue;
        dP.resize(n, s.Tk);
        dP.noalias() = dO * V.transpose();
        const Eigen::Matrix<T, Eigen::Dynamic, 1> Di = (dO.array() * O.array()).rowwise().sum();
        dP = (S.array() * (dP.array().colwise() - Di.array())).matrix();  // dS
        if (dq) MMap<T>(dq + (bh * s.Tq + i0) * s.D, n, s.D).noalias() = scale * (dP * K);
        if (dk) dK.noalias() += scale * (dP.transpose() * CMap<T>(qh + i0 * s.D, n, s.D));
      }
    }
    if (dk) MMap<T>(dk + hk * s.Tk * s.D, s.Tk, s.D) = dK;
    if (dv) MMap<T>(dv + hk * s.Tk * s.Dv, s.Tk, s.Dv) = dV;
  }
}

#define PEFT_SDPA_INSTANTIATE(T)                                                                                     \
  template void sdpa_forward<T>(const SdpaShape&, const T*, const T*, const T*, const SdpaMask<T>&, bool, int64_t, T, \
                                T*, T*);                                                                             \
  template void sdpa_backward<T>(const SdpaShape&, const T*, const T*, const T*, const SdpaMask<T>&, bool, int64_t,  \
                                 T, const T*, const T*, const T*, T*, T*, T*);
PEFT_SDPA_INSTANTIATE(float)
PEFT_SDPA_INSTANTIATE(double)
#undef PEFT_SDPA_INSTANTIATE

}  // namespace peft::kernels::cpu
