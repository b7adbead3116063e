// PrecompiledCharsmap (io/precompiled.h). The double-array walk is darts-clone's as spm_precompiled
// reads it (unit fields: has_leaf bit 8, label bits 0-7 and 31, value bits 0-30, offset bits 10-31
// shifted by 8 when bit 9 is set). The grapheme rule and the "first (shortest) match wins" are
// spm_precompiled's quirks, kept because tokenizers' ids depend on them.
#include "io/precompiled.h"

#include "core/error.h"
#include "io/unicode.h"

namespace peft {
namespace io {
namespace {

std::string decode_base64(const std::string& s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  PEFT_CHECK(s.size() % 4 == 0, "Precompiled: precompiled_charsmap is not base64 (length ", s.size(),
             " is not a multiple of 4)");
  std::string out;
  out.reserve(s.size() / 4 * 3);
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    size_t pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = s[i + k];
      const bool is_pad = c == '=' && i + 4 == s.size() && k >= 2 && (k == 3 || s[i + 3] == '=');
      v[k] = is_pad ? 0 : value(c);
      pad += is_pad;
      PEFT_CHECK(v[k] >= 0, "Precompiled: precompiled_charsmap is not base64 (character ", i + k, ")");
    }
    const uint32_t n = static_cast<uint32_t>(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    out.push_back(static_cast<char>(n >> 16));
    if (pad < 2) out.push_back(static_cast<char>(n >> 8 & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xFF));
  }
  return out;
}

uint32_t read_u32(const std::string& b, size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}

bool has_leaf(uint32_t u) { return (u >> 8 & 1) != 0; }
uint32_t value_of(uint32_t u) { return u & 0x7FFFFFFFu; }
uint32_t label_of(uint32_t u) { return u & (0x80000000u | 0xFFu); }
size_t offset_of(uint32_t u) { return static_cast<size_t>(u >> 10) << ((u & (1u << 9)) >> 6); }

}  // namespace

PrecompiledCharsmap::PrecompiledCharsmap(const std::string& base64) {
  const std::string blob = decode_base64(base64);
  PEFT_CHECK(blob.size() >= 4, "Precompiled: precompiled_charsmap has ", blob.size(),
             " bytes, too few for its trie size");
  const size_t trie_bytes = read_u32(blob, 0), units = trie_bytes / 4;
  PEFT_CHECK(units <= (blob.size() - 4) / 4, "Precompiled: precompiled_charsmap says its trie has ", trie_bytes,
             " bytes but only ", blob.size() - 4, " follow");
  PEFT_CHECK(units > 0, "Precompiled: precompiled_charsmap has an empty trie");
  units_.resize(units);
  for (size_t i = 0; i < units; ++i) units_[i] = read_u32(blob, 4 + 4 * i);
  strings_ = blob.substr(4 + 4 * units);  // as spm_precompiled: a trie size not a multiple of 4 leaves bytes here
  PEFT_CHECK(unicode::is_valid_utf8(strings_), "Precompiled: precompiled_charsmap's replacement strings are not UTF-8");
}

const std::string* PrecompiledCharsmap::lookup(const char* p, size_t n, std::string& scratch) const {
  auto unit = [this](size_t pos) {
    PEFT_CHECK(pos < units_.size(), "Precompiled: corrupt precompiled_charsmap (trie position ", pos,
               " outside its ", units_.size(), " units)");
    return units_[pos];
  };
  size_t pos = offset_of(units_[0]);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(p[i]);
    if (c == 0) break;
    pos ^= c;
    const uint32_t u = unit(pos);
    if (label_of(u) != c) return nullptr;
    pos ^= offset_of(u);
    if (!has_leaf(u)) continue;
    const size_t begin = value_of(unit(pos));
    const size_t end = strings_.find('\0', begin);
    PEFT_CHECK(begin <= strings_.size() && (begin == strings_.size() || (static_cast<unsigned char>(strings_[begin]) & 0xC0) != 0x80),
               "Precompiled: corrupt precompiled_charsmap (replacement offset ", begin, " is not a character of its ",
               strings_.size(), "-byte strings)");
    scratch.assign(strings_, begin, end == std::string::npos ? std::string::npos : end - begin);
    return &scratch;
  }
  return nullptr;
}

std::string PrecompiledCharsmap::normalize(const std::string& text) const {
  const std::u32string cps = unicode::decode_utf8(text);
  const std::vector<size_t> starts = unicode::grapheme_starts(cps);
  std::vector<size_t> byte_at(cps.size() + 1, 0);  // byte offset of each code point
  for (size_t i = 0; i < cps.size(); ++i)
    byte_at[i + 1] = byte_at[i] + (cps[i] < 0x80 ? 1 : cps[i] < 0x800 ? 2 : cps[i] < 0x10000 ? 3 : 4);
  std::string out, scratch;
  out.reserve(text.size());
  for (size_t g = 0; g < starts.size(); ++g) {
    const size_t first = starts[g], last = g + 1 < starts.size() ? starts[g + 1] : cps.size();
    const size_t begin = byte_at[first], end = byte_at[last];
    if (end - begin < 6) {
      if (const std::string* r = lookup(text.data() + begin, end - begin, scratch)) {
        out += *r;
        continue;
      }
    }
    for (size_t c = first; c < last; ++c) {
      const std::string* r = lookup(text.data() + byte_at[c], byte_at[c + 1] - byte_at[c], scratch);
      if (r)
        out += *r;
      else
        out.append(text, byte_at[c], byte_at[c + 1] - byte_at[c]);
    }
  }
  return out;
}

}  // namespace io
}  // namespace peft
