// Embedding: a lookup table of rows, N(0, 1) initialised; the padding row (if any) is zero
// and receives no gradient.
#pragma once
#include <optional>

#include "layers/module.h"

namespace peft::nn {

class Embedding : public Module {
 public:
  PEFT_MODULE_CLONE(Embedding)
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = std::nullopt,
            DType dtype = DType::F32);
  // Shares `weight` (num_embeddings, embedding_dim) as its parameter, without a copy: a tied
  // embedding (transformers' T5 stacks use `shared.weight` as their embed_tokens.weight).
  explicit Embedding(const Tensor& weight, std::optional<int64_t> padding_idx = std::nullopt);
  std::string type_name() const override { return "Embedding"; }
  Tensor forward(const Tensor& ids) override;
  std::string extra_repr() const override;
  int64_t num_embeddings() const { return num_; }
  int64_t embedding_dim() const { return dim_; }
  std::optional<int64_t> padding_idx() const { return padding_idx_; }

 private:
  int64_t num_, dim_;
  std::optional<int64_t> padding_idx_;
};

}  // namespace peft::nn
