// add_weighted_adapter: a new adapter combined from existing ones — PEFT's
// LoraModel.add_weighted_adapter with every combination type of PEFT 0.21.2:
//   "linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
//   "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd".
// The non-"svd" merges combine the A and B factors separately (weights √|w·s| with the sign on
// A); the "*_svd" ones merge the full deltas s·B·A and factor the result with a truncated SVD.
// combine_lora_factors() is the per-layer step on bare tensors, shared with `peft combine`.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "adapters/lora_model.h"
#include "adapters/merge_utils.h"

namespace peft {

struct WeightedAdapterOptions {
  std::string combination_type = "svd";
  // "*svd": the rank kept (default, and PEFT's for 0: the largest rank among the inputs).
  std::optional<int64_t> svd_rank;
  // "*svd": clamp both factors to ±(this quantile of all their values), in [0, 1].
  std::optional<double> svd_clamp;
  // PEFT's torch.linalg.svd flag. The kept singular vectors are the same either way, so the
  // result is too; a rank above min(fan_out, fan_in) is zero-padded (PEFT's factors would not
  // fit the new adapter's shapes there).
  bool svd_full_matrices = true;
  // ties / dare_* / magnitude_prune (and their _svd forms): the fraction of values kept.
  std::optional<double> density;
  // ties / dare_ties (and _svd): "total" or "frequency".
  std::string majority_sign_method = "total";
  // DARE's Bernoulli masks: drawn from `generator` (default: the global one) unless
  // `random_mask` is set. Masks are drawn layer by layer in the model's module order, for the
  // non-svd types A's then B's, adapter by adapter (PEFT's order).
  Generator* generator = nullptr;
  merging::RandomMask random_mask;
};

// Adds adapter `new_name` to `model` from `adapters` weighted by `weights`. The new adapter
// is frozen and not active (as PEFT). An existing `new_name` is left as it is (PEFT returns
// silently). With a single adapter the combination is "linear" whatever was asked (PEFT).
// Options that do not apply to the requested type are refused rather than ignored.
void add_weighted_adapter(LoraModel& model, const std::vector<std::string>& adapters, const std::vector<double>& weights,
                          const std::string& new_name, const WeightedAdapterOptions& options);
// Shorthand for the PEFT defaults with a combination type and an svd_rank.
void add_weighted_adapter(LoraModel& model, const std::vector<std::string>& adapters, const std::vector<double>& weights,
                          const std::string& new_name, const std::string& combination_type = "svd",
                          std::optional<int64_t> svd_rank = std::nullopt);

// ---- the per-layer step on bare tensors

// One adapter's factors for one layer, as stored: A (r, fan_in[, kh, kw]) or an Embedding's
// lora_embedding_A (r, num_embeddings); B (fan_out, r[, 1, 1]) or lora_embedding_B (dim, r).
struct LoraFactors {
  Tensor A, B;
  double scaling = 1;
  double weight = 1;
};

// The new adapter's A (new_rank, …) and B (…, new_rank) for one layer from the factors of the
// adapters that target it. `delta_transposed`: the layer's weight is (B·A)ᵀ (Embedding, or a
// fan_in_fan_out Linear), which fixes the layout of DARE's masks on "*_svd" deltas. The
// combination type must be one of the eleven above, already resolved ("linear" for a single
// adapter); the new adapter's scaling is 1 (lora_alpha = r).
std::pair<Tensor, Tensor> combine_lora_factors(const std::vector<LoraFactors>& factors, int64_t new_rank,
                                               bool delta_transposed, const WeightedAdapterOptions& options,
                                               const merging::RandomMask& random_mask, const std::string& layer_name);

// Refuses options that do not apply to options.combination_type (as requested: before the
// single-adapter switch to "linear"), a missing density, and out-of-range values.
void validate_weighted_adapter_options(const WeightedAdapterOptions& options);

// The rank of the new adapter from each input adapter's largest rank (r or its rank_pattern),
// by PEFT's _check_add_weighted_adapter rules for the resolved combination type.
int64_t weighted_adapter_rank(const std::vector<int64_t>& adapter_ranks, const WeightedAdapterOptions& options);
int64_t largest_rank(const LoraConfig& config);

// The new adapter's config: the first input's with r = lora_alpha = new_rank, no rank or alpha
// patterns, and the union of the inputs' target_modules (names: a sorted set; regexes: PEFT's
// "(re1)|(re2)"). A mix of name lists and regexes is refused.
LoraConfig weighted_adapter_config(const std::vector<const LoraConfig*>& configs, int64_t new_rank);

}  // namespace peft
