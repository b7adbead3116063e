// The three combinations, per LoRA layer, on 2-D views of each adapter's A (r, fan_in) and
// B (fan_out, r): Linear weights as they are, Conv2d A flattened to (r, in·kh·kw) and B to
// (out, r), Embedding's lora_embedding_A/B as they are (their delta is transposed, which the
// same algebra covers). The new adapter has lora_alpha = r, so its scaling is 1 and the
// combined scalings live in A and B.
#include "adapters/weighted_adapter.h"

// GCC 12-13's false -Wmaybe-uninitialized in avx512fintrin.h under Eigen's AVX-512 code: see
// kernels/cpu/eigen.h, whose pragma spans the intrinsic headers that Eigen includes first.
#include "kernels/cpu/eigen.h"
#include <Eigen/SVD>
#include <cmath>
#include <set>

#include "core/ops.h"

namespace peft {

namespace {

struct LowRank {
  Tensor A, B;  // views (r, fan_in), (fan_out, r) sharing the adapter's storage
};

std::optional<LowRank> low_rank_of(LoraLayer& layer, const std::string& adapter) {
  if (!layer.has_adapter(adapter)) return std::nullopt;
  auto from_modules = [&](const char* a, const char* b) -> std::optional<LowRank> {
    nn::ModulePtr da = layer.child(a), db = layer.child(b);
    if (!da->has_child(adapter) || !db->has_child(adapter)) return std::nullopt;
    Tensor A = da->child(adapter)->param("weight"), B = db->child(adapter)->param("weight");
    return LowRank{A.reshape({A.size(0), -1}), B.reshape({B.size(0), -1})};
  };
  if (auto r = from_modules("lora_A", "lora_B")) return r;
  nn::ModulePtr ea = layer.child("lora_embedding_A"), eb = layer.child("lora_embedding_B");
  if (ea->has_param(adapter) && eb->has_param(adapter)) return LowRank{ea->param(adapter), eb->param(adapter)};
  return std::nullopt;
}

Eigen::MatrixXd to_eigen(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  Eigen::MatrixXd m(t.size(0), t.size(1));
  for (int64_t i = 0; i < t.size(0); ++i)
    for (int64_t j = 0; j < t.size(1); ++j) m(i, j) = v[static_cast<size_t>(i * t.size(1) + j)];
  return m;
}

Tensor from_eigen(const Eigen::MatrixXd& m, DType dt) {
  std::vector<double> v(static_cast<size_t>(m.rows() * m.cols()));
  for (int64_t i = 0; i < m.rows(); ++i)
    for (int64_t j = 0; j < m.cols(); ++j) v[static_cast<size_t>(i * m.cols() + j)] = m(i, j);
  return Tensor::from_vector(v, {m.rows(), m.cols()}).to(dt);
}

}  // namespace

void add_weighted_adapter(LoraModel& model, const std::vector<std::string>& adapters, const std::vector<double>& weights,
                          const std::string& new_name, const std::string& combination_type_in,
                          std::optional<int64_t> svd_rank) {
  if (model.peft_config().count(new_name)) return;  // PEFT: silently keeps the existing adapter
  PEFT_CHECK(!adapters.empty() && adapters.size() == weights.size(), "add_weighted_adapter: got ", adapters.size(),
             " adapters and ", weights.size(), " weights");
  for (const auto& a : adapters) PEFT_CHECK(model.peft_config().count(a), "Adapter ", a, " does not exist");
  std::string combination_type = adapters.size() == 1 ? "linear" : combination_type_in;
  PEFT_CHECK(combination_type == "linear" || combination_type == "cat" || combination_type == "svd",
             "Invalid combination_type: ", combination_type);
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
  bool any_regex = false, any_list = false;
  for (const auto& a : adapters) {
    const LoraConfig& c = model.config(a);
    int64_t r = c.r;
    for (const auto& kv : c.rank_pattern) r = std::max(r, kv.second);
    ranks.push_back(r);
    (c.target_modules.is_regex() ? any_regex : any_list) = true;
  }
  PEFT_CHECK(!(any_regex && any_list), "all adapter configs should follow the same target modules type. Combining "
             "adapters with `target_modules` type being a mix of list/set and string is not supported.");
  int64_t new_rank = 0;
  if (combination_type == "linear") {
    for (int64_t r : ranks)
      PEFT_CHECK(r == ranks[0], "All adapters must have the same r value when using combination_type linear, ties, "
                 "dare_ties or dare_linear.");
    new_rank = ranks[0];
  } else if (combination_type == "cat") {
    for (int64_t r : ranks) new_rank += r;
  } else {
    new_rank = svd_rank ? *svd_rank : *std::max_element(ranks.begin(), ranks.end());
  }
  LoraConfig cfg = model.config(adapters[0]);
  cfg.r = new_rank;
  cfg.lora_alpha = static_cast<double>(new_rank);
  cfg.rank_pattern.clear();
  cfg.alpha_pattern.clear();
  if (any_regex) {
    std::string joined;
    for (const auto& a : adapters) joined += (joined.empty() ? "(" : "|(") + model.config(a).target_modules.regex() + ")";
    cfg.target_modules = Regex{joined};
  } else {
    std::set<std::string> u;
    for (const auto& a : adapters)
      for (const auto& n : model.config(a).target_modules.names()) u.insert(n);
    cfg.target_modules = std::vector<std::string>(u.begin(), u.end());
  }
  model.inject_adapter(cfg, new_name);

  NoGradGuard g;
  for (auto& [lname, layer] : model.lora_layers()) {
    auto target = low_rank_of(*layer, new_name);
    if (!target) continue;
    target->A.zero_();
    target->B.zero_();
    const DType dt = target->A.dtype();
    if (combination_type == "svd") {
      Eigen::MatrixXd delta = Eigen::MatrixXd::Zero(target->B.size(0), target->A.size(1));
      bool any = false;
      for (size_t i = 0; i < adapters.size(); ++i) {
        auto src = low_rank_of(*layer, adapters[i]);
        if (!src) continue;
        delta += weights[i] * layer->scaling(adapters[i]) * (to_eigen(src->B) * to_eigen(src->A));
        any = true;
      }
      if (!any) continue;
      Eigen::BDCSVD<Eigen::MatrixXd> svd(delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
      const int64_t k = std::min<int64_t>(new_rank, svd.singularValues().size());
      Eigen::MatrixXd Bn = Eigen::MatrixXd::Zero(delta.rows(), new_rank), An = Eigen::MatrixXd::Zero(new_rank, delta.cols());
      Bn.leftCols(k) = svd.matrixU().leftCols(k) * svd.singularValues().head(k).asDiagonal();
      An.topRows(k) = svd.matrixV().leftCols(k).transpose();
      target->B.copy_(from_eigen(Bn, dt));
      target->A.copy_(from_eigen(An, dt));
      continue;
    }
    int64_t offset = 0;
    for (size_t i = 0; i < adapters.size(); ++i) {
      auto src = low_rank_of(*layer, adapters[i]);
      if (!src) continue;
      const double ws = weights[i] * layer->scaling(adapters[i]);
      if (combination_type == "linear") {
        const double sign = ws < 0 ? -1.0 : 1.0, root = std::sqrt(std::abs(ws));
        target->A.add_(src->A, sign * root);
        target->B.add_(src->B, root);
      } else {  // cat: rows of w·s·A_i stacked, columns of B_i side by side
        const int64_t r = src->A.size(0);
        target->A.slice(0, offset, offset + r).add_(src->A, ws);
        target->B.slice(1, offset, offset + r).add_(src->B, 1.0);
      }
      offset += src->A.size(0);
    }
  }
}

}  // namespace peft
