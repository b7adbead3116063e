// Helpers for the PyTorch golden tests (DESIGN.md decision 4): load one case written by
// tests/golden/make_golden.py, compare tensors with |a − b| ≤ atol + rtol·|b|, and run the
// forward/backward check every op and layer case shares. The naming inside a case file is
// described in make_golden.py ("x", "out", "grad_out", "grad.x", "state_dict.<key>", ...).
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "peft.h"

namespace golden {

using peft::Tensor;
using Named = std::vector<std::pair<std::string, Tensor>>;

// Default F32 tolerance; a test that loosens it says why next to the call.
struct Tol {
  double atol = 1e-5, rtol = 1e-4;
};

inline std::string path_of(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/" + name + ".safetensors"; }

class Case {
 public:
  explicit Case(std::string name) : name_(std::move(name)), tensors_(peft::io::load_file(path_of(name_))) {}

  const std::string& name() const { return name_; }
  const peft::NamedTensors& tensors() const { return tensors_; }
  bool has(const std::string& key) const {
    return std::any_of(tensors_.begin(), tensors_.end(), [&](const auto& kv) { return kv.first == key; });
  }
  const Tensor& get(const std::string& key) const {
    for (const auto& kv : tensors_)
      if (kv.first == key) return kv.second;
    FAIL("golden case " << name_ << " has no tensor '" << key << "'");
    return tensors_.front().second;  // not reached
  }
  // A fresh copy of a stored tensor as a leaf that requires grad.
  Tensor leaf(const std::string& key) const {
    Tensor t = get(key).clone();
    t.set_requires_grad(true);
    return t;
  }
  // The tensors stored as "<prefix><key>", renamed to <key> (e.g. "state_dict." → a state dict).
  peft::NamedTensors with_prefix(const std::string& prefix) const {
    peft::NamedTensors out;
    for (const auto& kv : tensors_)
      if (kv.first.compare(0, prefix.size(), prefix) == 0) out.emplace_back(kv.first.substr(prefix.size()), kv.second);
    return out;
  }
  std::map<std::string, std::string> metadata() const {
    return peft::io::SafetensorsFile::open(path_of(name_)).metadata();
  }

 private:
  std::string name_;
  peft::NamedTensors tensors_;
};

// Checks `actual` against the case's tensor `key`: same shape, then elementwise closeness. A
// failure names the case, the tensor, how many elements are off and the worst one.
inline void expect_close(const Case& c, const std::string& key, const Tensor& actual, Tol tol = {}) {
  const Tensor& expected = c.get(key);
  INFO("golden case " << c.name() << ", tensor '" << key << "'");
  REQUIRE(actual.defined());
  INFO("shape: got " << peft::shape_str(actual.shape()) << ", expected " << peft::shape_str(expected.shape()));
  REQUIRE(actual.shape() == expected.shape());
  const std::vector<double> a = actual.to_vector<double>(), b = expected.to_vector<double>();
  double max_abs = 0;
  size_t bad = 0, worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::isnan(a[i]) != std::isnan(b[i]) ? INFINITY : std::abs(a[i] - b[i]);
    if (d <= tol.atol + tol.rtol * std::abs(b[i])) continue;
    if (bad++ == 0 || d > max_abs) worst = i;
    max_abs = std::max(max_abs, d);
  }
  if (bad) {
    FAIL_CHECK(c.name() << " / " << key << ": " << bad << " of " << a.size() << " elements differ beyond atol "
                        << tol.atol << " + rtol " << tol.rtol << "·|expected|; max abs diff " << max_abs
                        << " (element " << worst << ": got " << a[worst] << ", expected " << b[worst] << ")");
  } else {
    SUCCEED();
  }
}

// Exact comparison for integer outputs (indices).
inline void expect_equal(const Case& c, const std::string& key, const Tensor& actual) {
  const Tensor& expected = c.get(key);
  INFO("golden case " << c.name() << ", tensor '" << key << "'");
  REQUIRE(actual.defined());
  REQUIRE(actual.shape() == expected.shape());
  CHECK(actual.to_vector<int64_t>() == expected.to_vector<int64_t>());
}

// The shared forward/backward check. `outputs` are compared with their stored values (integer
// ones exactly); the float ones are backpropagated together with their stored upstream
// gradients "grad_<output>"; then each leaf's gradient is compared with "grad.<leaf name>".
// Every "grad.<name>" in the file must be among `leaves`, so no stored gradient goes unchecked.
inline void check_forward_backward(const Case& c, const Named& outputs, const Named& leaves, Tol tol = {},
                                   Tol grad_tol = {}) {
  std::vector<Tensor> roots, seeds;
  for (const auto& [name, out] : outputs) {
    if (out.dtype() == peft::DType::I64) {
      expect_equal(c, name, out);
      continue;
    }
    expect_close(c, name, out, tol);
    roots.push_back(out);
    seeds.push_back(c.get("grad_" + name));
  }
  std::set<std::string> stored;
  for (const auto& kv : c.tensors())
    if (kv.first.compare(0, 5, "grad.") == 0) stored.insert(kv.first.substr(5));
  std::set<std::string> given;
  for (const auto& kv : leaves) given.insert(kv.first);
  {
    INFO("golden case " << c.name() << ": the leaves given must be exactly those with a stored gradient");
    CHECK(stored == given);
  }
  REQUIRE_FALSE(roots.empty());
  peft::autograd::run_backward(roots, seeds, /*retain_graph=*/false);
  for (const auto& [name, t] : leaves) {
    INFO("golden case " << c.name() << ": gradient of '" << name << "'");
    REQUIRE(t.grad().defined());
    expect_close(c, "grad." + name, t.grad(), grad_tol);
  }
}

}  // namespace golden
