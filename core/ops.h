// The functional ops, each with its backward rule (recorded through core/autograd.h).
// Every op checks its inputs once and throws peft::Error naming the op, shapes and dtypes.
// Inputs of one op must share device and dtype (indices: I64).
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace peft {

class Generator;

// ---- elementwise (broadcasting as NumPy/PyTorch)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor neg(const Tensor& a);
Tensor pow(const Tensor& a, double exponent);
Tensor pow(const Tensor& a, const Tensor& exponent);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor relu(const Tensor& a);
// approximate: "none" (erf form) or "tanh".
Tensor gelu(const Tensor& a, const std::string& approximate = "none");
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
// Sums a broadcast gradient back down to `shape` (used by backward rules).
Tensor sum_to(const Tensor& a, const Shape& shape);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator*(double b, const Tensor& a) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// ---- reductions
Tensor sum(const Tensor& a);
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over one dim: values and I64 indices (first maximum). Gradient flows to the argmax.
std::pair<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& a);  // over everything
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);

// ---- linear algebra
// matmul as torch.matmul: 1-D/2-D/batched with broadcast batch dims.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x·Wᵀ + b; x (..., in), W (out, in), b (out) or undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// The LoRA linear as one op with its own backward (DESIGN.md decision 2):
//   y = x·Wᵀ + b + scale·(dropout(x)·Aᵀ)·Bᵀ
// x (..., in), W (out, in), b (out) or undefined, A (r, in), B (out, r). Dropout (inverted,
// probability dropout_p, only when training) applies to the LoRA branch input only. Backward
// gives dX, dA, dB, db, and dW only when W requires grad. A and B may have another float dtype
// than x, W, b (PEFT's autocast_adapter_dtype: BF16 base, F32 adapters): the LoRA branch then
// runs in the adapters' dtype on x cast to it, is added in the promoted dtype and the sum cast
// back to x's dtype, as PEFT's lora.Linear.forward. Dropout masks: the Generator's uniform
// stream on the CPU, Philox from one Generator draw on CUDA (core/ops_lora.cpp).
Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double scale,
                   double dropout_p = 0, bool training = false, Generator* gen = nullptr);
// Multi-adapter LoRA for serving (Punica's BGMV; the fast path of PEFT's mixed batches): each
// row picks its adapter, out[n] = y[n] + (scales[a]·(x[n]·A[a]ᵀ)·B[a]ᵀ) rounded to y's dtype, for
// a = row_adapter[n]; a = -1 leaves the row as y. x (N, in) in the adapters' dtype, y (N, out);
// A[a] (r_a, in), B[a] (out, r_a): ranks may differ. The weights are read where they are (no
// stacking copy). Inference only: refuses inputs that require grad while grad mode is on.
// dtypes (adapters / y): F32/F32, F64/F64, F32/F64 anywhere; F32/BF16, BF16/BF16 on CUDA.
Tensor lora_multi(const Tensor& y, const Tensor& x, const std::vector<Tensor>& A, const std::vector<Tensor>& B,
                  const std::vector<double>& scales, const std::vector<int64_t>& row_adapter);
// Whether lora_multi takes adapters of dtype `adapters` with outputs of dtype `y` on `device`.
bool lora_multi_supported(DType adapters, DType y, Device device);
// A LoRA 1×1 convolution (stride 1, no padding, groups 1) on NCHW without dropout, as one op:
//   y = conv1x1(x, W) + b + scale·conv1x1(conv1x1(x, A), B)
// x (N, in, H, W), W (out, in), b (out) or undefined, A (r, in), B (out, r); y (N, out, H, W),
// contiguous. The same gradients as lora_linear (dW only when W requires grad). On the CPU per-image
// GEMMs on NCHW; on CUDA lora_linear on the NHWC rows.
Tensor lora_conv1x1(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double scale);

// ---- shape ops
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim = 0);

// ---- activations / normalisation
Tensor softmax(const Tensor& a, int64_t dim);
Tensor log_softmax(const Tensor& a, int64_t dim);
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// Inverted dropout as PyTorch: zero with probability p, scale kept values by 1/(1-p).
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// ---- attention and the decoder-model pieces (core/ops_attention.cpp)
// torch.nn.functional.scaled_dot_product_attention as one op with its own backward:
//   out = softmax(scale·q·kᵀ + mask) · v,   scale defaulting to 1/√D.
// q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv); 3-D inputs are one head. Hkv < H is
// grouped-query attention (torch's enable_gqa; H % Hkv == 0): query head h reads kv head
// h / (H / Hkv). attn_mask, broadcastable to (B, H, Tq, Tk): q's float dtype = added to the
// logits; I64 = boolean, nonzero where a query may attend (torch's bool mask); it gets no
// gradient. is_causal: key j is dropped for query i when j > i (torch's top-left alignment;
// not together with attn_mask). A query row whose keys are all dropped by a boolean mask or the
// causal rule gives 0 on the CPU (torch gives NaN) and the mean of v on CUDA (the composed path
// drops keys with the dtype's lowest value, as transformers' masks do): finite either way.
// CPU (F32, F64): one fused kernel that keeps one log-sum-exp per row, not the probabilities.
// CUDA: batched GEMMs + softmax (composed ops; the fused GPU kernel is still to come).
// dropout_p must be 0 (attention dropout is not implemented; refused rather than ignored).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = Tensor(),
                                    double dropout_p = 0, bool is_causal = false,
                                    std::optional<double> scale = std::nullopt);
// x · sigmoid(x) (torch's F.silu).
Tensor silu(const Tensor& a);
// transformers' RMSNorm (LlamaRMSNorm): in F32, x · rsqrt(mean(x², last dim) + eps), cast back
// to x's dtype, times weight (weight (D) or undefined).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
// Rotary position embedding as transformers' apply_rotary_pos_emb on one tensor:
// x·cos + rotate_half(x)·sin, with rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]).
// x (B, H, T, D); cos, sin (B, T, D) or (1, T, D) (broadcast over heads and batch).
Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin);

// ---- losses. reduction: "mean" | "sum" | "none"
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const std::string& reduction = "mean",
                int64_t ignore_index = -100);
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const std::string& reduction = "mean",
                     int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");

// Rows of `a` along `dim` picked by I64 `index` (1-D), as torch.index_select.
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);

// ---- sparse / conv / pooling
// ids: I64 of any shape; out (..., dim). Rows equal to padding_idx get no gradient (-1: none... use
// std::nullopt for none).
Tensor embedding(const Tensor& weight, const Tensor& ids, std::optional<int64_t> padding_idx = std::nullopt);
struct Conv2dOptions {
  std::pair<int64_t, int64_t> stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
};
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const Conv2dOptions& opt = {});
// conv1d / conv3d (core/ops_conv_nd.cpp): stride / padding / dilation hold one value per spatial
// dimension (empty: 1 / 0 / 1; a single value: for every dimension). Both run through conv2d, so
// they have its CPU and CUDA paths and its gradients.
struct ConvNdOptions {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
};
// x (N, C, L), w (O, C/groups, k) → (N, O, Lo).
Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const ConvNdOptions& opt = {});
// x (N, C, D, H, W), w (O, C/groups, kd, kh, kw) → (N, O, Do, Ho, Wo).
Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const ConvNdOptions& opt = {});
struct AvgPool2dOptions {
  std::pair<int64_t, int64_t> kernel{2, 2}, stride{0, 0} /* 0: = kernel */, padding{0, 0};
  bool ceil_mode = false, count_include_pad = true;
};
Tensor avg_pool2d(const Tensor& x, const AvgPool2dOptions& opt);
// Only output size (1, 1) is supported (global average pooling).
Tensor adaptive_avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> output_size);

// ---- recurrent
struct LSTMState {
  Tensor h, c;  // (num_layers, batch, hidden)
};
struct LSTMResult {
  Tensor output;  // (seq, batch, hidden) or (batch, seq, hidden) when batch_first
  LSTMState state;
};
// params per layer, in PyTorch's order: w_ih (4H, in), w_hh (4H, H), b_ih (4H), b_hh (4H)
// (biases omitted when has_biases is false). Gate order i, f, g, o as PyTorch.
// The layers run on the CPU or on CUDA: per layer one GEMM projects every time step's input,
// then each step is one GEMM for the recurrent product and one lstm_cell.
LSTMResult lstm(const Tensor& input, const std::optional<LSTMState>& hx, const std::vector<Tensor>& params,
                bool has_biases, int64_t num_layers, bool batch_first);
// The elementwise part of one LSTM step as one op, a fused kernel each way on the CPU and on
// CUDA. gates_x (B, 4H): the step's input projection x·W_ihᵀ + b_ih; gates_h (B, 4H):
// h_prev·W_hhᵀ + b_hh, or undefined when there is no recurrent term (h_prev = 0); the two are
// only summed, so a caller may fold both biases into either. c_prev (B, H), or undefined for
// zeros. With z = gates_x + gates_h split into i, f, g, o (PyTorch's order):
//   c = σ(z_f)⊙c_prev + σ(z_i)⊙tanh(z_g);  h = σ(z_o)⊙tanh(c).   Returns {h, c}, each (B, H).
// Saves the activated gates (B, 4H) and tanh(c); backward gives gates_x and gates_h the same gradient.
std::pair<Tensor, Tensor> lstm_cell(const Tensor& gates_x, const Tensor& gates_h, const Tensor& c_prev);

}  // namespace peft
