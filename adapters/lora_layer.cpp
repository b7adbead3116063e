#include "adapters/lora_layer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "adapters/lora_init.h"
#include "adapters/mixed_batch.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "layers/activation.h"
#include "layers/init.h"
#include "layers/linear.h"

namespace peft {

// ---------------------------------------------------------------- LoraLayer

LoraLayer::LoraLayer(nn::ModulePtr base_layer) {
  PEFT_CHECK(base_layer != nullptr, "LoraLayer: base_layer is null");
  register_module("base_layer", base_layer);
  register_module("lora_dropout", std::make_shared<nn::ModuleDict>());
  register_module("lora_A", std::make_shared<nn::ModuleDict>());
  register_module("lora_B", std::make_shared<nn::ModuleDict>());
  register_module("lora_embedding_A", std::make_shared<nn::ParameterDict>());
  register_module("lora_embedding_B", std::make_shared<nn::ParameterDict>());
  register_module("lora_magnitude_vector", std::make_shared<nn::ModuleDict>());
  training_ = base_layer->is_training();
}

nn::ModuleDict& LoraLayer::dict(const std::string& name) const {
  return *std::dynamic_pointer_cast<nn::ModuleDict>(child(name));
}

nn::ParameterDict& LoraLayer::param_dict(const std::string& name) const {
  return *std::dynamic_pointer_cast<nn::ParameterDict>(child(name));
}

void LoraLayer::add_adapter_settings(const std::string& name, const LoraLayerSettings& s) {
  PEFT_CHECK(s.r > 0, "`r` should be a positive integer value but the value passed is ", s.r);
  PEFT_CHECK(!settings_.count(name), type_name(), ": adapter '", name, "' already exists");
  settings_[name] = s;
  order_.push_back(name);
}

std::vector<std::string> LoraLayer::adapter_names() const { return order_; }

const LoraLayerSettings& LoraLayer::settings(const std::string& name) const {
  auto it = settings_.find(name);
  PEFT_CHECK(it != settings_.end(), type_name(), ": no adapter named '", name, "'");
  return it->second;
}

std::vector<Tensor> LoraLayer::adapter_tensors(const std::string& name) const {
  NamedTensors ts = named_parameters();
  NamedTensors bufs = named_buffers();
  ts.insert(ts.end(), bufs.begin(), bufs.end());
  std::vector<Tensor> out;
  for (const auto& [path, t] : ts) {
    const size_t dot = path.find('.');
    if (path.rfind("lora_", 0) != 0 || dot == std::string::npos) continue;
    const std::string rest = path.substr(dot + 1);
    if (rest == name || rest.rfind(name + ".", 0) == 0) out.push_back(t);
  }
  return out;
}

namespace {
Device base_device_of(const nn::Module& base) {
  for (const auto& [n, t] : base.named_parameters())
    if (t.defined()) return t.device();
  for (const auto& [n, t] : base.named_buffers())
    if (t.defined()) return t.device();
  return Device::cpu();
}
}  // namespace

Device LoraLayer::base_device() const { return base_device_of(*base_layer()); }

void LoraLayer::move_adapter_to_base_device(const std::string& name) {
  const Device dev = base_device();
  std::vector<Tensor> move;
  for (const Tensor& t : adapter_tensors(name))
    if (t.defined() && t.device() != dev) move.push_back(t);
  if (!move.empty()) nn::convert_in_place(move, dev, std::nullopt);
}

std::vector<std::pair<std::string, Tensor>> LoraLayer::adapter_parameters(const std::string& name) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [path, t] : named_parameters()) {
    if (path.rfind("base_layer.", 0) == 0) continue;
    // "<container>.<adapter>" or "<container>.<adapter>.<param>"
    auto dot = path.find('.');
    if (dot == std::string::npos) continue;
    std::string rest = path.substr(dot + 1);
    if (rest == name || rest.rfind(name + ".", 0) == 0) out.emplace_back(path, t);
  }
  return out;
}

void LoraLayer::set_adapter(const std::vector<std::string>& names) {
  // Only adapters this layer has take part; the others are frozen, the active ones trainable.
  std::vector<std::string> active;
  for (const auto& n : names)
    if (settings_.count(n)) active.push_back(n);
  for (const auto& n : order_) {
    bool on = std::find(active.begin(), active.end(), n) != active.end();
    for (auto& kv : adapter_parameters(n)) kv.second.set_requires_grad(on);
  }
  active_ = names;
}

std::vector<std::string> LoraLayer::forward_adapters() const {
  std::vector<std::string> out;
  for (const auto& n : active_)
    if (settings_.count(n)) out.push_back(n);
  return out;
}

std::vector<std::string> LoraLayer::prepare_forward() {
  if (disabled()) {
    if (merged()) unmerge();
    return {};
  }
  if (merged()) return {};
  return forward_adapters();
}

std::optional<Tensor> LoraLayer::mixed_batch_forward(const Tensor& x) {
  const std::vector<std::string>* names = MixedBatchScope::current();
  if (names == nullptr) return std::nullopt;
  check_mixed_batch_length(x, *names);
  PEFT_CHECK(!merged(), "Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` "
             "first.");
  for (const std::string& n : *names)
    PEFT_CHECK(n == kBaseAdapterName || !has_adapter(n) || !settings(n).use_dora,
               "Cannot pass `adapter_names` when DoRA is enabled.");
  Tensor result = base_layer()->forward(x);
  if (disabled()) return result;
  if (auto whole = mixed_batch_multi(x, result, *names)) return *whole;
  const std::vector<RowGroup> groups = group_rows(*names);
  std::vector<Tensor> parts;
  bool any = false;
  for (const RowGroup& g : groups) {
    if (g.adapter == kBaseAdapterName || !has_adapter(g.adapter)) {
      Shape s = result.shape();
      s[0] = static_cast<int64_t>(g.rows.size());
      parts.push_back(Tensor::zeros(s, result.dtype(), result.device()));
      continue;
    }
    parts.push_back(adapter_branch(select_rows(x, g.rows), g.adapter).to(result.dtype()));
    any = true;
  }
  if (!any) return result;
  return add(result, assemble_rows(parts, groups));
}

std::optional<Tensor> LoraLayer::mixed_batch_multi(const Tensor&, const Tensor&, const std::vector<std::string>&) {
  return std::nullopt;
}

Tensor LoraLayer::adapter_branch(const Tensor& x, const std::string& name) {
  nn::ModulePtr A = dict("lora_A")[name], B = dict("lora_B")[name];
  const DType dt = A->param("weight").dtype();
  Tensor h = dict("lora_dropout")[name]->forward(x.dtype() == dt ? x : x.to(dt));
  return mul(B->forward(A->forward(h)), scaling(name));
}

void LoraLayer::delete_adapter(const std::string& name) {
  PEFT_CHECK(settings_.count(name), type_name(), ": no adapter named '", name, "'");
  PEFT_CHECK(std::find(merged_.begin(), merged_.end(), name) == merged_.end(), type_name(), ": adapter '", name,
             "' is merged; unmerge it before deleting it");
  for (auto& [cname, c] : named_children()) {
    if (cname == "base_layer") continue;
    if (c->has_child(name)) c->unregister_module(name);
    if (c->has_param(name)) c->unregister_parameter(name);
  }
  settings_.erase(name);
  order_.erase(std::find(order_.begin(), order_.end(), name));
  active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
}

void LoraLayer::mark_merged(const std::string& name) {
  PEFT_CHECK(settings_.count(name), type_name(), ": no adapter named '", name, "' to mark as merged");
  merged_.push_back(name);
}

std::string LoraLayer::pop_merged() {
  PEFT_CHECK(!merged_.empty(), type_name(), ": nothing is merged");
  std::string n = merged_.back();
  merged_.pop_back();
  return n;
}

Tensor LoraLayer::merge_change(const std::string& name, MergePhase phase) {
  Tensor delta = get_delta_weight(name);
  if (!settings(name).use_dora) return delta;
  auto dora = std::dynamic_pointer_cast<DoraLayer>(dict("lora_magnitude_vector")[name]);
  PEFT_CHECK(dora != nullptr, type_name(), ": DoRA adapter '", name, "' has no magnitude vector");
  return dora_effective_delta(phase, *dora, merge_target(), delta);
}

Tensor& LoraLayer::merge_target() { return base_layer()->param("weight"); }

Tensor LoraLayer::get_delta_weight(const std::string&) const {
  PEFT_ERROR(type_name(), ": this LoRA layer does not support merging");
}

void LoraLayer::merge(bool safe_merge, const std::vector<std::string>& adapter_names) {
  std::vector<std::string> names = adapter_names.empty() ? forward_adapters() : adapter_names;
  NoGradGuard g;
  Tensor& w = merge_target();
  for (const auto& n : names) {
    PEFT_CHECK(settings_.count(n), type_name(), ": no adapter named '", n, "' to merge");
    if (std::find(merged_.begin(), merged_.end(), n) != merged_.end()) continue;
    Tensor delta = merge_change(n, MergePhase::Merging);
    if (safe_merge) {
      Tensor merged = add(w.detach(), delta);
      PEFT_CHECK(!autograd::has_nonfinite(merged), "NaNs detected in the merged weights. The adapter ", n, " seems to be broken");
      w.copy_(merged);
    } else {
      w.add_(delta);
    }
    merged_.push_back(n);
  }
}

void LoraLayer::unmerge() {
  NoGradGuard g;
  Tensor& w = merge_target();
  while (!merged_.empty()) {
    std::string n = merged_.back();
    merged_.pop_back();
    w.add_(merge_change(n, MergePhase::Unmerging), -1.0);
  }
}

// ---------------------------------------------------------------- LoraLinear

LoraLinear::LoraLinear(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& s)
    : LoraLayer(base) {
  PEFT_CHECK(std::dynamic_pointer_cast<nn::Linear>(base) != nullptr, "lora.Linear: base layer must be a Linear, got ",
             base->type_name());
  update_layer(adapter_name, s);
}

void LoraLinear::update_layer(const std::string& name, const LoraLayerSettings& s) {
  PEFT_CHECK(!(s.lora_bias && s.use_dora),
             "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False");
  auto base = std::dynamic_pointer_cast<nn::Linear>(base_layer());
  // Data-driven inits are computed first: a refusal (dtype, rank) leaves the layer as it was.
  const bool data_init = s.init == LoraInit::Pissa || s.init == LoraInit::PissaNiter || s.init == LoraInit::Olora ||
                         s.init == LoraInit::Orthogonal;
  LinearInit init = data_init ? lora_linear_init(base->weight(), s) : LinearInit{};
  add_adapter_settings(name, s);
  const DType dt = base->weight().dtype();
  dict("lora_dropout").insert(name, s.lora_dropout > 0 ? nn::ModulePtr(std::make_shared<nn::Dropout>(s.lora_dropout))
                                                       : nn::ModulePtr(std::make_shared<nn::Identity>()));
  auto A = std::make_shared<nn::Linear>(base->in_features(), s.r, false, dt);
  auto B = std::make_shared<nn::Linear>(s.r, base->out_features(), s.lora_bias, dt);
  // PEFT's reset_lora_parameters: True → A kaiming_uniform(a=√5), B = 0; "gaussian" → A ~ N(0, 1/r),
  // B = 0; False → both keep nn.Linear's random init.
  if (s.init == LoraInit::Gaussian) nn::init::normal_(A->weight(), 0.0, 1.0 / static_cast<double>(s.r));
  // pissa / olora / orthogonal are computed from the base weight (adapters/lora_init.h); PiSSA and
  // OLoRA also rewrite it to W - scaling·B·A (before DoRA's norm reads it, as PEFT).
  if (data_init) {
    NoGradGuard g;
    A->weight().copy_(init.A);
    B->weight().copy_(init.B);
    if (init.residual.defined()) overwrite_base_weight(base->weight(), init.residual);
  } else if (s.init != LoraInit::Random) {
    nn::init::zeros_(B->weight());
    if (s.lora_bias) {
      Tensor b = B->bias();
      nn::init::zeros_(b);
    }
  }
  // Initialised on the CPU (the same random stream on every device), then placed beside the base
  // weight before DoRA's norm reads both.
  A->to(base_device());
  B->to(base_device());
  dict("lora_A").insert(name, A);
  dict("lora_B").insert(name, B);
  if (s.use_dora) {  // after A and B are initialised, as PEFT's DoraLinearVariant.init
    auto dora = std::make_shared<DoraLayer>(DoraLayer::Kind::Linear);
    NoGradGuard g;
    dora->init(base->weight(), matmul(B->weight(), A->weight()), s.scaling());
    dict("lora_magnitude_vector").insert(name, dora);
  }
  if (!base->is_training()) train(false);
  else train(is_training());
}

Tensor LoraLinear::forward(const Tensor& x) {
  if (auto mixed = mixed_batch_forward(x)) return *mixed;
  nn::ModulePtr base = base_layer();
  std::vector<std::string> names = prepare_forward();
  if (names.empty()) return base->forward(x);
  Tensor w = base->param("weight");
  Tensor b = base->has_param("bias") ? base->param("bias") : Tensor();
  Tensor result;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    const LoraLayerSettings& s = settings(n);
    if (s.use_dora) {
      if (i == 0) result = base->forward(x);
      result = dora_forward(x, n, result);
      continue;
    }
    auto A = std::dynamic_pointer_cast<nn::Linear>(dict("lora_A")[n]);
    auto B = std::dynamic_pointer_cast<nn::Linear>(dict("lora_B")[n]);
    const double p = is_training() ? s.lora_dropout : 0.0;  // the fused op's own dropout
    const DType adt = A->weight().dtype();
    if (i == 0 && (adt == x.dtype() || names.size() == 1)) {
      // The base product and the first adapter in one fused op (F32 adapters on a BF16 base too:
      // lora_linear follows PEFT's mixed-dtype order, or runs the CUDA fast path). With several
      // adapters in another dtype the sum stays promoted across them (the branch below).
      result = lora_linear(x, w, b, A->weight(), B->weight(), s.scaling(), p, is_training());
    } else {
      // Adapters in another dtype than the base (autocast_adapter_dtype: BF16 base, F32
      // adapters): as PEFT, x is cast to the adapter's dtype, the sum is kept in the promoted
      // dtype across adapters and cast back to x's dtype once at the end.
      if (i == 0) result = base->forward(x);
      Tensor h = dict("lora_dropout")[n]->forward(adt == x.dtype() ? x : x.to(adt));
      Tensor low = mul(linear(linear(h, A->weight()), B->weight()), s.scaling());
      const DType pt = promote_float_types(result.dtype(), low.dtype());
      result = add(result.to(pt), low.to(pt));
    }
    if (s.lora_bias) {
      Tensor lb = mul(B->bias(), s.scaling());
      const DType pt = promote_float_types(result.dtype(), lb.dtype());
      result = add(result.to(pt), lb.to(pt));
    }
  }
  return result.dtype() == x.dtype() ? result : result.to(x.dtype());
}

std::optional<Tensor> LoraLinear::mixed_batch_multi(const Tensor& x, const Tensor& result,
                                                    const std::vector<std::string>& names) {
  // lora_multi covers plain LoRA in inference: no dropout (training), no lora_bias, one dtype
  // for every adapter used, no gradient to record. Anything else takes the row-group path.
  if (is_training() || x.dim() < 2 || x.numel() == 0) return std::nullopt;
  std::map<std::string, int64_t> slot;
  std::vector<Tensor> As, Bs;
  std::vector<double> scales;
  bool needs_grad = x.requires_grad() || result.requires_grad();
  for (const std::string& n : names) {
    if (n == kBaseAdapterName || !has_adapter(n) || slot.count(n)) continue;
    if (settings(n).lora_bias) return std::nullopt;
    Tensor A = dict("lora_A")[n]->param("weight"), B = dict("lora_B")[n]->param("weight");
    if (A.dtype() != B.dtype() || (!As.empty() && A.dtype() != As[0].dtype())) return std::nullopt;
    needs_grad = needs_grad || A.requires_grad() || B.requires_grad();
    slot[n] = static_cast<int64_t>(As.size());
    As.push_back(A);
    Bs.push_back(B);
    scales.push_back(scaling(n));
  }
  if (As.empty()) return result;
  if (needs_grad && GradMode::is_enabled()) return std::nullopt;
  if (!lora_multi_supported(As[0].dtype(), result.dtype(), x.device())) return std::nullopt;
  const int64_t in = x.shape().back(), out = result.shape().back();
  const int64_t rows = x.shape()[0], per_row = x.numel() / (rows * in);  // tokens per batch row
  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(rows * per_row));
  for (const std::string& n : names) {
    auto it = slot.find(n);
    ids.insert(ids.end(), static_cast<size_t>(per_row), it == slot.end() ? -1 : it->second);
  }
  Tensor x2 = x.reshape({-1, in});
  if (x2.dtype() != As[0].dtype()) x2 = x2.to(As[0].dtype());
  return lora_multi(result.reshape({-1, out}), x2, As, Bs, scales, ids).reshape(result.shape());
}

Tensor LoraLinear::dora_forward(const Tensor& x, const std::string& n, const Tensor& result) {
  auto base = std::dynamic_pointer_cast<nn::Linear>(base_layer());
  auto A = std::dynamic_pointer_cast<nn::Linear>(dict("lora_A")[n]);
  auto B = std::dynamic_pointer_cast<nn::Linear>(dict("lora_B")[n]);
  auto dora = std::dynamic_pointer_cast<DoraLayer>(dict("lora_magnitude_vector")[n]);
  nn::ModulePtr dropout = dict("lora_dropout")[n];
  const double s = scaling(n);
  Tensor w = base->weight();
  // PEFT: without dropout (or in eval) the base product is `result` minus the bias; with dropout
  // it is recomputed on the dropped-out input, which the LoRA branch then uses too.
  Tensor h = x, base_result;
  if (std::dynamic_pointer_cast<nn::Identity>(dropout) || !is_training()) {
    base_result = base->has_param("bias") ? sub(result, base->bias()) : result;
  } else {
    h = dropout->forward(x);
    base_result = linear(h, w);
  }
  Tensor lora_weight;
  {
    NoGradGuard g;
    lora_weight = matmul(B->weight(), A->weight());
  }
  Tensor f = dora->scale(w, lora_weight, s);  // (out): broadcasts over the last dim
  Tensor lora_result = B->forward(A->forward(h));
  return add(result, add(mul(add(f, -1.0), base_result), mul(mul(f, lora_result), s)));
}

Tensor LoraLinear::get_delta_weight(const std::string& name) const {
  auto A = std::dynamic_pointer_cast<nn::Linear>(dict("lora_A")[name]);
  auto B = std::dynamic_pointer_cast<nn::Linear>(dict("lora_B")[name]);
  NoGradGuard g;
  return mul(matmul(B->weight(), A->weight()), scaling(name));
}

void LoraLinear::merge(bool safe_merge, const std::vector<std::string>& adapter_names) {
  std::vector<std::string> names = adapter_names.empty() ? forward_adapters() : adapter_names;
  auto base = base_layer();
  for (const auto& n : names) {
    if (settings(n).lora_bias)
      PEFT_CHECK(base->has_param("bias"), "Impossible to merge LoRA with `lora_bias=True` because the base layer has "
                 "no bias.");
  }
  const size_t before = merged_adapters().size();
  LoraLayer::merge(safe_merge, names);
  // lora_bias: the LoRA bias joins the base bias.
  NoGradGuard g;
  for (size_t i = before; i < merged_adapters().size(); ++i) {
    const std::string& n = merged_adapters()[i];
    if (!settings(n).lora_bias) continue;
    auto B = std::dynamic_pointer_cast<nn::Linear>(dict("lora_B")[n]);
    base->param("bias").add_(B->bias(), scaling(n));
  }
}

void LoraLinear::unmerge() {
  {
    NoGradGuard g;
    auto base = base_layer();
    for (const auto& n : merged_adapters()) {
      if (!settings(n).lora_bias) continue;
      auto B = std::dynamic_pointer_cast<nn::Linear>(dict("lora_B")[n]);
      base->param("bias").add_(B->bias(), -scaling(n));
    }
  }
  LoraLayer::unmerge();
}

}  // namespace peft
