// SentencePiece's precompiled normalizer (tokenizers' normalizers::Precompiled, from the
// spm_precompiled crate): the "precompiled_charsmap" of a tokenizer.json — base64 of a u32
// little-endian trie size in bytes, a darts-clone double-array trie of that size (u32 units) mapping
// byte strings to offsets, then the NUL-terminated replacement strings. T5 / mT5 / XLM-R files carry
// SentencePiece's nmt_nfkc rules this way. Internal to io/tokenizer_steps.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace peft {
namespace io {

class PrecompiledCharsmap {
 public:
  // From the base64 text; throws peft::Error naming what is wrong (not base64, too short for its
  // trie, replacements not UTF-8, an empty trie).
  explicit PrecompiledCharsmap(const std::string& base64);

  // The text normalized as tokenizers does it: grapheme cluster by cluster, a cluster shorter than
  // 6 bytes replaced whole when the trie matches a prefix of it, else character by character. A
  // trie that points outside itself or its strings throws peft::Error at the first such lookup.
  std::string normalize(const std::string& text) const;

 private:
  // The replacement for the shortest key that is a prefix of [p, p + n) (as spm_precompiled's
  // transform takes the first common-prefix result), or nullptr.
  const std::string* lookup(const char* p, size_t n, std::string& scratch) const;

  std::vector<uint32_t> units_;
  std::string strings_;
};

}  // namespace io
}  // namespace peft
