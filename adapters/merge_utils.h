// Task-vector merging (PEFT's peft.utils.merge_utils): task arithmetic, TIES, DARE and
// magnitude pruning over same-shaped tensors, the building blocks of add_weighted_adapter's
// combination types. Values are row-major doubles; shapes only matter for the random masks.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace peft {

class Generator;

namespace merging {

enum class Method { TaskArithmetic, Ties, DareLinear, DareTies, MagnitudePrune };
// How TIES elects each element's sign: the sign of the sum of values ("total") or of the
// count of positive minus negative values ("frequency").
enum class SignMethod { Total, Frequency };

SignMethod sign_method_from_name(const std::string& name);  // "total" | "frequency", else throws
bool uses_density(Method m);                                  // every method but TaskArithmetic
bool uses_sign_method(Method m);                              // Ties, DareTies

// Draws DARE's keep-mask for a tensor of `shape` (row-major 0/1 values; P(1) = density).
// The default draws from a Generator; a caller may substitute another source (tests replay
// the masks torch.bernoulli drew inside PEFT to pin the whole algebra against it).
using RandomMask = std::function<std::vector<double>(const std::vector<int64_t>& shape, double density)>;
RandomMask generator_mask(Generator& gen);

// Keeps the int(density·n) values of largest magnitude (ties: the lower index), zeroes the rest.
std::vector<double> magnitude_prune_values(const std::vector<double>& t, double density);

// One same-shaped task tensor per model being merged.
struct TaskTensor {
  std::vector<double> values;
  std::vector<int64_t> shape;
};

// PEFT's task_arithmetic / ties / dare_linear / dare_ties / magnitude_prune: prunes each task
// (density >= 1 prunes nothing, as PEFT), weights it, and sums (TIES: a disjoint mean over
// the elements agreeing with the elected sign). density is required by every method but
// TaskArithmetic; DARE refuses density 0 (PEFT divides by it and returns NaN).
std::vector<double> merge_tasks(Method method, const std::vector<TaskTensor>& tasks, const std::vector<double>& weights,
                                std::optional<double> density, SignMethod sign_method, const RandomMask& random_mask);

}  // namespace merging
}  // namespace peft
