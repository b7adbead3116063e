#include "adapters/hotswap.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>

#include "adapters/lora_conv2d.h"
#include "adapters/lora_embedding.h"
#include "adapters/peft_model.h"
#include "io/tensor_io.h"
#include "layers/conv.h"
#include "layers/linear.h"

namespace peft {

namespace {

bool contains(const std::string& s, const std::string& p) { return s.find(p) != std::string::npos; }

// torch.Size([4, 6]): how PEFT's messages print shapes.
std::string torch_size(const Shape& s) {
  std::string out = "torch.Size([";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "])";
}

// Python's repr of a float (shortest round-trip form, "0.0" not "0"), for PEFT's config messages.
std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

// alpha_pattern as Python prints the dict: {'lin0': 4}. Integral values print as ints, as the JSON
// PEFT reads them from usually holds them.
std::string py_dict(const std::vector<std::pair<std::string, double>>& d) {
  std::string out = "{";
  for (size_t i = 0; i < d.size(); ++i) {
    const double v = d[i].second;
    const bool integral = v == std::floor(v) && std::abs(v) < 1e15;
    const std::string num = integral ? std::to_string(static_cast<int64_t>(v)) : py_float(v);
    out += (i ? ", '" : "'") + d[i].first + "': " + num;
  }
  return out + "}";
}

// PEFT's get_pattern_key applied as hotswap applies it: to the full state-dict key.
template <class V>
const V* pattern_value(const std::vector<std::pair<std::string, V>>& patterns, const std::string& key) {
  for (const auto& kv : patterns)
    if (std::regex_match(key, std::regex("(.*\\.)?(" + kv.first + ")$"))) return &kv.second;
  return nullptr;
}

// PEFT's _insert_adapter_name_into_state_dict for LoRA keys, with the engine's DoRA naming (the
// magnitude vector is a module whose tensor is "weight", as set_peft_model_state_dict maps it).
std::string with_adapter_name(const std::string& key, const std::string& adapter) {
  const size_t pos = key.find("lora_");
  if (pos == std::string::npos) return key;
  const size_t dot = key.find('.', pos);
  const bool magnitude = key.compare(pos, std::string::npos, "lora_magnitude_vector") == 0;
  std::string k = dot == std::string::npos ? key + "." + adapter : key.substr(0, dot) + "." + adapter + key.substr(dot);
  if (magnitude) k += ".weight";
  return k;
}

// One planned write: `dst` (a tensor of the model) gets `src`, zero-padded along `pad_dim` when >= 0
// (`groups`: the base Conv2d's, for lora_A's row blocks).
struct Write {
  Tensor dst, src;
  int pad_dim = -1;
  int64_t groups = 1;
};

// The base layer's groups (1 for anything but a grouped Conv2d).
int64_t base_groups(const LoraLayer& l) {
  auto conv = std::dynamic_pointer_cast<nn::Conv2d>(l.base_layer());
  return conv ? conv->config().groups : 1;
}

// Copies `src` (rank r) into `dst` (rank R >= r) along the rank dimension `dim`, after zeroing dst.
// lora_A of a grouped Conv2d keeps one block of rows per group (B's group g reads A's rows
// [g·R/G, (g+1)·R/G)), so each group's rows go to the start of that group's block (PEFT's
// _copy_grouped_conv2d_lora_a_weights); everything else fills the leading rows / columns.
void copy_padded(Tensor dst, const Tensor& src, int64_t dim, int64_t groups) {
  dst.zero_();
  if (dim != 0 || groups == 1) {
    Tensor part = dst.slice(dim, 0, src.size(dim));
    part.copy_(src);
    return;
  }
  const int64_t dst_block = dst.size(0) / groups, src_block = src.size(0) / groups;
  for (int64_t g = 0; g < groups; ++g) {
    Tensor part = dst.slice(0, g * dst_block, g * dst_block + src_block);
    part.copy_(src.slice(0, g * src_block, (g + 1) * src_block));
  }
}

// New lora_A / lora_B modules of rank `target` for adapter `a` of a lora.Linear or lora.Conv2d
// (their in / out sizes are part of the module, so the modules are replaced), holding the old
// weights zero-padded: the extra rows of A meet zero columns of B, so B·A is unchanged. The
// layer's r becomes `target` (its forward and merge reshape by it); its scaling stays.
void pad_adapter(LoraLayer& l, const std::string& a, int64_t target) {
  nn::ModulePtr A = l.child("lora_A")->child(a), B = l.child("lora_B")->child(a);
  const Tensor wa = A->param("weight"), wb = B->param("weight");
  const int64_t r = wa.size(0);
  if (r == target) return;
  const int64_t groups = base_groups(l);
  nn::ModulePtr newA, newB;
  if (auto ca = std::dynamic_pointer_cast<nn::Conv2d>(A)) {
    auto cb = std::dynamic_pointer_cast<nn::Conv2d>(B);
    PEFT_CHECK(cb != nullptr, "prepare_model_for_compiled_hotswap: lora_B of adapter '", a, "' is not a Conv2d");
    newA = std::make_shared<nn::Conv2d>(ca->in_channels(), target, ca->kernel_size(), ca->config(), wa.dtype());
    newB = std::make_shared<nn::Conv2d>(target, cb->out_channels(), cb->kernel_size(), cb->config(), wb.dtype());
  } else {
    PEFT_CHECK(std::dynamic_pointer_cast<nn::Linear>(A) && std::dynamic_pointer_cast<nn::Linear>(B),
               "prepare_model_for_compiled_hotswap: adapter '", a, "' has no Linear lora_A / lora_B");
    newA = std::make_shared<nn::Linear>(wa.size(1), target, false, wa.dtype());
    newB = std::make_shared<nn::Linear>(target, wb.size(0), B->has_param("bias"), wb.dtype());
  }
  Shape sa = wa.shape(), sb = wb.shape();
  sa[0] = target;
  sb[1] = target / groups;
  Tensor pa = Tensor::zeros(sa, wa.dtype(), wa.device()), pb = Tensor::zeros(sb, wb.dtype(), wb.device());
  copy_padded(pa, wa, 0, groups);
  copy_padded(pb, wb, 1, groups);
  pa.set_requires_grad(wa.requires_grad());
  pb.set_requires_grad(wb.requires_grad());
  newA->param("weight") = pa;
  newB->param("weight") = pb;
  if (B->has_param("bias")) newB->param("bias") = B->param("bias");
  newA->train(A->is_training());
  newB->train(B->is_training());
  const double scaling = l.scaling(a);
  l.set_submodule("lora_A." + a, newA);
  l.set_submodule("lora_B." + a, newB);
  l.set_scaling(a, scaling, target);
}

}  // namespace

void prepare_model_for_compiled_hotswap(PeftModel& model, std::optional<int64_t> target_rank) {
  auto layers = model.base_model()->lora_layers();
  PEFT_CHECK(!layers.empty(),
             "No adapter layers found on the model, make sure call `prepare_model_for_compiled_hotswap` after loading "
             "the first adapter and before loading the second adapter.");
  if (!target_rank) return;
  const int64_t target = *target_rank;
  PEFT_CHECK(target > 0, "prepare_model_for_compiled_hotswap: target_rank must be positive, got ", target);
  // Check every layer first, then replace: a refusal leaves the model untouched.
  std::vector<std::shared_ptr<LoraLayer>> pad;
  for (auto& [name, l] : layers) {
    if (dynamic_cast<LoraEmbedding*>(l.get())) continue;  // PEFT pads Linear and Conv2d only
    const bool conv = dynamic_cast<LoraConv2d*>(l.get()) != nullptr;
    PEFT_CHECK(conv || dynamic_cast<LoraLinear*>(l.get()), "prepare_model_for_compiled_hotswap: padding to a target "
               "rank supports lora.Linear and lora.Conv2d layers; '", name, "' is ", l->type_name());
    const int64_t groups = base_groups(*l);
    PEFT_CHECK(target % groups == 0, "Trying to pad a Conv2d LoRA adapter with groups=", groups, " to target rank ",
               target, ", but the target rank is not divisible by ", groups, ". Please choose a target rank that is "
               "divisible by ", groups, ".");
    for (const auto& a : l->adapter_names()) {
      const int64_t r = l->child("lora_A")->child(a)->param("weight").size(0);
      PEFT_CHECK(r <= target, "Trying to pad the adapter to the target rank ", target,
                 ", but the original rank is larger (", r, "). This is not possible.");
    }
    pad.push_back(l);
  }
  NoGradGuard g;
  for (auto& l : pad)
    for (const auto& a : l->adapter_names()) pad_adapter(*l, a, target);
}

void check_hotswap_configs_compatible(const LoraConfig& loaded, const LoraConfig& incoming) {
  auto py_bool = [](bool b) { return std::string(b ? "True" : "False"); };
  PEFT_CHECK(loaded.use_rslora == incoming.use_rslora, "Configs are incompatible: for use_rslora, ",
             py_bool(loaded.use_rslora), " != ", py_bool(incoming.use_rslora));
  PEFT_CHECK(loaded.lora_dropout == incoming.lora_dropout, "Configs are incompatible: for lora_dropout, ",
             py_float(loaded.lora_dropout), " != ", py_float(incoming.lora_dropout));
  // Python compares the dicts regardless of key order.
  std::map<std::string, double> a(loaded.alpha_pattern.begin(), loaded.alpha_pattern.end());
  std::map<std::string, double> b(incoming.alpha_pattern.begin(), incoming.alpha_pattern.end());
  PEFT_CHECK(a == b, "Configs are incompatible: for alpha_pattern, ", py_dict(loaded.alpha_pattern), " != ",
             py_dict(incoming.alpha_pattern));
  PEFT_CHECK(loaded.use_dora == incoming.use_dora, "Configs are incompatible: for use_dora, ", py_bool(loaded.use_dora),
             " != ", py_bool(incoming.use_dora));
}

void hotswap_adapter_from_state_dict(PeftModel& model, const NamedTensors& state, const std::string& adapter_name,
                                     const LoraConfig& config) {
  LoraModel& lm = *model.base_model();
  PEFT_CHECK(lm.peft_config().count(adapter_name), "hotswap: the model has no adapter named '", adapter_name, "'");
  const std::string prefix = "base_model.model.";
  auto layers = lm.lora_layers();
  for (const auto& [n, l] : layers)
    for (const auto& m : l->merged_adapters())
      PEFT_CHECK(m != adapter_name, "Cannot hot-swap adapter '", adapter_name,
                 "' because it is currently merged into the base weights. Please unmerge the adapter first by calling "
                 "`peft_model.unmerge_adapter()` (or, for diffusers models, `diffusers_model.unfuse_lora()`); "
                 "unmerging after a swap of merged weights would otherwise corrupt them.");

  // This adapter's LoRA tensors by full key, with the layer each belongs to. (PEFT finds them by
  // substring, "lora_" and the adapter name anywhere in the key, which for a name like "a" also
  // takes other adapters' tensors; here only the adapter's own tensors count.)
  std::map<std::string, std::pair<Tensor, LoraLayer*>> own;
  for (const auto& [n, l] : layers)
    for (const auto& [p, t] : l->adapter_parameters(adapter_name)) own[prefix + n + "." + p] = {t, l.get()};
  std::set<std::string> model_keys;
  for (const auto& [k, t] : model.state_dict()) model_keys.insert(k);

  std::vector<std::string> unexpected;
  for (const auto& [k, t] : state)
    if (!model_keys.count(k)) unexpected.push_back(k);
  if (!unexpected.empty()) {
    std::string keys;
    for (size_t i = 0; i < unexpected.size(); ++i) keys += (i ? ", " : "") + unexpected[i];
    PEFT_ERROR("Hot swapping the adapter did not succeed, unexpected keys found: ", keys, ".");
  }

  std::vector<Write> writes;
  std::map<LoraLayer*, double> scalings;
  std::set<std::string> given;
  for (const auto& [k, src] : state) {
    auto it = own.find(k);
    // PEFT would copy into any attribute the key names (a base weight, another adapter); a swap
    // that is meant to change one adapter refuses to touch anything else.
    PEFT_CHECK(it != own.end(), "hotswap: '", k, "' is not a LoRA tensor of adapter '", adapter_name,
               "' (hot-swapping replaces LoRA weights only; modules_to_save and base weights are not swapped)");
    PEFT_CHECK(is_floating(src.dtype()), "hotswap: tensor '", k, "' has dtype ", dtype_name(src.dtype()),
               ", expected a floating point type");
    given.insert(k);
    const Tensor& dst = it->second.first;
    Write w{dst, src, -1, base_groups(*it->second.second)};
    if (dst.shape() != src.shape()) {
      // Only the rank dimension may differ (rows of lora_A, columns of lora_B), and only downwards:
      // a larger rank would need new tensors, which is what a swap in place must not do.
      int diff = -1, ndiff = 0;
      if (dst.dim() == src.dim())
        for (int64_t d = 0; d < dst.dim(); ++d)
          if (dst.size(d) != src.size(d)) diff = static_cast<int>(d), ++ndiff;
      const int rank_dim = contains(k, ".lora_A.") ? 0 : contains(k, ".lora_B.") ? 1 : -1;
      // A grouped Conv2d's lora_A is copied in per-group row blocks: the rank must split into them.
      const bool rank_only = ndiff == 1 && diff == rank_dim && (dst.dim() == 2 || dst.dim() == 4) &&
                             (diff != 0 || src.size(0) % w.groups == 0);
      PEFT_CHECK(rank_only && dst.size(diff) > src.size(diff), "Incompatible shapes found for LoRA weights ", k, ": ",
                 torch_size(dst.shape()), " vs ", torch_size(src.shape()),
                 ". Please ensure that all ranks are padded to the largest rank among all LoRA adapters by using "
                 "peft.utils.hotswap.prepare_model_for_compiled_hotswap.");
      w.pad_dim = diff;
    }
    writes.push_back(w);
    // The scaling from the incoming config, its patterns matched against the full key (PEFT).
    const int64_t* pr = pattern_value(config.rank_pattern, k);
    const double* pa = pattern_value(config.alpha_pattern, k);
    const double rank = static_cast<double>(pr ? *pr : config.r);
    const double alpha = pa ? *pa : config.lora_alpha;
    scalings[it->second.second] = config.use_rslora ? alpha / std::sqrt(rank) : alpha / rank;
  }

  NoGradGuard g;
  // Tensors the incoming adapter lacks stop contributing (PEFT zeroes them).
  for (auto& [k, entry] : own)
    if (!given.count(k)) entry.first.zero_();
  for (auto& w : writes) {
    if (w.pad_dim < 0) w.dst.copy_(w.src);
    else copy_padded(w.dst, w.src, w.pad_dim, w.groups);
  }
  for (auto& [layer, s] : scalings) layer->set_scaling(adapter_name, s);
}

void hotswap_adapter(PeftModel& model, const std::string& dir, const std::string& adapter_name) {
  std::vector<std::string> warnings;
  const LoraConfig config = LoraConfig::from_pretrained(dir, &warnings);
  check_hotswap_configs_compatible(model.peft_config().at(model.active_adapter()), config);
  NamedTensors file = io::load_file(dir + "/adapter_model.safetensors");
  NamedTensors state;
  state.reserve(file.size());
  for (auto& [k, t] : file) state.emplace_back(with_adapter_name(k, adapter_name), t);
  hotswap_adapter_from_state_dict(model, state, adapter_name, config);
}

}  // namespace peft
