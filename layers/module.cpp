#include "layers/module.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <ostream>
#include <set>
#include <sstream>

#include "core/profiler.h"

namespace peft::nn {

namespace {
// The module whose forward runs now on this thread (anomaly mode and profiling only; see ModuleCallScope).
thread_local const Module* g_current_module = nullptr;
}  // namespace

Tensor Module::operator()(const Tensor& x) {
  ModuleCallScope scope(*this);
  return forward(x);
}

bool Module::find_descendant(const Module* target, const std::string& prefix, std::string& out) const {
  for (const auto& [name, child] : children_) {
    if (!child) continue;
    std::string path = prefix.empty() ? name : prefix + "." + name;
    if (child.get() == target) {
      out = path;
      return true;
    }
    if (child->find_descendant(target, path, out)) return true;
  }
  return false;
}

ModuleCallScope::ModuleCallScope(const Module& m, const std::string& name_in_parent) {
  if (!AnomalyMode::is_enabled() && !profiler::is_enabled()) return;
  active_ = true;
  prev_ = g_current_module;
  std::string name;  // stays "" when `m` is already the running module (run twice in a row)
  if (prev_ != &m && !(prev_ && prev_->find_descendant(&m, "", name))) name = name_in_parent;
  path_ = std::make_unique<autograd::ModulePathScope>(name, m.type_name());
  g_current_module = &m;
}

ModuleCallScope::~ModuleCallScope() {
  if (active_) g_current_module = prev_;
}

namespace {
// The owning pointer of a module; a module on the stack has none, which would otherwise
// surface as std::bad_weak_ptr from shared_from_this().
ModulePtr owner_of(Module& m, const char* what) {
  ModulePtr p = m.weak_from_this().lock();
  PEFT_CHECK(p != nullptr, m.type_name(), ".", what, ": the module must be owned by a std::shared_ptr "
             "(create it with std::make_shared)");
  return p;
}
}  // namespace

Tensor Module::forward(const Tensor&) {
  PEFT_ERROR(type_name(), ": this module has no single-tensor forward");
}

void Module::check_new_name(const std::string& name, const char* what) const {
  PEFT_CHECK(!name.empty(), type_name(), ": ", what, " name can't be empty");
  PEFT_CHECK(name.find('.') == std::string::npos, type_name(), ": ", what, " name can't contain \".\", got \"", name, "\"");
  auto taken = [&](const auto& table) {
    for (const auto& kv : table)
      if (kv.first == name) return true;
    return false;
  };
  PEFT_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), type_name(), ": attribute '", name, "' already exists");
}

Tensor& Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name, "parameter");
  if (t.defined()) t.set_requires_grad(requires_grad);
  params_.emplace_back(name, t);
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name, "buffer");
  buffers_.emplace_back(name, t);
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, ModulePtr m) {
  check_new_name(name, "module");
  PEFT_CHECK(m != nullptr, type_name(), ": cannot register a null module as '", name, "'");
  children_.emplace_back(name, std::move(m));
}

Tensor& Module::param(const std::string& name) {
  for (auto& kv : params_)
    if (kv.first == name) return kv.second;
  PEFT_ERROR(type_name(), " has no parameter '", name, "'");
}
const Tensor& Module::param(const std::string& name) const { return const_cast<Module*>(this)->param(name); }

bool Module::has_param(const std::string& name) const {
  for (auto& kv : params_)
    if (kv.first == name) return true;
  return false;
}

Tensor& Module::buffer(const std::string& name) {
  for (auto& kv : buffers_)
    if (kv.first == name) return kv.second;
  PEFT_ERROR(type_name(), " has no buffer '", name, "'");
}

ModulePtr Module::child(const std::string& name) const {
  for (auto& kv : children_)
    if (kv.first == name) return kv.second;
  PEFT_ERROR(type_name(), " has no submodule '", name, "'");
}

bool Module::has_child(const std::string& name) const {
  for (auto& kv : children_)
    if (kv.first == name) return true;
  return false;
}

std::vector<std::pair<std::string, ModulePtr>> Module::named_children() const { return children_; }

void Module::collect_modules(const std::string& prefix, std::vector<std::pair<std::string, ModulePtr>>& out) {
  out.emplace_back(prefix, owner_of(*this, "named_modules"));
  for (auto& kv : children_) kv.second->collect_modules(prefix.empty() ? kv.first : prefix + "." + kv.first, out);
}

std::vector<std::pair<std::string, ModulePtr>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, ModulePtr>> out;
  collect_modules(prefix, out);
  // A module reachable twice is listed once (PyTorch's memo).
  std::set<Module*> seen;
  std::vector<std::pair<std::string, ModulePtr>> unique;
  for (auto& kv : out)
    if (seen.insert(kv.second.get()).second) unique.push_back(kv);
  return unique;
}

void Module::collect_tensors(const std::string& prefix, bool params, bool recurse,
                             std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& kv : params ? params_ : buffers_)
    if (kv.second.defined()) out.emplace_back(prefix + kv.first, kv.second);
  if (!recurse) return;
  for (const auto& kv : children_) kv.second->collect_tensors(prefix + kv.first + ".", params, true, out);
}

namespace {
// Shared tensors are listed once, under their first name (PyTorch's remove_duplicate).
std::vector<std::pair<std::string, Tensor>> dedupe(std::vector<std::pair<std::string, Tensor>> v) {
  std::set<TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& kv : v)
    if (seen.insert(kv.second.unsafe_impl()).second) out.push_back(kv);
  return out;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_tensors("", true, recurse, out);
  return dedupe(out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_tensors("", false, recurse, out);
  return dedupe(out);
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& kv : named_parameters(recurse)) out.push_back(kv.second);
  return out;
}

ModulePtr Module::get_submodule(const std::string& dotted) {
  ModulePtr cur = owner_of(*this, "get_submodule");
  if (dotted.empty()) return cur;
  std::string path;
  size_t start = 0;
  while (start <= dotted.size()) {
    size_t end = dotted.find('.', start);
    std::string part = dotted.substr(start, end == std::string::npos ? std::string::npos : end - start);
    PEFT_CHECK(cur->has_child(part), cur->type_name(), (path.empty() ? "" : " at '" + path + "'"),
               " has no attribute `", part, "` (looking up '", dotted, "')");
    cur = cur->child(part);
    path += (path.empty() ? "" : ".") + part;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return cur;
}

void Module::set_submodule(const std::string& dotted, ModulePtr m) {
  PEFT_CHECK(!dotted.empty(), "set_submodule: cannot replace the root module");
  PEFT_CHECK(m != nullptr, "set_submodule: cannot set '", dotted, "' to a null module");
  size_t dot = dotted.rfind('.');
  ModulePtr parent = dot == std::string::npos ? owner_of(*this, "set_submodule") : get_submodule(dotted.substr(0, dot));
  std::string leaf = dot == std::string::npos ? dotted : dotted.substr(dot + 1);
  for (auto& kv : parent->children_)
    if (kv.first == leaf) {
      kv.second = std::move(m);
      return;
    }
  PEFT_ERROR(parent->type_name(), " has no submodule '", leaf, "' (setting '", dotted, "')");
}

void Module::train(bool on) {
  training_ = on;
  for (auto& kv : children_) kv.second->train(on);
}

StateDict Module::state_dict() const {
  // PyTorch order: per module, its parameters then its buffers, then its children.
  StateDict out;
  std::set<TensorImpl*> seen;
  std::function<void(const Module&, const std::string&)> rec = [&](const Module& m, const std::string& prefix) {
    for (const auto& kv : m.params_)
      if (kv.second.defined()) out.emplace_back(prefix + kv.first, kv.second);
    for (const auto& kv : m.buffers_)
      if (kv.second.defined()) out.emplace_back(prefix + kv.first, kv.second);
    for (const auto& kv : m.children_) rec(*kv.second, prefix + kv.first + ".");
  };
  rec(*this, "");
  return out;
}

LoadResult Module::load_state_dict(const StateDict& sd, bool strict) {
  std::map<std::string, const Tensor*> given;
  for (const auto& kv : sd) given[kv.first] = &kv.second;
  StateDict mine = state_dict();
  LoadResult r;
  std::set<std::string> expected;
  for (const auto& kv : mine) {
    expected.insert(kv.first);
    auto it = given.find(kv.first);
    if (it == given.end()) { r.missing_keys.push_back(kv.first); continue; }
    const Tensor& src = *it->second;
    PEFT_CHECK(src.defined(), "load_state_dict: value for '", kv.first, "' is undefined");
    PEFT_CHECK(src.shape() == kv.second.shape(), "load_state_dict: size mismatch for ", kv.first,
               ": copying a param with shape ", shape_str(src.shape()), " from checkpoint, the shape in current model is ",
               shape_str(kv.second.shape()), ".");
    PEFT_CHECK(is_floating(src.dtype()) == is_floating(kv.second.dtype()), "load_state_dict: dtype mismatch for ",
               kv.first, ": checkpoint has ", dtype_name(src.dtype()), ", model has ", dtype_name(kv.second.dtype()));
  }
  for (const auto& kv : sd)
    if (!expected.count(kv.first)) r.unexpected_keys.push_back(kv.first);
  if (strict && (!r.missing_keys.empty() || !r.unexpected_keys.empty())) {
    std::string msg = "load_state_dict: error(s) in loading state_dict for " + type_name() + ":";
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
      return s;
    };
    if (!r.missing_keys.empty()) msg += " Missing key(s) in state_dict: " + list(r.missing_keys) + ".";
    if (!r.unexpected_keys.empty()) msg += " Unexpected key(s) in state_dict: " + list(r.unexpected_keys) + ".";
    PEFT_ERROR(msg);
  }
  NoGradGuard g;
  for (auto& kv : mine) {
    auto it = given.find(kv.first);
    if (it != given.end()) kv.second.copy_(*it->second);
  }
  return r;
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

void convert_in_place(const std::vector<Tensor>& tensors, std::optional<Device> device, std::optional<DType> dtype) {
  PEFT_CHECK(!dtype || is_floating(*dtype), "to: can only convert to a floating point dtype, got ",
             dtype_name(*dtype));
  // Phase 1 copies everything that has to change; phase 2 repoints the TensorImpls. Only phase 1
  // can throw (no such device, out of memory), and it changes nothing the caller can see.
  struct Move {
    TensorImpl* impl;
    Tensor moved;
  };
  std::vector<Move> moves;
  std::set<TensorImpl*> seen;  // a tensor shared by two modules (tied weights) converts once
  NoGradGuard g;
  auto plan = [&](TensorImpl* impl, const Tensor& t) {
    if (!seen.insert(impl).second) return;
    const Device to_dev = device ? *device : t.device();
    // Integer tensors (indices, counters) keep their dtype, as in torch's module.to(dtype).
    const DType to_dt = dtype && is_floating(t.dtype()) ? *dtype : t.dtype();
    if (to_dev == t.device() && to_dt == t.dtype()) return;
    moves.push_back({impl, t.detach().to(to_dt).to(to_dev)});
  };
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    TensorImpl* impl = t.unsafe_impl();
    plan(impl, t);
    if (impl->grad) plan(impl->grad.get(), Tensor(impl->grad));
  }
  for (auto& mv : moves) {  // no-throw: swaps; the shape is unchanged
    TensorImpl* fresh = mv.moved.unsafe_impl();
    mv.impl->storage.swap(fresh->storage);
    mv.impl->strides.swap(fresh->strides);
    mv.impl->offset = fresh->offset;
    mv.impl->dtype = fresh->dtype;
  }
}

void assign_in_place(const std::vector<Tensor>& targets, const std::vector<Tensor>& values) {
  PEFT_CHECK(targets.size() == values.size(), "assign_in_place: ", targets.size(), " targets but ", values.size(),
             " values");
  for (size_t i = 0; i < targets.size(); ++i) {
    PEFT_CHECK(targets[i].defined() && values[i].defined(), "assign_in_place: undefined tensor at ", i);
    PEFT_CHECK(targets[i].shape() == values[i].shape(), "assign_in_place: tensor ", i, " has shape ",
               shape_str(targets[i].shape()), " but its value has ", shape_str(values[i].shape()));
  }
  for (size_t i = 0; i < targets.size(); ++i) {  // no-throw: swaps
    TensorImpl* impl = targets[i].unsafe_impl();
    Tensor fresh = values[i].detach();
    TensorImpl* src = fresh.unsafe_impl();
    impl->storage = src->storage;  // shared, not swapped: `values` may be used again
    impl->strides = src->strides;
    impl->offset = src->offset;
    impl->dtype = src->dtype;
  }
}

namespace {
std::vector<Tensor> tensors_of(const StateDict& sd) {
  std::vector<Tensor> ts;
  ts.reserve(sd.size());
  for (const auto& kv : sd) ts.push_back(kv.second);
  return ts;
}
}  // namespace

void Module::to(Device device) { convert_in_place(tensors_of(state_dict()), device, std::nullopt); }

void Module::to(DType dtype) { convert_in_place(tensors_of(state_dict()), std::nullopt, dtype); }

std::string Module::repr() const {
  // As torch.nn.Module.__repr__: one extra line and no children print inline; otherwise every
  // extra line and child goes on its own line, indented by two spaces.
  std::vector<std::string> lines;
  const std::string extra = extra_repr();
  if (!extra.empty()) {
    std::istringstream is(extra);
    for (std::string line; std::getline(is, line);) lines.push_back(line);
  }
  const size_t n_extra = lines.size();
  for (const auto& kv : children_) lines.push_back("(" + kv.first + "): " + kv.second->repr());
  std::string out = type_name() + "(";
  if (n_extra == 1 && children_.empty()) return out + lines[0] + ")";
  if (lines.empty()) return out + ")";
  for (const auto& line : lines) {
    out += "\n  ";
    for (char ch : line) out += ch == '\n' ? std::string("\n  ") : std::string(1, ch);
  }
  return out + "\n)";
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

std::string float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-tripping digits (Python's 'r' format), then Python's layout: fixed
  // notation when the decimal exponent is in [-4, 16), scientific otherwise.
  char buf[40];
  for (int prec = 0; prec < 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s(buf), sign;
  if (s[0] == '-') { sign = "-"; s.erase(0, 1); }
  const size_t e = s.find('e');
  const int exp10 = std::atoi(s.c_str() + e + 1);
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int nd = static_cast<int>(digits.size()), decpt = exp10 + 1;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) return sign + "0." + std::string(-decpt, '0') + digits;
    if (decpt >= nd) return sign + digits + std::string(decpt - nd, '0') + ".0";
    return sign + digits.substr(0, decpt) + "." + digits.substr(decpt);
  }
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  return sign + digits.substr(0, 1) + (nd > 1 ? "." + digits.substr(1) : "") + ebuf;
}

void Module::unregister_module(const std::string& name) {
  for (auto it = children_.begin(); it != children_.end(); ++it)
    if (it->first == name) {
      children_.erase(it);
      return;
    }
  PEFT_ERROR(type_name(), " has no submodule '", name, "'");
}

void Module::unregister_parameter(const std::string& name) {
  for (auto it = params_.begin(); it != params_.end(); ++it)
    if (it->first == name) {
      params_.erase(it);
      return;
    }
  PEFT_ERROR(type_name(), " has no parameter '", name, "'");
}

ModulePtr Module::clone() const {
  PEFT_ERROR(type_name(), " does not support clone(); add PEFT_MODULE_CLONE(", type_name(), ") to the class");
}

void Module::deep_copy_state() {
  NoGradGuard g;
  for (auto& kv : params_) {
    if (!kv.second.defined()) continue;
    bool rg = kv.second.requires_grad();
    kv.second = kv.second.detach().clone();
    kv.second.set_requires_grad(rg);
  }
  for (auto& kv : buffers_)
    if (kv.second.defined()) kv.second = kv.second.detach().clone();
  for (auto& kv : children_) kv.second = kv.second->clone();
}

}  // namespace peft::nn
