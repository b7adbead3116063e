// PEFT's lora.Embedding: the adapter is a pair of plain parameters in the base class's
// ParameterDicts, lora_embedding_A[name] (r, num_embeddings) and lora_embedding_B[name]
// (embedding_dim, r), so their state-dict keys are "<layer>.lora_embedding_A.<adapter>" (no
// ".weight"). y = base(ids) + s·(Aᵀ[ids])·Bᵀ, the lookup done with the base's padding_idx (that
// column of A gets no gradient). PEFT creates a lora_dropout entry but never applies it; nor do
// we. lora_bias is refused, as in PEFT. DoRA scales base and LoRA outputs per embedding dimension.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "adapters/lora_layer.h"

namespace peft {

class LoraEmbedding : public LoraLayer {
 public:
  LoraEmbedding(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& settings);
  std::string type_name() const override { return "lora.Embedding"; }
  Tensor forward(const Tensor& ids) override;
  // PEFT's init: True and "gaussian" → A = 0, B ~ N(0, 1); False → both N(0, 1).
  void update_layer(const std::string& name, const LoraLayerSettings& settings) override;
  // s·(B·A)ᵀ, (num_embeddings, embedding_dim).
  Tensor get_delta_weight(const std::string& name) const override;

 protected:
  // PEFT's Embedding._mixed_batch_forward term: embed(ids, Aᵀ)·Bᵀ·s.
  Tensor adapter_branch(const Tensor& ids, const std::string& name) override;

 private:
  // F.embedding(ids, table) with the base layer's padding_idx (PEFT's _embed).
  Tensor embed(const Tensor& ids, const Tensor& table) const;
};

}  // namespace peft
