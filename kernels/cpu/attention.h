// kernels/cpu/attention.h — scaled-dot-product attention on the CPU, forward and backward, in the
// memory-efficient form: the forward keeps only each query row's log-sum-exp (not the
// (Tq, Tk) probabilities), the backward recomputes the probabilities from it.
//
// Cost per (batch, head): 2·Tq·Tk·(D + Dv) FLOPs forward and about twice that backward, all in
// Eigen GEMMs on blocks of kQueryBlock query rows (scratch kQueryBlock × Tk per thread, so long
// sequences do not allocate Tq × Tk). Work is split over (batch, head, query block) forward and
// over (batch, key/value head) backward: every query head of a group adds into the same dK / dV
// rows, so one thread owns a group and no two threads write the same gradient row.
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

struct SdpaShape {
  int64_t B = 0, H = 0, Hkv = 0;  // batch, query heads, key/value heads (H % Hkv == 0: grouped-query)
  int64_t Tq = 0, Tk = 0;         // query and key lengths
  int64_t D = 0, Dv = 0;          // head size of q / k and of v
};

// The additive mask as a strided view broadcast to (B, H, Tq, Tk): element (b, h, i, j) is
// data[b·sb + h·sh + i·si + j·sj]; a stride of 0 broadcasts that dim. data null: no mask.
template <class T>
struct SdpaMask {
  const T* data = nullptr;
  int64_t sb = 0, sh = 0, si = 0, sj = 0;
};

// out[b,h,i,:] = Σ_j p_ij · v[b,h/g,j,:], p_i = softmax_j(scale·q_i·k_j + mask_ij), with key j
// dropped when causal and j > i + causal_offset (torch's is_causal is offset 0: top-left
// aligned). A row whose keys are all dropped or -inf gets out = 0 and lse = -inf (no NaN).
// q (B,H,Tq,D), k (B,Hkv,Tk,D), v (B,Hkv,Tk,Dv), out (B,H,Tq,Dv), lse (B,H,Tq): contiguous.
template <class T>
void sdpa_forward(const SdpaShape& s, const T* q, const T* k, const T* v, const SdpaMask<T>& mask, bool causal,
                  int64_t causal_offset, T scale, T* out, T* lse);

// Gradients from the forward's out and lse: dq (B,H,Tq,D), dk (B,Hkv,Tk,D), dv (B,Hkv,Tk,Dv),
// each written with = (any of them may be null when not wanted).
template <class T>
void sdpa_backward(const SdpaShape& s, const T* q, const T* k, const T* v, const SdpaMask<T>& mask, bool causal,
                   int64_t causal_offset, T scale, const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv);

}  // namespace peft::kernels::cpu
