// Finite-difference gradient checks in F64 (DESIGN.md decision 3), shared by the
// test_gradcheck_*.cpp files.
//
// A checked function takes several tensors and returns one or more tensors. Every floating
// output is reduced with a fixed random upstream weight, L = Σ_k sum(out_k * w_k), so every
// output element (not just their sum) takes part in the check. The analytic gradient of L
// w.r.t. each input that requires grad comes from backward(); the numeric one from central
// differences, perturbing the input's own storage by ±eps and re-running the function under
// NoGradGuard. They must agree within |analytic − numeric| ≤ atol + rtol·|numeric|.
//
// Inputs must be F64 leaves; only those marked requires_grad are checked (I64 targets and
// indices pass through untouched). Choose inputs away from kinks (relu/abs at 0, max ties,
// log/sqrt of non-positive values): the make_* helpers below do that.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "peft.h"

namespace peft::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-4;
  uint64_t weight_seed = 0x5eed;  // seeds the upstream weights w_k
};

using MultiFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
using SingleFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckResult {
  bool ok = true;
  std::string message;  // every mismatch (first few per input), or the reason it failed
};

namespace detail {

inline MultiFn to_multi(SingleFn f) {
  return [f = std::move(f)](const std::vector<Tensor>& xs) { return std::vector<Tensor>{f(xs)}; };
}

// Fixed upstream weights, one per floating output, drawn from a generator of its own.
inline std::vector<Tensor> upstream_weights(const std::vector<Tensor>& outs, uint64_t seed) {
  Generator gen(seed);
  std::vector<Tensor> ws;
  for (const auto& o : outs) {
    if (!o.defined() || !is_floating(o.dtype())) { ws.emplace_back(); continue; }
    ws.push_back(Tensor::randn(o.shape(), DType::F64, &gen));
  }
  return ws;
}

// L = Σ_k sum(out_k * w_k) computed in plain double (no autograd involved).
inline double weighted_sum(const std::vector<Tensor>& outs, const std::vector<Tensor>& ws) {
  double acc = 0;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!ws[k].defined()) continue;
    std::vector<double> o = outs[k].to_vector<double>(), w = ws[k].to_vector<double>();
    for (size_t i = 0; i < o.size(); ++i) acc += o[i] * w[i];
  }
  return acc;
}

}  // namespace detail

// Fresh leaf copies of the inputs (contiguous, own storage), requires_grad as the original.
inline std::vector<Tensor> fresh_leaves(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> xs;
  NoGradGuard g;
  for (const auto& t : inputs) {
    if (!t.defined()) { xs.emplace_back(); continue; }
    Tensor c = Tensor::empty(t.shape(), t.dtype());
    c.copy_(t.detach());
    if (t.requires_grad()) c.set_requires_grad(true);
    xs.push_back(c);
  }
  return xs;
}

// Analytic gradients of L w.r.t. each input (undefined for inputs not requiring grad; an
// input that requires grad but received none gets zeros, as that is what it means).
inline std::vector<Tensor> analytic_grads(const MultiFn& f, const std::vector<Tensor>& inputs,
                                          const GradcheckOptions& opt = {}) {
  std::vector<Tensor> xs = fresh_leaves(inputs);
  std::vector<Tensor> outs = f(xs);
  std::vector<Tensor> ws = detail::upstream_weights(outs, opt.weight_seed);
  Tensor loss;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!ws[k].defined() || !outs[k].requires_grad()) continue;
    Tensor term = sum(mul(outs[k], ws[k]));
    loss = loss.defined() ? add(loss, term) : term;
  }
  if (loss.defined()) loss.backward();
  std::vector<Tensor> grads;
  for (const auto& x : xs) {
    if (!x.defined() || !x.requires_grad()) { grads.emplace_back(); continue; }
    grads.push_back(x.grad().defined() ? x.grad() : Tensor::zeros(x.shape(), x.dtype()));
  }
  return grads;
}

// Central-difference gradient of L w.r.t. input `which`.
inline Tensor numeric_grad(const MultiFn& f, const std::vector<Tensor>& inputs, size_t which,
                           const GradcheckOptions& opt = {}) {
  NoGradGuard no_grad;
  std::vector<Tensor> xs = fresh_leaves(inputs);
  std::vector<Tensor> ws = detail::upstream_weights(f(xs), opt.weight_seed);
  Tensor& x = xs[which];
  double* p = x.data_ptr<double>();  // contiguous leaf: element i is p[i]
  Tensor g = Tensor::zeros(x.shape(), DType::F64);
  double* gp = g.data_ptr<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double orig = p[i];
    p[i] = orig + opt.eps;
    const double lp = detail::weighted_sum(f(xs), ws);
    p[i] = orig - opt.eps;
    const double lm = detail::weighted_sum(f(xs), ws);
    p[i] = orig;
    gp[i] = (lp - lm) / (2 * opt.eps);
  }
  return g;
}

// Compares two gradients element by element; appends the first mismatches to `msg`.
inline bool grads_close(const Tensor& analytic, const Tensor& numeric, const GradcheckOptions& opt,
                        const std::string& what, std::string& msg) {
  std::ostringstream os;
  os.precision(10);
  if (analytic.shape() != numeric.shape()) {
    os << what << ": analytic gradient shape " << shape_str(analytic.shape()) << " != input shape "
       << shape_str(numeric.shape()) << "\n";
    msg += os.str();
    return false;
  }
  std::vector<double> a = analytic.to_vector<double>(), n = numeric.to_vector<double>();
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double tol = opt.atol + opt.rtol * std::abs(n[i]);
    if (std::abs(a[i] - n[i]) <= tol) continue;  // false for NaN too
    if (++bad <= 5) os << what << "[" << i << "]: analytic " << a[i] << " vs numeric " << n[i] << "\n";
  }
  if (bad > 5) os << what << ": " << bad << " mismatches in all\n";
  msg += os.str();
  return bad == 0;
}

inline GradcheckResult gradcheck(const MultiFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {}) {
  GradcheckResult r;
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined() || !t.requires_grad()) continue;
    any = true;
    if (t.dtype() != DType::F64 || !t.is_leaf()) {
      r.ok = false;
      r.message += "input " + std::to_string(i) + " must be an F64 leaf\n";
    }
  }
  if (!any) return {false, "no input requires grad: nothing to check\n"};
  if (!r.ok) return r;
  // The function must be deterministic, or finite differences mean nothing.
  {
    NoGradGuard g;
    std::vector<Tensor> xs = fresh_leaves(inputs);
    std::vector<Tensor> ws = detail::upstream_weights(f(xs), opt.weight_seed);
    const double l1 = detail::weighted_sum(f(xs), ws), l2 = detail::weighted_sum(f(xs), ws);
    if (!(l1 == l2)) return {false, "the function is not deterministic (or not finite): " + std::to_string(l1) +
                                        " then " + std::to_string(l2) + "\n"};
  }
  std::vector<Tensor> ag = analytic_grads(f, inputs, opt);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!ag[i].defined()) continue;
    if (ag[i].dtype() != DType::F64) {
      r.ok = false;
      r.message += "input " + std::to_string(i) + ": gradient dtype " + dtype_name(ag[i].dtype()) + "\n";
      continue;
    }
    Tensor ng = numeric_grad(f, inputs, i, opt);
    if (!grads_close(ag[i], ng, opt, "input " + std::to_string(i), r.message)) r.ok = false;
  }
  return r;
}

inline GradcheckResult gradcheck(const SingleFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {}) {
  return gradcheck(detail::to_multi(f), inputs, opt);
}

// ---------------------------------------------------------------------------- inputs

// Test-local generator so input values do not depend on which other tests ran first.
inline Generator& input_generator() {
  static Generator gen(20240611);
  return gen;
}

// N(0, 1) F64 leaf that requires grad.
inline Tensor make_randn(const Shape& shape, bool requires_grad = true) {
  Tensor t = Tensor::randn(shape, DType::F64, &input_generator());
  return requires_grad ? t.set_requires_grad(true) : t;
}

// U(lo, hi) F64 leaf (e.g. positive inputs for log / sqrt / pow).
inline Tensor make_uniform(const Shape& shape, double lo, double hi, bool requires_grad = true) {
  Tensor t = Tensor::rand(shape, DType::F64, &input_generator(), lo, hi);
  return requires_grad ? t.set_requires_grad(true) : t;
}

// Random sign, magnitude U(lo, hi): keeps relu / abs away from their kink at 0.
inline Tensor make_away_from_zero(const Shape& shape, double lo = 0.2, double hi = 1.5, bool requires_grad = true) {
  const int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  Generator& g = input_generator();
  for (auto& x : v) {
    const double mag = lo + (hi - lo) * g.uniform();
    x = g.uniform() < 0.5 ? -mag : mag;
  }
  Tensor t = Tensor::from_vector(v, shape);
  return requires_grad ? t.set_requires_grad(true) : t;
}

// All values distinct, at least 0.1 apart (a shuffled ramp): no ties for max.
inline Tensor make_distinct(const Shape& shape, bool requires_grad = true) {
  const int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 0.1 * static_cast<double>(i) - 0.05 * static_cast<double>(n);
  Generator& g = input_generator();
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(v[static_cast<size_t>(i)], v[static_cast<size_t>(g.next_u64() % static_cast<uint64_t>(i + 1))]);
  Tensor t = Tensor::from_vector(v, shape);
  return requires_grad ? t.set_requires_grad(true) : t;
}

inline Tensor make_ids(const std::vector<int64_t>& v, const Shape& shape) { return Tensor::from_vector(v, shape); }

}  // namespace peft::testing

// Runs the check and reports every mismatch on failure.
#define CHECK_GRADCHECK(...)                                      \
  do {                                                            \
    const auto peft_gc_result_ = ::peft::testing::gradcheck(__VA_ARGS__); \
    INFO(peft_gc_result_.message);                                \
    CHECK(peft_gc_result_.ok);                                    \
  } while (0)
