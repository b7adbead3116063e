// Task-vector merging, following PEFT 0.21.2's merge_utils step by step so that, given the
// same random masks, the result is PEFT's up to float rounding (we sum in double, PEFT in the
// tensors' dtype). Costs are O(tasks · n) plus a partial sort per magnitude pruning: these
// run once per adapter combination on LoRA factors, far from any hot path.
#include "adapters/merge_utils.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/random.h"

namespace peft::merging {

SignMethod sign_method_from_name(const std::string& name) {
  if (name == "total") return SignMethod::Total;
  if (name == "frequency") return SignMethod::Frequency;
  PEFT_ERROR("Unimplemented mask method \"", name, "\" (majority_sign_method is \"total\" or \"frequency\")");
}

bool uses_density(Method m) { return m != Method::TaskArithmetic; }
bool uses_sign_method(Method m) { return m == Method::Ties || m == Method::DareTies; }

RandomMask generator_mask(Generator& gen) {
  return [&gen](const std::vector<int64_t>& shape, double density) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<double> mask(static_cast<size_t>(n));
    for (double& m : mask) m = gen.uniform() < density ? 1.0 : 0.0;
    return mask;
  };
}

std::vector<double> magnitude_prune_values(const std::vector<double>& t, double density) {
  // PEFT: k = int(density * numel), the top-k of |t| kept. Python's int() truncates.
  const auto k = static_cast<size_t>(density * static_cast<double>(t.size()));
  std::vector<size_t> order(t.size());
  std::iota(order.begin(), order.end(), size_t{0});
  const auto by_magnitude = [&](size_t a, size_t b) {
    const double x = std::abs(t[a]), y = std::abs(t[b]);
    return x != y ? x > y : a < b;
  };
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(std::min(k, t.size())), order.end(),
                    by_magnitude);
  std::vector<double> out(t.size(), 0.0);
  for (size_t i = 0; i < k && i < t.size(); ++i) out[order[i]] = t[order[i]];
  return out;
}

namespace {

const char* method_name(Method m) {
  switch (m) {
    case Method::TaskArithmetic: return "task_arithmetic";
    case Method::Ties: return "ties";
    case Method::DareLinear: return "dare_linear";
    case Method::DareTies: return "dare_ties";
    case Method::MagnitudePrune: return "magnitude_prune";
  }
  return "?";
}

std::vector<double> pruned(Method m, const TaskTensor& t, double density, const RandomMask& random_mask) {
  if (density >= 1) return t.values;  // PEFT warns and prunes nothing
  if (m == Method::Ties || m == Method::MagnitudePrune) return magnitude_prune_values(t.values, density);
  // DARE: a Bernoulli(density) keep-mask, survivors rescaled by 1/density.
  std::vector<double> mask = random_mask(t.shape, density);
  PEFT_CHECK(mask.size() == t.values.size(), "DARE random mask: got ", mask.size(), " values for a tensor of ",
             t.values.size());
  std::vector<double> out(t.values.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = t.values[i] * mask[i] / density;
  return out;
}

double sign_of(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

}  // namespace

std::vector<double> merge_tasks(Method method, const std::vector<TaskTensor>& tasks, const std::vector<double>& weights,
                                std::optional<double> density, SignMethod sign_method, const RandomMask& random_mask) {
  PEFT_CHECK(!tasks.empty() && tasks.size() == weights.size(), method_name(method), ": got ", tasks.size(),
             " task tensors and ", weights.size(), " weights");
  const size_t n = tasks[0].values.size();
  for (const auto& t : tasks)
    PEFT_CHECK(t.values.size() == n && t.shape == tasks[0].shape, method_name(method),
               ": the task tensors differ in shape (", t.values.size(), " vs ", n, " values)");
  std::vector<std::vector<double>> pruned_tasks;
  if (uses_density(method)) {
    PEFT_CHECK(density.has_value(), "combination type ", method_name(method), " needs a density (the fraction of "
               "values each adapter keeps, in [0, 1])");
    PEFT_CHECK(*density >= 0, "Density should be >= 0, got ", *density);
    const bool dare = method == Method::DareLinear || method == Method::DareTies;
    PEFT_CHECK(!dare || *density > 0, "density 0 with ", method_name(method), " would divide by zero (PEFT returns "
               "NaN): use a density in (0, 1]");
    PEFT_CHECK(!dare || *density >= 1 || random_mask, method_name(method), " needs a random mask source");
    for (const auto& t : tasks) pruned_tasks.push_back(pruned(method, t, *density, random_mask));
  } else {
    for (const auto& t : tasks) pruned_tasks.push_back(t.values);
  }

  std::vector<double> out(n, 0.0);
  if (!uses_sign_method(method)) {
    for (size_t k = 0; k < tasks.size(); ++k)
      for (size_t i = 0; i < n; ++i) out[i] += pruned_tasks[k][i] * weights[k];
    return out;
  }
  // TIES: the sign is elected on the pruned, unweighted tensors (as PEFT); elements whose sign
  // disagrees (zeros included) are left out of a mean over the weighted values that agree.
  for (size_t i = 0; i < n; ++i) {
    double magnitude = 0;
    for (const auto& p : pruned_tasks) magnitude += sign_method == SignMethod::Total ? p[i] : sign_of(p[i]);
    const double majority = magnitude >= 0 ? 1.0 : -1.0;
    double sum = 0, kept = 0;
    for (size_t k = 0; k < tasks.size(); ++k) {
      if (sign_of(pruned_tasks[k][i]) != majority) continue;
      sum += pruned_tasks[k][i] * weights[k];
      kept += 1;
    }
    out[i] = sum / std::max(kept, 1.0);
  }
  return out;
}

}  // namespace peft::merging
