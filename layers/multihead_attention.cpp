#include "layers/multihead_attention.h"

#include <cmath>

#include "core/ops.h"
#include "layers/init.h"

namespace peft::nn {

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads, double dropout, bool bias,
                                       bool add_bias_kv, bool add_zero_attn, int64_t kdim, int64_t vdim,
                                       bool batch_first, DType dtype)
    : embed_dim_(embed_dim), num_heads_(num_heads), dropout_(dropout), batch_first_(batch_first) {
  PEFT_CHECK(embed_dim > 0 && num_heads > 0, "MultiheadAttention: embed_dim and num_heads must be positive, got ",
             embed_dim, " and ", num_heads);
  PEFT_CHECK(embed_dim % num_heads == 0, "embed_dim must be divisible by num_heads");
  PEFT_CHECK((kdim == 0 || kdim == embed_dim) && (vdim == 0 || vdim == embed_dim),
             "MultiheadAttention: kdim / vdim other than embed_dim (separate q/k/v projection weights) are not "
             "implemented");
  PEFT_CHECK(!add_bias_kv && !add_zero_attn, "MultiheadAttention: add_bias_kv and add_zero_attn are not implemented");
  Tensor w = Tensor::empty({3 * embed_dim, embed_dim}, dtype);
  const double bound = std::sqrt(6.0 / static_cast<double>(embed_dim + 3 * embed_dim));  // xavier_uniform
  init::uniform_(w, -bound, bound);
  register_parameter("in_proj_weight", w);
  if (bias) {
    Tensor b = Tensor::zeros({3 * embed_dim}, dtype);
    register_parameter("in_proj_bias", b);
  }
  auto out = std::make_shared<NonDynamicallyQuantizableLinear>(embed_dim, embed_dim, bias, dtype);
  if (bias) {
    Tensor ob = out->bias();
    init::zeros_(ob);
  }
  register_module("out_proj", out);
}

Tensor MultiheadAttention::forward(const Tensor& x) {
  // torch reads out_proj.weight / .bias, never out_proj's forward. An adapter wrapper in its place
  // (PEFT's lora.Linear) exposes its wrapped layer's as "base_layer", as PEFT's weight property does.
  const Module* outp = child("out_proj").get();
  while (!outp->has_param("weight") && outp->has_child("base_layer")) outp = outp->child("base_layer").get();
  const Module& out = *outp;
  return forward_with(x, param("in_proj_weight"), has_param("in_proj_bias") ? param("in_proj_bias") : Tensor(),
                      out.param("weight"), out.has_param("bias") ? out.param("bias") : Tensor());
}

Tensor MultiheadAttention::forward_with(const Tensor& x, const Tensor& in_w, const Tensor& in_b, const Tensor& out_w,
                                        const Tensor& out_b) {
  PEFT_CHECK((x.dim() == 2 || x.dim() == 3) && x.size(-1) == embed_dim_, "MultiheadAttention: input ",
             shape_str(x.shape()), " must be (L, N, E), (N, L, E) with batch_first or (L, E), E=", embed_dim_);
  PEFT_CHECK(dropout_ == 0.0 || !is_training(),
             "MultiheadAttention: attention dropout while training is not implemented (dropout=", dropout_, ")");
  // Work batch-first (N, L, E); torch's default layout is (L, N, E).
  Tensor h = x.dim() == 2 ? x.unsqueeze(0) : (batch_first_ ? x : x.transpose(0, 1));
  const int64_t N = h.size(0), L = h.size(1), H = num_heads_, D = embed_dim_ / num_heads_;
  std::vector<Tensor> qkv = split(linear(h, in_w, in_b), embed_dim_, -1);
  auto heads = [&](const Tensor& t) { return t.reshape({N, L, H, D}).transpose(1, 2); };  // (N, H, L, D)
  Tensor a = scaled_dot_product_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]));
  Tensor y = linear(a.transpose(1, 2).reshape({N, L, embed_dim_}), out_w, out_b);
  if (x.dim() == 2) return y.squeeze(0);
  return batch_first_ ? y : y.transpose(0, 1);
}

}  // namespace peft::nn
