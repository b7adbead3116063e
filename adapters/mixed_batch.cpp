#include "adapters/mixed_batch.h"

#include <map>

#include "core/error.h"
#include "core/ops.h"

namespace peft {

namespace {
thread_local const std::vector<std::string>* g_adapter_names = nullptr;

Tensor index_tensor(const std::vector<int64_t>& v, Device device) {
  Tensor t = Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  return device.is_cpu() ? t : t.to(device);
}
}  // namespace

MixedBatchScope::MixedBatchScope(const std::vector<std::string>& adapter_names) : previous_(g_adapter_names) {
  g_adapter_names = &adapter_names;
}

MixedBatchScope::~MixedBatchScope() { g_adapter_names = previous_; }

const std::vector<std::string>* MixedBatchScope::current() { return g_adapter_names; }

std::vector<RowGroup> group_rows(const std::vector<std::string>& adapter_names) {
  std::vector<RowGroup> groups;
  std::map<std::string, size_t> slot;
  for (size_t i = 0; i < adapter_names.size(); ++i) {
    auto [it, fresh] = slot.emplace(adapter_names[i], groups.size());
    if (fresh) groups.push_back({adapter_names[i], {}});
    groups[it->second].rows.push_back(static_cast<int64_t>(i));
  }
  return groups;
}

void check_mixed_batch_length(const Tensor& x, const std::vector<std::string>& adapter_names) {
  const int64_t n = x.dim() == 0 ? 1 : x.shape()[0];
  PEFT_CHECK(static_cast<int64_t>(adapter_names.size()) == n,
             "Length of `adapter_names` should be the same as the number of inputs, but got ", adapter_names.size(),
             " and ", n, " respectively.");
}

Tensor select_rows(const Tensor& x, const std::vector<int64_t>& rows) {
  return index_select(x, 0, index_tensor(rows, x.device()));
}

Tensor assemble_rows(const std::vector<Tensor>& parts, const std::vector<RowGroup>& groups) {
  PEFT_CHECK(!parts.empty() && parts.size() == groups.size(), "assemble_rows: ", parts.size(), " parts for ",
             groups.size(), " row groups");
  if (parts.size() == 1) return parts[0];  // one group: its rows are 0..n-1 in order
  size_t n = 0;
  for (const RowGroup& g : groups) n += g.rows.size();
  // cat puts group g's rows at consecutive positions; inverse[row] is where each row landed.
  std::vector<int64_t> inverse(n, -1);
  int64_t pos = 0;
  for (const RowGroup& g : groups)
    for (int64_t r : g.rows) {
      PEFT_CHECK(r >= 0 && static_cast<size_t>(r) < n && inverse[static_cast<size_t>(r)] < 0,
                 "assemble_rows: the row groups must cover every row once");
      inverse[static_cast<size_t>(r)] = pos++;
    }
  return index_select(cat(parts, 0), 0, index_tensor(inverse, parts[0].device()));
}

}  // namespace peft
