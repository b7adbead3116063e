// add_weighted_adapter: a new adapter combined from existing ones (PEFT's
// LoraModel.add_weighted_adapter with combination types "linear", "cat" and "svd").
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "adapters/lora_model.h"

namespace peft {

// Adds adapter `new_name` to `model` from `adapters` weighted by `weights`. The new adapter
// is frozen and not active (as PEFT). An existing `new_name` is left as it is (PEFT returns
// silently). svd_rank: the rank kept by "svd" (default: the largest input rank).
void add_weighted_adapter(LoraModel& model, const std::vector<std::string>& adapters, const std::vector<double>& weights,
                          const std::string& new_name, const std::string& combination_type = "svd",
                          std::optional<int64_t> svd_rank = std::nullopt);

}  // namespace peft
