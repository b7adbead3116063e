// layers/hf/config.h — a transformers config.json, read as the model classes need it: typed
// getters with the defaults of transformers' config classes, and clear errors naming the file
// and the key when a value has the wrong type.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace peft::nn::hf {

// A JSON file parsed; throws naming the file when it cannot be opened (saying what was
// `expected` there) or is not valid JSON.
nlohmann::json read_json_file(const std::string& file, const char* expected);

class HfConfig {
 public:
  HfConfig() = default;
  // `source` names the file (or "config") in error messages.
  explicit HfConfig(nlohmann::json j, std::string source = "config");
  // Reads DIR/config.json or a config.json path; throws naming the file on a missing file or bad JSON.
  static HfConfig from_file(const std::string& path);

  const std::string& model_type() const { return model_type_; }
  const nlohmann::json& json() const { return j_; }
  const std::string& source() const { return source_; }
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  // A required integer / number; throws naming the key when missing or not a number.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_double(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  std::optional<int64_t> get_optional_int(const std::string& key) const;

 private:
  nlohmann::json j_;
  std::string source_, model_type_;
};

}  // namespace peft::nn::hf
