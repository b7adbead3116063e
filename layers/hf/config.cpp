#include "layers/hf/config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace peft::nn::hf {

HfConfig::HfConfig(nlohmann::json j, std::string source) : j_(std::move(j)), source_(std::move(source)) {
  PEFT_CHECK(j_.is_object(), source_, ": a transformers config must be a JSON object");
  PEFT_CHECK(j_.contains("model_type") && j_.at("model_type").is_string(), source_,
             ": no \"model_type\" string (is this a transformers config.json?)");
  model_type_ = j_.at("model_type").get<std::string>();
}

nlohmann::json read_json_file(const std::string& file, const char* expected) {
  std::ifstream in(file);
  PEFT_CHECK(in.good(), "cannot open ", file, " (expected ", expected, ")");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    PEFT_ERROR(file, ": not valid JSON (", e.what(), ")");
  }
}

HfConfig HfConfig::from_file(const std::string& path) {
  const std::string file =
      std::filesystem::is_directory(path) ? (std::filesystem::path(path) / "config.json").string() : path;
  return HfConfig(read_json_file(file, "a transformers config.json or a folder holding one"), file);
}

int64_t HfConfig::get_int(const std::string& key) const {
  PEFT_CHECK(has(key), source_, ": missing \"", key, "\"");
  return get_int(key, 0);
}

int64_t HfConfig::get_int(const std::string& key, int64_t def) const {
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  PEFT_CHECK(v.is_number_integer() || (v.is_number_float() && v.get<double>() == static_cast<double>(v.get<int64_t>())),
             source_, ": \"", key, "\" must be an integer, got ", v.dump());
  return v.get<int64_t>();
}

std::optional<int64_t> HfConfig::get_optional_int(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key, 0);
}

double HfConfig::get_double(const std::string& key, double def) const {
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  PEFT_CHECK(v.is_number(), source_, ": \"", key, "\" must be a number, got ", v.dump());
  return v.get<double>();
}

bool HfConfig::get_bool(const std::string& key, bool def) const {
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  PEFT_CHECK(v.is_boolean(), source_, ": \"", key, "\" must be true or false, got ", v.dump());
  return v.get<bool>();
}

std::string HfConfig::get_string(const std::string& key, const std::string& def) const {
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  PEFT_CHECK(v.is_string(), source_, ": \"", key, "\" must be a string, got ", v.dump());
  return v.get<std::string>();
}

}  // namespace peft::nn::hf
