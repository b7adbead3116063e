// adapters/mixed_batch.h — PEFT's mixed-batch inference, `model(x, adapter_names=[...])`: every
// row of a batch (x's first dim) picks its own adapter, "__base__" meaning none.
//
// PeftModel::forward(x, adapter_names) opens a MixedBatchScope; every LoRA layer and
// modules_to_save wrapper reached by that forward reads the names from it. PEFT passes them with
// forward pre-hooks; a thread-local scope is the C++ analogue (no signature changes through the
// user's modules, and concurrent threads do not see each other's batches).
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft {

// The adapter name that selects the base model for a row.
inline const std::string kBaseAdapterName = "__base__";

class MixedBatchScope {
 public:
  // `adapter_names` must outlive the scope.
  explicit MixedBatchScope(const std::vector<std::string>& adapter_names);
  ~MixedBatchScope();
  MixedBatchScope(const MixedBatchScope&) = delete;
  MixedBatchScope& operator=(const MixedBatchScope&) = delete;
  // The names of the innermost open scope on this thread, or nullptr.
  static const std::vector<std::string>* current();

 private:
  const std::vector<std::string>* previous_;
};

// Rows of one adapter, in row order.
struct RowGroup {
  std::string adapter;
  std::vector<int64_t> rows;
};
// The rows grouped by adapter name, groups in order of first appearance (deterministic, unlike
// the Python set PEFT iterates; the groups are disjoint, so the result is the same).
std::vector<RowGroup> group_rows(const std::vector<std::string>& adapter_names);
// PEFT's _check_forward_args length rule: "Length of `adapter_names` should be the same as the
// number of inputs, but got 3 and 4 respectively."
void check_mixed_batch_length(const Tensor& x, const std::vector<std::string>& adapter_names);
// The rows of `x` (first dim) listed in `rows`, on x's device.
Tensor select_rows(const Tensor& x, const std::vector<int64_t>& rows);
// The inverse of splitting by groups: out[groups[g].rows[k]] = parts[g][k]; parts share dtype,
// device and trailing shape, parts[g] has groups[g].rows.size() rows, and the groups cover 0..n-1.
Tensor assemble_rows(const std::vector<Tensor>& parts, const std::vector<RowGroup>& groups);

}  // namespace peft
