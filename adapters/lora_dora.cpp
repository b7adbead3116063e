#include "adapters/lora_dora.h"

#include "core/ops.h"

namespace peft {

std::string DoraLayer::type_name() const {
  switch (kind_) {
    case Kind::Linear: return "lora.dora.DoraLinearLayer";
    case Kind::Embedding: return "lora.dora.DoraEmbeddingLayer";
    case Kind::Conv2d: return "lora.dora.DoraConv2dLayer";
    case Kind::Conv1d: return "lora.dora.DoraConv1dLayer";
    case Kind::Conv3d: return "lora.dora.DoraConv3dLayer";
  }
  return "lora.dora.DoraLayer";
}

Tensor DoraLayer::weight_norm(const Tensor& W, const Tensor& lora_weight, double scaling) const {
  NoGradGuard g;  // the norm is a constant for autograd in every use
  switch (kind_) {
    case Kind::Linear: {
      PEFT_CHECK(W.dim() == 2 && lora_weight.shape() == W.shape(), "DoRA (Linear): weight ", shape_str(W.shape()),
                 " and lora weight ", shape_str(lora_weight.shape()), " must be (out, in) alike");
      Tensor v = add(W, mul(lora_weight, scaling));
      return sqrt(sum(mul(v, v), {1}));
    }
    case Kind::Embedding: {
      PEFT_CHECK(W.dim() == 2 && lora_weight.dim() == 2 && lora_weight.size(0) == W.size(1) &&
                     lora_weight.size(1) == W.size(0),
                 "DoRA (Embedding): weight ", shape_str(W.shape()), " and lora weight ", shape_str(lora_weight.shape()),
                 " must be (num, dim) and (dim, num)");
      Tensor v = add(W.t(), mul(lora_weight, scaling));  // PEFT: fan_in_fan_out=True
      return sqrt(sum(mul(v, v), {1}));
    }
    case Kind::Conv1d:
    case Kind::Conv2d:
    case Kind::Conv3d: {
      const int64_t rank = kind_ == Kind::Conv1d ? 3 : kind_ == Kind::Conv2d ? 4 : 5;
      PEFT_CHECK(W.dim() == rank && lora_weight.shape() == W.shape(), "DoRA (Conv", rank - 2, "d): weight ",
                 shape_str(W.shape()), " and lora weight ", shape_str(lora_weight.shape()), " must have the same ",
                 rank, "-D shape");
      Tensor v = add(W, mul(lora_weight, scaling));
      // PEFT: norm over every dim but 0 with keepdim, then transpose(1, 0) → (1, out, 1, ...).
      std::vector<int64_t> dims;
      Shape shape{1, -1};
      for (int64_t d = 1; d < rank; ++d) dims.push_back(d);
      for (int64_t d = 2; d < rank; ++d) shape.push_back(1);
      return sqrt(sum(mul(v, v), dims)).reshape(shape);
    }
  }
  PEFT_ERROR("DoRA: unknown layer kind");
}

void DoraLayer::init(const Tensor& W, const Tensor& lora_weight, double scaling) {
  PEFT_CHECK(!has_param("weight"), type_name(), ": magnitude already initialised");
  register_parameter("weight", weight_norm(W, lora_weight, scaling).contiguous().clone(), true);
}

Tensor DoraLayer::scale(const Tensor& W, const Tensor& lora_weight, double scaling) {
  return div(magnitude(), weight_norm(W, lora_weight, scaling));
}

Tensor DoraLayer::factor_for_weight(const Tensor& factor) const {
  switch (kind_) {
    case Kind::Linear: return factor.reshape({-1, 1});
    case Kind::Embedding: return factor.reshape({1, -1});
    case Kind::Conv2d: return factor.reshape({-1, 1, 1, 1});
    case Kind::Conv1d: return factor.reshape({-1, 1, 1});
    case Kind::Conv3d: return factor.reshape({-1, 1, 1, 1, 1});
  }
  PEFT_ERROR("DoRA: unknown layer kind");
}

Tensor DoraLayer::merged_weight(const Tensor& W, const Tensor& delta) {
  NoGradGuard g;
  // The delta already carries the scaling, so the norm uses scaling 1 (as PEFT).
  const Tensor lora_layout = kind_ == Kind::Embedding ? delta.t() : delta;
  cached_norm_ = weight_norm(W, lora_layout, 1.0);
  Tensor factor = div(magnitude().detach(), cached_norm_);
  return mul(factor_for_weight(factor), add(W.detach(), delta));
}

Tensor DoraLayer::unmerged_weight(const Tensor& W_merged, const Tensor& delta) {
  PEFT_CHECK(cached_norm_.defined(), type_name(), ": unmerge without a preceding merge (no cached weight norm)");
  NoGradGuard g;
  Tensor factor = div(magnitude().detach(), cached_norm_);
  cached_norm_ = Tensor();
  return sub(div(W_merged.detach(), factor_for_weight(factor)), delta);
}

Tensor dora_effective_delta(MergePhase phase, DoraLayer& dora, const Tensor& W, const Tensor& delta) {
  NoGradGuard g;
  switch (phase) {
    case MergePhase::None: return delta;
    case MergePhase::Merging: return sub(dora.merged_weight(W, delta), W.detach());
    case MergePhase::Unmerging: return sub(W.detach(), dora.unmerged_weight(W, delta));
  }
  return delta;
}

}  // namespace peft
