#include "layers/embedding.h"

#include "core/ops.h"
#include "layers/init.h"

namespace peft::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx, DType dtype)
    : num_(num_embeddings), dim_(embedding_dim), padding_idx_(padding_idx) {
  PEFT_CHECK(num_embeddings > 0 && embedding_dim >= 0, "Embedding: invalid sizes (", num_embeddings, ", ", embedding_dim, ")");
  if (padding_idx_) {
    PEFT_CHECK(*padding_idx_ >= -num_ && *padding_idx_ < num_, "Embedding: padding_idx ", *padding_idx_,
               " must be within num_embeddings (", num_, ")");
    if (*padding_idx_ < 0) *padding_idx_ += num_;
  }
  Tensor w = Tensor::empty({num_embeddings, embedding_dim}, dtype);
  init::normal_(w);
  if (padding_idx_) {
    NoGradGuard g;
    w.select(0, *padding_idx_).zero_();
  }
  register_parameter("weight", w);
}

Embedding::Embedding(const Tensor& weight, std::optional<int64_t> padding_idx)
    : num_(weight.defined() && weight.dim() == 2 ? weight.size(0) : 0),
      dim_(weight.defined() && weight.dim() == 2 ? weight.size(1) : 0),
      padding_idx_(padding_idx) {
  PEFT_CHECK(weight.defined() && weight.dim() == 2 && num_ > 0, "Embedding: a shared weight must be 2-D with rows, got ",
             weight.defined() ? shape_str(weight.shape()) : std::string("none"));
  if (padding_idx_) {
    PEFT_CHECK(*padding_idx_ >= -num_ && *padding_idx_ < num_, "Embedding: padding_idx ", *padding_idx_,
               " must be within num_embeddings (", num_, ")");
    if (*padding_idx_ < 0) *padding_idx_ += num_;
  }
  register_parameter("weight", weight, weight.requires_grad());
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(param("weight"), ids, padding_idx_); }

std::string Embedding::extra_repr() const {
  std::string s = std::to_string(num_) + ", " + std::to_string(dim_);
  if (padding_idx_) s += ", padding_idx=" + std::to_string(*padding_idx_);
  return s;
}

}  // namespace peft::nn
