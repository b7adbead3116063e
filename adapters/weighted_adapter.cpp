// add_weighted_adapter, per LoRA layer, on 2-D views of each adapter's A (r, fan_in) and
// B (fan_out, r): Linear weights as they are, Conv2d A flattened to (r, in·kh·kw) and B to
// (out, r), Embedding's lora_embedding_A/B as they are (their delta is transposed, which the
// same algebra covers). The new adapter has lora_alpha = r, so its scaling is 1 and the
// combined scalings live in A and B.
//
// SVD signs: a singular pair (u, v) may be negated without changing u·vᵀ, and LAPACK builds
// (MKL in torch, OpenBLAS, Eigen) pick differently (torch and numpy agree on ~73% of pairs).
// Only svd_clamp's quantile sees the signs, but saved factors should be reproducible, so each
// pair is normalised: the entry of largest magnitude in u (first on ties) is positive. The
// golden script applies the same rule to torch's SVD inside PEFT.
#include "adapters/weighted_adapter.h"

// GCC 12-13's false -Wmaybe-uninitialized in avx512fintrin.h under Eigen's AVX-512 code: see
// kernels/cpu/eigen.h, whose pragma spans the intrinsic headers that Eigen includes first.
#include "kernels/cpu/eigen.h"
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <set>

#include "adapters/lora_conv1d.h"
#include "core/ops.h"
#include "core/random.h"

namespace peft {

namespace {

using merging::Method;

const std::set<std::string>& combination_types() {
  static const std::set<std::string> t = {"linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties",
                                          "dare_linear_svd", "dare_ties_svd", "magnitude_prune",
                                          "magnitude_prune_svd"};
  return t;
}

bool is_svd_type(const std::string& t) { return t.size() >= 3 && t.compare(t.size() - 3, 3, "svd") == 0; }

// The merge of the task tensors: "svd" and "linear" are task arithmetic.
Method method_of(const std::string& type) {
  std::string base = is_svd_type(type) && type != "svd" ? type.substr(0, type.size() - 4) : type;
  if (base == "ties") return Method::Ties;
  if (base == "dare_linear") return Method::DareLinear;
  if (base == "dare_ties") return Method::DareTies;
  if (base == "magnitude_prune") return Method::MagnitudePrune;
  return Method::TaskArithmetic;  // "linear", "svd" ("cat" never merges tasks)
}

}  // namespace

void validate_weighted_adapter_options(const WeightedAdapterOptions& o) {
  const std::string& t = o.combination_type;
  PEFT_CHECK(combination_types().count(t), "Invalid combination_type: ", t);
  const Method m = method_of(t);
  const bool svd = is_svd_type(t), prunes = t != "cat" && merging::uses_density(m);
  const merging::SignMethod sign = merging::sign_method_from_name(o.majority_sign_method);
  PEFT_CHECK(!o.density || prunes, "density applies to ties, dare_linear, dare_ties, magnitude_prune and their _svd "
             "forms, not to combination_type ", t);
  PEFT_CHECK(!prunes || o.density, "combination_type ", t, " needs a density (the fraction of values kept, in [0, 1])");
  if (o.density) {
    PEFT_CHECK(std::isfinite(*o.density) && *o.density >= 0, "Density should be >= 0, got ", *o.density);
    PEFT_CHECK(!(m == Method::DareLinear || m == Method::DareTies) || *o.density > 0, "density 0 with ", t,
               " would divide by zero (PEFT returns NaN): use a density in (0, 1]");
  }
  PEFT_CHECK(sign == merging::SignMethod::Total || (t != "cat" && merging::uses_sign_method(m)),
             "majority_sign_method applies to ties, dare_ties and their _svd forms, not to combination_type ", t);
  PEFT_CHECK(svd || (!o.svd_rank && !o.svd_clamp && o.svd_full_matrices), "svd_rank, svd_clamp and svd_full_matrices "
             "apply to the *svd combination types, not to ", t);
  PEFT_CHECK(!o.svd_rank || *o.svd_rank >= 0, "svd_rank must be >= 0, got ", o.svd_rank.value_or(0));
  PEFT_CHECK(!o.svd_clamp || (*o.svd_clamp >= 0 && *o.svd_clamp <= 1), "svd_clamp is a quantile in [0, 1], got ",
             o.svd_clamp.value_or(0));
}

namespace {

Eigen::MatrixXd matrix_of(const Tensor& t) {  // t viewed as (size(0), rest), in double
  const int64_t rows = t.size(0), cols = t.numel() / std::max<int64_t>(rows, 1);
  std::vector<double> v = t.to_vector<double>();
  Eigen::MatrixXd m(rows, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) m(i, j) = v[static_cast<size_t>(i * cols + j)];
  return m;
}

std::vector<double> values_of(const Eigen::MatrixXd& m) {  // row-major
  std::vector<double> v(static_cast<size_t>(m.size()));
  for (int64_t i = 0; i < m.rows(); ++i)
    for (int64_t j = 0; j < m.cols(); ++j) v[static_cast<size_t>(i * m.cols() + j)] = m(i, j);
  return v;
}

Eigen::MatrixXd matrix_from(const std::vector<double>& v, int64_t rows, int64_t cols) {
  Eigen::MatrixXd m(rows, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) m(i, j) = v[static_cast<size_t>(i * cols + j)];
  return m;
}

// torch.quantile's default ("linear" interpolation between the order statistics).
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// delta (fan_out, fan_in) → B (fan_out, new_rank) = U·S, A (new_rank, fan_in) = Vᵀ, the top
// singular pairs, signs normalised (see the file comment), clamped, zero-padded.
void factor_by_svd(const Eigen::MatrixXd& delta, int64_t new_rank, std::optional<double> clamp, Eigen::MatrixXd& B,
                   Eigen::MatrixXd& A) {
  Eigen::BDCSVD<Eigen::MatrixXd> svd(delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const int64_t kk = std::min<int64_t>(new_rank, svd.singularValues().size());
  Eigen::MatrixXd U = svd.matrixU().leftCols(kk), V = svd.matrixV().leftCols(kk);
  for (int64_t i = 0; i < kk; ++i) {
    Eigen::Index arg = 0;
    U.col(i).cwiseAbs().maxCoeff(&arg);  // the first maximal entry
    if (U(arg, i) < 0) {
      U.col(i) *= -1;
      V.col(i) *= -1;
    }
  }
  Eigen::MatrixXd Bk = U * svd.singularValues().head(kk).asDiagonal();
  Eigen::MatrixXd Ak = V.transpose();
  if (clamp) {
    std::vector<double> all = values_of(Bk), a = values_of(Ak);
    all.insert(all.end(), a.begin(), a.end());
    const double hi = quantile(std::move(all), *clamp), lo = -hi;
    // torch.clamp(x, lo, hi) = min(max(x, lo), hi): all values become hi when lo > hi.
    const auto c = [&](double x) { return std::min(std::max(x, lo), hi); };
    Bk = Bk.unaryExpr(c);
    Ak = Ak.unaryExpr(c);
  }
  B = Eigen::MatrixXd::Zero(delta.rows(), new_rank);
  A = Eigen::MatrixXd::Zero(new_rank, delta.cols());
  B.leftCols(kk) = Bk;
  A.topRows(kk) = Ak;
}

}  // namespace

int64_t weighted_adapter_rank(const std::vector<int64_t>& ranks, const WeightedAdapterOptions& options) {
  const std::string& t = options.combination_type;
  PEFT_CHECK(!ranks.empty(), "add_weighted_adapter: no adapters given");
  if (t == "cat") {
    int64_t sum = 0;
    for (int64_t r : ranks) sum += r;
    return sum;
  }
  if (is_svd_type(t))
    return options.svd_rank && *options.svd_rank > 0 ? *options.svd_rank : *std::max_element(ranks.begin(), ranks.end());
  for (int64_t r : ranks)
    PEFT_CHECK(r == ranks[0], "All adapters must have the same r value when using combination_type linear, ties, "
               "dare_ties or dare_linear.");
  return ranks[0];
}

int64_t largest_rank(const LoraConfig& c) {
  int64_t r = c.r;
  for (const auto& kv : c.rank_pattern) r = std::max(r, kv.second);
  return r;
}

LoraConfig weighted_adapter_config(const std::vector<const LoraConfig*>& configs, int64_t new_rank) {
  PEFT_CHECK(!configs.empty(), "add_weighted_adapter: no adapters given");
  bool any_regex = false, any_list = false;
  for (const LoraConfig* c : configs) (c->target_modules.is_regex() ? any_regex : any_list) = true;
  PEFT_CHECK(!(any_regex && any_list), "all adapter configs should follow the same target modules type. Combining "
             "adapters with `target_modules` type being a mix of list/set and string is not supported.");
  LoraConfig cfg = *configs[0];
  cfg.r = new_rank;
  cfg.lora_alpha = static_cast<double>(new_rank);
  cfg.rank_pattern.clear();
  cfg.alpha_pattern.clear();
  if (any_regex) {
    std::string joined;
    for (const LoraConfig* c : configs) joined += (joined.empty() ? "(" : "|(") + c->target_modules.regex() + ")";
    cfg.target_modules = Regex{joined};
  } else {
    std::set<std::string> u;
    for (const LoraConfig* c : configs)
      for (const auto& n : c->target_modules.names()) u.insert(n);
    cfg.target_modules = std::vector<std::string>(u.begin(), u.end());
  }
  return cfg;
}

std::pair<Tensor, Tensor> combine_lora_factors(const std::vector<LoraFactors>& factors, int64_t new_rank,
                                               bool delta_transposed, const WeightedAdapterOptions& options,
                                               const merging::RandomMask& random_mask, const std::string& layer_name) {
  PEFT_CHECK(!factors.empty(), "add_weighted_adapter: no adapter targets layer '", layer_name, "'");
  const std::string& type = options.combination_type;
  const Tensor& A0 = factors[0].A;
  const Tensor& B0 = factors[0].B;
  PEFT_CHECK(A0.dim() >= 2 && B0.dim() >= 2, "add_weighted_adapter: layer '", layer_name, "' has factors that are not "
             "matrices");
  const int64_t fan_out = B0.size(0), fan_in = A0.numel() / A0.size(0);
  for (const auto& f : factors) {
    PEFT_CHECK(f.A.dim() == A0.dim() && f.B.dim() == B0.dim() && f.B.size(0) == fan_out &&
                   f.A.numel() / f.A.size(0) == fan_in && f.B.size(1) == f.A.size(0),
               "add_weighted_adapter: layer '", layer_name, "': the adapters' factors do not fit together");
  }
  Eigen::MatrixXd An = Eigen::MatrixXd::Zero(new_rank, fan_in), Bn = Eigen::MatrixXd::Zero(fan_out, new_rank);

  if (type == "cat") {  // rows of w·s·A_i stacked, columns of B_i side by side
    int64_t offset = 0;
    for (const auto& f : factors) {
      const int64_t r = f.A.size(0);
      PEFT_CHECK(offset + r <= new_rank, "add_weighted_adapter: layer '", layer_name, "' has more rank than ", new_rank);
      An.middleRows(offset, r) = f.weight * f.scaling * matrix_of(f.A);
      Bn.middleCols(offset, r) = matrix_of(f.B);
      offset += r;
    }
  } else if (is_svd_type(type)) {
    // The deltas s·B·A in the layer weight's layout (DARE's masks are drawn in that shape).
    std::vector<merging::TaskTensor> tasks;
    std::vector<double> weights;
    for (const auto& f : factors) {
      Eigen::MatrixXd d = f.scaling * (matrix_of(f.B) * matrix_of(f.A));
      merging::TaskTensor t;
      if (delta_transposed) {
        t.shape = {fan_in, fan_out};
        t.values = values_of(d.transpose());
      } else {
        t.shape = {fan_out};
        for (int64_t i = 1; i < f.A.dim(); ++i) t.shape.push_back(f.A.size(i));
        t.values = values_of(d);
      }
      tasks.push_back(std::move(t));
      weights.push_back(f.weight);
    }
    const merging::SignMethod sign = merging::sign_method_from_name(options.majority_sign_method);
    std::vector<double> merged = merging::merge_tasks(method_of(type), tasks, weights, options.density, sign, random_mask);
    Eigen::MatrixXd delta = delta_transposed ? Eigen::MatrixXd(matrix_from(merged, fan_in, fan_out).transpose())
                                             : matrix_from(merged, fan_out, fan_in);
    factor_by_svd(delta, new_rank, options.svd_clamp, Bn, An);
  } else {  // linear, ties, dare_linear, dare_ties, magnitude_prune: A's and B's merged apart
    const int64_t r = A0.size(0);
    for (const auto& f : factors)
      PEFT_CHECK(f.A.size(0) == r, "add_weighted_adapter: layer '", layer_name, "' has ranks ", r, " and ",
                 f.A.size(0), " in the adapters (rank_pattern); combination_type ", type,
                 " needs one rank: use cat or svd");
    PEFT_CHECK(r <= new_rank, "add_weighted_adapter: layer '", layer_name, "' has rank ", r, " above ", new_rank);
    std::vector<merging::TaskTensor> tasks_A, tasks_B;
    std::vector<double> w_A, w_B;
    for (const auto& f : factors) {
      // √|w·s| on both sides, the sign on A only (a sign on both would cancel).
      const double ws = f.weight * f.scaling, root = std::sqrt(std::abs(ws));
      w_A.push_back(ws >= 0 ? root : -root);
      w_B.push_back(root);
      tasks_A.push_back({f.A.to_vector<double>(), f.A.shape()});
      tasks_B.push_back({f.B.to_vector<double>(), f.B.shape()});
    }
    const merging::SignMethod sign = merging::sign_method_from_name(options.majority_sign_method);
    const Method m = method_of(type);
    std::vector<double> a = merging::merge_tasks(m, tasks_A, w_A, options.density, sign, random_mask);
    std::vector<double> b = merging::merge_tasks(m, tasks_B, w_B, options.density, sign, random_mask);
    An.topRows(r) = matrix_from(a, r, fan_in);
    Bn.leftCols(r) = matrix_from(b, fan_out, r);
  }
  Shape a_shape = A0.shape(), b_shape = B0.shape();
  a_shape[0] = new_rank;
  b_shape[1] = new_rank;
  return {Tensor::from_vector(values_of(An), a_shape).to(A0.dtype()),
          Tensor::from_vector(values_of(Bn), b_shape).to(B0.dtype())};
}

namespace {

struct LayerFactors {
  Tensor A, B;  // the parameters, as stored
  bool embedding = false;
};

std::optional<LayerFactors> factors_of(LoraLayer& layer, const std::string& adapter) {
  if (!layer.has_adapter(adapter)) return std::nullopt;
  nn::ModulePtr da = layer.child("lora_A"), db = layer.child("lora_B");
  if (da->has_child(adapter) && db->has_child(adapter))
    return LayerFactors{da->child(adapter)->param("weight"), db->child(adapter)->param("weight"), false};
  nn::ModulePtr ea = layer.child("lora_embedding_A"), eb = layer.child("lora_embedding_B");
  if (ea->has_param(adapter) && eb->has_param(adapter)) return LayerFactors{ea->param(adapter), eb->param(adapter), true};
  return std::nullopt;
}

}  // namespace

void add_weighted_adapter(LoraModel& model, const std::vector<std::string>& adapters, const std::vector<double>& weights,
                          const std::string& new_name, const WeightedAdapterOptions& options_in) {
  if (model.peft_config().count(new_name)) return;  // PEFT: silently keeps the existing adapter
  PEFT_CHECK(!adapters.empty() && adapters.size() == weights.size(), "add_weighted_adapter: got ", adapters.size(),
             " adapters and ", weights.size(), " weights");
  for (const auto& a : adapters) PEFT_CHECK(model.peft_config().count(a), "Adapter ", a, " does not exist");
  for (double w : weights) PEFT_CHECK(std::isfinite(w), "add_weighted_adapter: weight ", w, " is not finite");
  validate_weighted_adapter_options(options_in);
  WeightedAdapterOptions options = options_in;
  if (adapters.size() == 1) options.combination_type = "linear";  // PEFT: one adapter can only be scaled
  // modules_to_save shared by several adapters cannot be combined.
  int shared = 0;
  for (auto& [n, w] : model.wrappers()) {
    int present = 0;
    for (const auto& a : adapters) present += w->has_adapter(a) ? 1 : 0;
    shared += present > 1 ? 1 : 0;
  }
  PEFT_CHECK(shared == 0, "Cannot add weighted adapters if they target the same module with modules_to_save, but "
             "found ", shared, " such instance(s).");
  std::vector<int64_t> ranks;
  std::vector<const LoraConfig*> configs;
  for (const auto& a : adapters) {
    configs.push_back(&model.config(a));
    ranks.push_back(largest_rank(model.config(a)));
  }
  const int64_t new_rank = weighted_adapter_rank(ranks, options);
  const LoraConfig cfg = weighted_adapter_config(configs, new_rank);
  merging::RandomMask random_mask =
      options.random_mask ? options.random_mask
                          : merging::generator_mask(options.generator ? *options.generator : default_generator());
  model.inject_adapter(cfg, new_name);

  // A layer that cannot be combined takes the new adapter away again: the model is as before.
  try {
    NoGradGuard g;
    for (auto& [lname, layer] : model.lora_layers()) {
      auto target = factors_of(*layer, new_name);
      if (!target) continue;
      std::vector<LoraFactors> factors;
      for (size_t i = 0; i < adapters.size(); ++i) {
        auto src = factors_of(*layer, adapters[i]);
        if (src) factors.push_back({src->A, src->B, layer->scaling(adapters[i]), weights[i]});
      }
      if (factors.empty()) {  // a layer only the regex union reached: the new adapter's delta is 0
        target->A.zero_();
        target->B.zero_();
        continue;
      }
      // PEFT asks the layer (target.fan_in_fan_out): only a Conv1D's LoRA is transposed, whatever the
      // config's last-dispatch value says.
      const bool transposed = target->embedding || dynamic_cast<const LoraConv1D*>(layer.get()) != nullptr;
      auto [A, B] = combine_lora_factors(factors, new_rank, transposed, options, random_mask, lname);
      PEFT_CHECK(A.shape() == target->A.shape() && B.shape() == target->B.shape(), "add_weighted_adapter: layer '",
                 lname, "': the combined factors do not fit the new adapter's shapes");
      target->A.copy_(A);
      target->B.copy_(B);
    }
  } catch (...) {
    model.delete_adapter(new_name);
    throw;
  }
}

void add_weighted_adapter(LoraModel& model, const std::vector<std::string>& adapters, const std::vector<double>& weights,
                          const std::string& new_name, const std::string& combination_type,
                          std::optional<int64_t> svd_rank) {
  WeightedAdapterOptions o;
  o.combination_type = combination_type;
  o.svd_rank = svd_rank;
  add_weighted_adapter(model, adapters, weights, new_name, o);
}

}  // namespace peft
