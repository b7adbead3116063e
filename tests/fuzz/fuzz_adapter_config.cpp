// libFuzzer target: arbitrary bytes as adapter_config.json. Parsing is nlohmann's; what is
// fuzzed is LoraConfig::from_json (and validate / to_json on what it accepts), which must
// either throw peft::Error (or a nlohmann type error it lets through) or return a config that
// survives a round trip through to_json.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/lora_config.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;  // not JSON: nlohmann's business, not ours
  }
  try {
    std::vector<std::string> warnings;
    peft::LoraConfig cfg = peft::LoraConfig::from_json(j, &warnings);
    cfg.validate();
    const nlohmann::json out = cfg.to_json();
    (void)peft::LoraConfig::from_json(out, &warnings);
    (void)out.dump();
  } catch (const peft::Error&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
