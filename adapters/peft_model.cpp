#include "adapters/peft_model.h"

#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <set>

#include "adapters/lora_init.h"
#include "adapters/mixed_batch.h"
#include "core/log.h"
#include "io/tensor_io.h"

namespace peft {

namespace {
std::string with_commas(int64_t v) {
  std::string s = std::to_string(v), out;
  int n = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (n && n % 3 == 0 && *it != '-') out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++n;
  }
  return out;
}

void make_dirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!cur.empty() && cur != "/") {
        struct stat st;
        if (::stat(cur.c_str(), &st) != 0)
          PEFT_CHECK(::mkdir(cur.c_str(), 0777) == 0 || errno == EEXIST, "save_pretrained: cannot create '", cur, "'");
        else
          PEFT_CHECK(S_ISDIR(st.st_mode), "save_pretrained: '", cur, "' exists and is not a directory");
      }
    }
    if (i < dir.size()) cur += dir[i];
  }
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// PEFT's text, with the keys as a PeftModel names them.
std::string missing_keys_warning(const std::vector<std::string>& missing) {
  std::string list;
  for (const auto& m : missing) list += std::string(list.empty() ? "'" : ", '") + "base_model.model." + m + "'";
  return "Found missing adapter keys while loading the checkpoint: [" + list + "].";
}

// PEFT is silent here; a C++ user porting a model wants to know a key went nowhere.
std::string unexpected_keys_warning(const std::vector<std::string>& keys) {
  std::string list;
  for (const auto& k : keys) list += (list.empty() ? "'" : ", '") + k + "'";
  return "Ignored checkpoint keys that match no adapter tensor of the model: [" + list + "].";
}
bool contains(const std::string& s, const std::string& p) { return s.find(p) != std::string::npos; }

// Dotted module names of every modules_to_save wrapper under `model`.
std::vector<std::string> wrapper_names(nn::Module& model) {
  std::vector<std::string> out;
  for (auto& [n, m] : model.named_modules())
    if (dynamic_cast<ModulesToSaveWrapper*>(m.get())) out.push_back(n);
  return out;
}
}  // namespace

namespace {
// set_peft_model_state_dict plus the warnings PEFT gives for the result.
void load_adapter_state(nn::Module& model, const NamedTensors& state, const std::string& adapter,
                        std::vector<std::string>& warnings) {
  AdapterLoadResult r = set_peft_model_state_dict(model, state, adapter);
  if (!r.missing_keys.empty()) warnings.push_back(missing_keys_warning(r.missing_keys));
  if (!r.unexpected_keys.empty()) warnings.push_back(unexpected_keys_warning(r.unexpected_keys));
}
}  // namespace

// ---------------------------------------------------------------- state dict ↔ PEFT keys

NamedTensors get_peft_model_state_dict(nn::Module& model, const LoraConfig& config, const std::string& adapter,
                                       const std::string& prefix) {
  NamedTensors sd = model.state_dict();
  std::map<std::string, Tensor> by_name(sd.begin(), sd.end());
  NamedTensors out;
  auto emit = [&](const std::string& key, const Tensor& t) { out.emplace_back(prefix + key, t.detach()); };
  const std::string tag = "." + adapter;
  for (const auto& [k, t] : sd) {
    if (!contains(k, "lora_")) continue;
    // Keep only this adapter's tensors: "<mod>.lora_A.<adapter>.weight" or "<mod>.lora_embedding_A.<adapter>".
    const size_t pos = k.find("lora_");
    const size_t dot = k.find('.', pos);
    if (dot == std::string::npos) continue;
    const std::string rest = k.substr(dot + 1);
    if (rest != adapter && !starts_with(rest, adapter + ".")) continue;
    std::string key = k.substr(0, dot) + k.substr(dot + tag.size());
    // DoRA: PEFT saves the magnitude module's "weight" as "<mod>.lora_magnitude_vector".
    const std::string mag = "lora_magnitude_vector.weight";
    if (key.size() >= mag.size() && key.compare(key.size() - mag.size(), mag.size(), mag) == 0)
      key = key.substr(0, key.size() - 7);
    emit(key, t);
    if (config.bias == "lora_only") {
      const std::string bias = k.substr(0, pos) + "base_layer.bias";
      if (by_name.count(bias) && std::none_of(out.begin(), out.end(), [&](const auto& kv) { return kv.first == prefix + bias; }))
        emit(bias, by_name[bias]);
    }
  }
  if (config.bias == "all")
    for (const auto& [k, t] : sd)
      if (contains(k, "bias") && !contains(k, "lora_") && !contains(k, ".modules_to_save.") &&
          !contains(k, ".original_module."))
        emit(k, t);
  for (const auto& w : wrapper_names(model)) {
    const std::string copy = w + ".modules_to_save." + adapter + ".";
    for (const auto& [k, t] : sd)
      if (starts_with(k, copy)) emit(w + "." + k.substr(copy.size()), t);
  }
  return out;
}

AdapterLoadResult set_peft_model_state_dict(nn::Module& model, const NamedTensors& state,
                                            const std::string& adapter) {
  NamedTensors sd = model.state_dict();
  std::map<std::string, Tensor> mine(sd.begin(), sd.end());
  std::vector<std::string> wrappers = wrapper_names(model);
  std::vector<std::pair<std::string, Tensor>> mapped;
  std::vector<std::string> unexpected;
  for (const auto& [key_in, t] : state) {
    std::string k = starts_with(key_in, "base_model.model.") ? key_in.substr(17) : key_in;
    const size_t pos = k.find("lora_");
    if (pos != std::string::npos) {
      const size_t dot = k.find('.', pos);
      const bool magnitude = k.compare(pos, std::string::npos, "lora_magnitude_vector") == 0;
      k = dot == std::string::npos ? k + "." + adapter : k.substr(0, dot) + "." + adapter + k.substr(dot);
      if (magnitude) k += ".weight";  // PEFT saves it without ".weight"
    } else {
      for (const auto& w : wrappers)
        if (starts_with(k, w + ".") && !starts_with(k, w + ".original_module.") && !starts_with(k, w + ".modules_to_save."))
          k = w + ".modules_to_save." + adapter + k.substr(w.size());
    }
    auto it = mine.find(k);
    if (it == mine.end()) {
      unexpected.push_back(key_in);
      continue;
    }
    PEFT_CHECK(it->second.shape() == t.shape(), "Error(s) in loading state_dict for PeftModel: size mismatch for ", k,
               ": copying a param with shape ", shape_str(t.shape()), " from checkpoint, the shape in current model is ",
               shape_str(it->second.shape()), ".");
    PEFT_CHECK(is_floating(t.dtype()), "loading adapter: tensor '", key_in, "' has dtype ", dtype_name(t.dtype()),
               ", expected a floating point type");
    mapped.emplace_back(it->first, t);
  }
  PEFT_CHECK(unexpected.empty() || !mapped.empty() || state.empty(), "loading adapter: none of the ", state.size(),
             " tensors in the file belong to this model (first: '", unexpected.empty() ? "" : unexpected[0], "')");
  // Missing: this adapter's tensors the file did not provide.
  std::set<std::string> loaded;
  for (const auto& kv : mapped) loaded.insert(kv.first);
  std::vector<std::string> missing;
  for (const auto& [k, t] : sd) {
    const bool ends_with_adapter = k.size() > adapter.size() + 1 &&
                                   k.compare(k.size() - adapter.size() - 1, std::string::npos, "." + adapter) == 0;
    const bool mine_lora = contains(k, "lora_") && (contains(k, "." + adapter + ".") || ends_with_adapter);
    const bool mine_copy = contains(k, ".modules_to_save." + adapter + ".");
    if ((mine_lora || mine_copy) && !loaded.count(k)) missing.push_back(k);
  }
  NoGradGuard g;
  for (auto& [k, t] : mapped) mine[k].copy_(t);
  return {missing, unexpected};
}

// ---------------------------------------------------------------- PeftModel

DisableAdapterGuard::DisableAdapterGuard(PeftModel& m) : model_(m) { model_.base_model()->enable_adapter_layers(false); }
DisableAdapterGuard::~DisableAdapterGuard() { model_.base_model()->enable_adapter_layers(true); }

PeftModel::PeftModel(nn::ModulePtr model, const LoraConfig& config, const std::string& adapter_name,
                     bool autocast_adapter_dtype) {
  register_module("base_model", std::make_shared<LoraModel>(model, config, adapter_name));
  if (autocast_adapter_dtype) base_model()->cast_adapter_dtype(adapter_name);
  training_ = model->is_training();
}

Tensor PeftModel::forward(const Tensor& x, const std::vector<std::string>& adapter_names) {
  PEFT_CHECK(!is_training(), "Cannot pass `adapter_names` when the model is in training mode.");
  std::set<std::string> known, unknown;
  for (const auto& [n, layer] : base_model()->lora_layers())
    for (const std::string& a : layer->adapter_names()) known.insert(a);
  for (const std::string& a : adapter_names)
    if (a != kBaseAdapterName && !known.count(a)) unknown.insert(a);  // std::set: sorted, as PEFT
  if (!unknown.empty()) {
    std::string list;
    for (const std::string& a : unknown) list += (list.empty() ? "" : ", ") + a;
    PEFT_ERROR("Trying to infer with non-existing adapter(s): ", list);
  }
  MixedBatchScope scope(adapter_names);
  return forward(x);
}

std::shared_ptr<LoraModel> PeftModel::base_model() const {
  return std::dynamic_pointer_cast<LoraModel>(child("base_model"));
}

std::pair<int64_t, int64_t> PeftModel::get_nb_trainable_parameters() const {
  int64_t trainable = 0, all = 0;
  for (auto& [n, p] : named_parameters()) {
    all += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  return {trainable, all};
}

void PeftModel::print_trainable_parameters(std::ostream& os) const {
  auto [trainable, all] = get_nb_trainable_parameters();
  char pct[64];
  std::snprintf(pct, sizeof pct, "%.4f", all ? 100.0 * static_cast<double>(trainable) / static_cast<double>(all) : 0.0);
  os << "trainable params: " << with_commas(trainable) << " || all params: " << with_commas(all)
     << " || trainable%: " << pct << "\n";
}

void PeftModel::print_trainable_parameters() const { print_trainable_parameters(std::cout); }

std::vector<Tensor> PeftModel::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, p] : named_parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

void PeftModel::add_adapter(const std::string& name, const LoraConfig& config, bool autocast_adapter_dtype) {
  base_model()->inject_adapter(config, name);
  if (autocast_adapter_dtype) base_model()->cast_adapter_dtype(name);
}

void PeftModel::set_adapter(const std::vector<std::string>& names) { base_model()->set_adapter(names); }

void PeftModel::save_pretrained(const std::string& dir, const std::vector<std::string>& adapters) const {
  save_pretrained(dir, adapters, SaveOptions{});
}

void PeftModel::save_pretrained(const std::string& dir, const std::vector<std::string>& adapters,
                                const SaveOptions& options) const {
  std::vector<std::string> names = adapters;
  if (names.empty())
    for (const auto& kv : peft_config()) names.push_back(kv.first);
  for (const auto& n : names) PEFT_CHECK(peft_config().count(n), "save_pretrained: unknown adapter '", n, "'");
  for (const auto& n : names) {
    const std::string out_dir = n == "default" ? dir : dir + "/" + n;
    LoraConfig cfg = base_model()->config(n);
    NamedTensors sd = get_peft_model_state_dict(*model(), cfg, n, "base_model.model.");
    if (options.path_initial_model_for_weight_conversion) {
      // Everything is read and checked before the first file is written (adapters/lora_init.h).
      const std::string& init_dir = *options.path_initial_model_for_weight_conversion;
      const LoraInit i = cfg.init_lora_weights;
      if (!(init_mutates_base_weight(i) || i == LoraInit::Default))
        log_warning("`path_initial_model_for_weight_conversion` only works for converting a PiSSA/CorDA/OLoRA/LoRA-GA "
                    "adapter to a LoRA adapter");
      LoraConfig converted = converted_lora_config(cfg);
      sd = subtract_mutated_init(sd, io::load_file(init_dir + "/adapter_model.safetensors"));
      LoraConfig initial = cfg;
      initial.init_lora_weights = LoraInit::Default;
      initial.pissa_niter = 0;
      initial.save(init_dir);
      cfg = converted;
    }
    make_dirs(out_dir);
    cfg.inference_mode = true;
    cfg.auto_mapping = std::make_pair(model()->type_name(), std::string("peft.cpp"));
    io::save_file(sd, out_dir + "/adapter_model.safetensors", {{"format", "pt"}});
    cfg.save(out_dir);
  }
}

void PeftModel::load_adapter(const std::string& dir, const std::string& name, bool is_trainable,
                             std::vector<std::string>* warnings) {
  std::vector<std::string> local;
  std::vector<std::string>* w = warnings ? warnings : &local;
  LoraConfig cfg = LoraConfig::from_pretrained(dir, w);
  cfg.inference_mode = !is_trainable;
  NamedTensors state = io::load_file(dir + "/adapter_model.safetensors");
  // Snapshot for rollback: which modules were adapter containers and every requires_grad flag.
  std::set<std::string> before;
  for (auto& [n, m] : model()->named_modules())
    if (dynamic_cast<LoraLayer*>(m.get()) || dynamic_cast<ModulesToSaveWrapper*>(m.get())) before.insert(n);
  std::vector<std::pair<Tensor, bool>> flags;
  for (auto& [n, p] : named_parameters()) flags.emplace_back(p, p.requires_grad());
  BaseWeightGuard base_weights;  // a PiSSA / OLoRA config rewrites base weights: put back on failure
  base_model()->inject_adapter(cfg, name);
  try {
    // PEFT: the new adapter is not active, so it starts frozen; is_trainable makes it trainable.
    if (is_trainable) set_requires_grad({name}, true);
    base_model()->cast_adapter_dtype(name);  // before loading, so F32 files are not rounded to BF16
    load_adapter_state(*model(), state, name, *w);
    base_weights.commit();
  } catch (...) {
    base_model()->delete_adapter(name);
    for (auto& [n, l] : base_model()->lora_layers())
      if (!before.count(n) && l->adapter_names().empty()) model()->set_submodule(n, l->base_layer());
    for (auto& [n, wr] : base_model()->wrappers())
      if (!before.count(n) && wr->copies().size() == 0) model()->set_submodule(n, wr->original_module());
    for (auto& [p, rg] : flags) p.set_requires_grad(rg);
    throw;
  }
  if (!warnings)
    for (const auto& m : local) log_warning(m);
  if (!is_trainable) eval();
}

std::shared_ptr<PeftModel> PeftModel::from_pretrained(nn::ModulePtr model, const std::string& dir,
                                                      std::optional<LoraConfig> config, const std::string& adapter_name,
                                                      bool is_trainable, std::vector<std::string>* warnings) {
  std::vector<std::string> local;
  std::vector<std::string>* w = warnings ? warnings : &local;
  LoraConfig cfg = config ? *config : LoraConfig::from_pretrained(dir, w);
  cfg.inference_mode = !is_trainable;
  NamedTensors state = io::load_file(dir + "/adapter_model.safetensors");
  std::vector<std::pair<Tensor, bool>> flags;
  for (auto& [n, p] : model->named_parameters()) flags.emplace_back(p, p.requires_grad());
  BaseWeightGuard base_weights;  // a PiSSA / OLoRA config rewrites base weights: put back on failure
  auto pm = std::make_shared<PeftModel>(model, cfg, adapter_name);
  try {
    load_adapter_state(*pm->model(), state, adapter_name, *w);
    base_weights.commit();
  } catch (...) {
    pm->base_model()->unload_impl(false, false, {}, false);  // the user's model gets its own layers back
    for (auto& [p, rg] : flags) p.set_requires_grad(rg);
    throw;
  }
  if (!warnings)
    for (const auto& m : local) log_warning(m);
  if (!is_trainable) pm->eval();  // PEFT puts a model loaded for inference in eval mode
  return pm;
}

std::shared_ptr<PeftModel> get_peft_model(nn::ModulePtr model, const LoraConfig& config, const std::string& adapter_name,
                                          bool autocast_adapter_dtype) {
  return std::make_shared<PeftModel>(model, config, adapter_name, autocast_adapter_dtype);
}

}  // namespace peft
