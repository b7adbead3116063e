// MultiheadAttention: torch.nn.MultiheadAttention for self-attention (query = key = value = x),
// with torch's parameter names (in_proj_weight (3E, E), in_proj_bias (3E), out_proj a
// NonDynamicallyQuantizableLinear) so torch state dicts and PEFT adapters for it load as they are.
// forward returns the attention output only: torch's need_weights=False path. What is not
// implemented is refused by name: kdim / vdim other than embed_dim, add_bias_kv, add_zero_attn,
// attention dropout while training.
#pragma once
#include "layers/linear.h"

namespace peft::nn {

// torch's out_proj class: a Linear under another name (torch keeps it out of dynamic quantization).
class NonDynamicallyQuantizableLinear : public Linear {
 public:
  PEFT_MODULE_CLONE(NonDynamicallyQuantizableLinear)
  using Linear::Linear;
  std::string type_name() const override { return "NonDynamicallyQuantizableLinear"; }
};

class MultiheadAttention : public Module {
 public:
  PEFT_MODULE_CLONE(MultiheadAttention)
  // Initialised as torch: in_proj_weight xavier_uniform, biases 0, out_proj.weight as a Linear's.
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, double dropout = 0.0, bool bias = true,
                     bool add_bias_kv = false, bool add_zero_attn = false, int64_t kdim = 0, int64_t vdim = 0,
                     bool batch_first = false, DType dtype = DType::F32);
  std::string type_name() const override { return "MultiheadAttention"; }
  // x (B, T, E) with batch_first, else (T, B, E); or unbatched (T, E).
  Tensor forward(const Tensor& x) override;
  // The same computation with given projection weights (lora.MultiheadAttention passes merged ones).
  Tensor forward_with(const Tensor& x, const Tensor& in_w, const Tensor& in_b, const Tensor& out_w,
                      const Tensor& out_b);
  int64_t embed_dim() const { return embed_dim_; }
  int64_t num_heads() const { return num_heads_; }
  bool batch_first() const { return batch_first_; }

 private:
  int64_t embed_dim_, num_heads_;
  double dropout_;
  bool batch_first_;
};

}  // namespace peft::nn
