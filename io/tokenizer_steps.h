// The normalizers, pre-tokenizers and decoders of a tokenizer.json, each built from its JSON
// object as Hugging Face tokenizers defines it. Internal to io/tokenizer.cpp. A type or option we
// do not implement is refused by name when the file is read, never skipped.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace peft {
namespace io {
namespace tok {

// A stretch of text on its way to the model. at_origin: it begins at byte 0 of the caller's text
// (Metaspace's prepend_scheme "first" prepends only there).
struct Piece {
  std::string text;
  bool at_origin = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(const std::string& text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece by its parts; empty parts are dropped.
  virtual std::vector<Piece> apply(const std::vector<Piece>& pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> apply(std::vector<std::string> tokens) const = 0;
};

// nullptr for a JSON null (no such step).
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j);

// GPT-2's byte → printable-character map (bytes_to_unicode), as UTF-8 strings.
const std::string& byte_level_char(unsigned char b);

// Shared by the step builders (tokenizer_steps.cpp, tokenizer_decoders.cpp).
namespace detail {

std::string replace_all(const std::string& s, const std::string& from, const std::string& to);

// A Replace / Split "pattern": {"String": s} or {"Regex": r}.
struct Pattern {
  bool is_regex = false;
  std::string text;
};
Pattern parse_pattern(const nlohmann::json& j, const char* where);

// Optional fields, type-checked; `fallback` when absent or null.
std::string str_field(const nlohmann::json& j, const char* key, const std::string& fallback);
bool bool_field(const nlohmann::json& j, const char* key, bool fallback);
std::string type_of(const nlohmann::json& j, const char* what);  // the required "type"

// A Sequence step's list j[key], each element built by `make` (null elements dropped).
template <class Step>
std::vector<std::unique_ptr<Step>> steps_of(const nlohmann::json& j, const char* key,
                                            std::unique_ptr<Step> (*make)(const nlohmann::json&)) {
  std::vector<std::unique_ptr<Step>> steps;
  for (const nlohmann::json& element : j.at(key))
    if (auto step = make(element)) steps.push_back(std::move(step));
  return steps;
}

struct ByteLevelMap {
  std::array<std::string, 256> to_char;
  std::unordered_map<char32_t, unsigned char> to_byte;
  ByteLevelMap();
};
const ByteLevelMap& byte_level();

// Metaspace's prepend_scheme (or the older add_prefix_space) and its one-character replacement.
enum class Prepend { Always, First, Never };
Prepend parse_prepend_scheme(const nlohmann::json& j);
std::string metaspace_replacement(const nlohmann::json& j);

}  // namespace detail

}  // namespace tok
}  // namespace io
}  // namespace peft
