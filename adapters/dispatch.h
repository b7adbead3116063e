// The type → LoRA-layer dispatch registry (DESIGN.md decision 8): built-in entries live in an
// explicit table filled by register_builtin_lora_layers(); a config's custom entries are
// consulted first, in registration order, and may override a built-in type.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "adapters/lora_config.h"

namespace peft {

// The built-in table: Linear, Embedding, Conv2d, Conv1D, MultiheadAttention (filled on first use).
const std::vector<LoraDispatchEntry>& builtin_lora_layers();
// Every type a config can adapt, custom entries first: {"LSTM", "Linear", "Embedding", "Conv2d"}.
std::vector<std::string> supported_lora_types(const LoraConfig& config);
// The entry that adapts `module`, or nullptr.
const LoraDispatchEntry* find_lora_dispatch(const LoraConfig& config, const nn::Module& module);
// "Target module <type> is not supported. Currently, only the following modules are supported: ..."
[[noreturn]] void throw_unsupported_module(const LoraConfig& config, const nn::Module& module);

}  // namespace peft
