#include "adapters/dispatch.h"

#include "adapters/lora_conv1d.h"
#include "adapters/lora_conv2d.h"
#include "adapters/lora_conv_nd.h"
#include "adapters/lora_embedding.h"
#include "adapters/lora_layer.h"
#include "adapters/lora_mha.h"
#include "layers/conv.h"
#include "layers/conv_nd.h"
#include "layers/embedding.h"
#include "layers/hf_conv1d.h"
#include "layers/linear.h"
#include "layers/multihead_attention.h"

namespace peft {

namespace {
template <class Base, class LoraT>
LoraDispatchEntry make_entry(const std::string& name) {
  LoraDispatchEntry e;
  e.base_type = name;
  e.matches = [](const nn::Module& m) { return dynamic_cast<const Base*>(&m) != nullptr; };
  e.create = [](nn::ModulePtr base, const std::string& adapter, const LoraLayerSettings& s) -> std::shared_ptr<LoraLayer> {
    return std::make_shared<LoraT>(base, adapter, s);
  };
  return e;
}

std::vector<LoraDispatchEntry> register_builtin_lora_layers() {
  std::vector<LoraDispatchEntry> t;
  // The order of PEFT's "only the following modules are supported" list.
  t.push_back(make_entry<nn::Linear, LoraLinear>("Linear"));
  t.push_back(make_entry<nn::Embedding, LoraEmbedding>("Embedding"));
  t.push_back(make_entry<nn::Conv1d, LoraConvNd>("Conv1d"));
  t.push_back(make_entry<nn::Conv2d, LoraConv2d>("Conv2d"));
  t.push_back(make_entry<nn::Conv3d, LoraConvNd>("Conv3d"));
  t.push_back(make_entry<nn::Conv1D, LoraConv1D>("Conv1D"));  // transformers' (GPT-2), after torch's convs
  t.push_back(make_entry<nn::MultiheadAttention, LoraMultiheadAttention>("MultiheadAttention"));
  return t;
}
}  // namespace

const std::vector<LoraDispatchEntry>& builtin_lora_layers() {
  static const std::vector<LoraDispatchEntry> table = register_builtin_lora_layers();
  return table;
}

std::vector<std::string> supported_lora_types(const LoraConfig& config) {
  std::vector<std::string> out;
  for (const auto& e : config.custom_modules()) out.push_back(e.base_type);
  for (const auto& e : builtin_lora_layers()) {
    bool seen = false;
    for (const auto& n : out) seen = seen || n == e.base_type;
    if (!seen) out.push_back(e.base_type);
  }
  return out;
}

const LoraDispatchEntry* find_lora_dispatch(const LoraConfig& config, const nn::Module& module) {
  for (const auto& e : config.custom_modules())
    if (e.matches(module)) return &e;
  for (const auto& e : builtin_lora_layers())
    if (e.matches(module)) return &e;
  return nullptr;
}

void throw_unsupported_module(const LoraConfig& config, const nn::Module& module) {
  std::string list;
  for (const auto& n : supported_lora_types(config)) list += (list.empty() ? "`" : ", `") + n + "`";
  std::string repr = module.repr();
  PEFT_ERROR("Target module ", repr, " is not supported. Currently, only the following modules are "
             "supported: ", list, ".");
}

}  // namespace peft
