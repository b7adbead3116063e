// The Unicode pieces a tokenizer needs, with no dependency beyond the standard library: UTF-8
// decoding (strict, and lossy the way Rust's String::from_utf8_lossy is, since Hugging Face
// tokenizers decodes with it), the character classes of the GPT-2 / Llama 3 / Qwen2 split
// regexes (\p{L}, \p{N}, \s) and of Rust regex's \w, canonical normalisation (NFC / NFD), and
// extended grapheme clusters (for SentencePiece's precompiled normalizer).
// Tables come from io/make_unicode_tables.py (Python's unicodedata).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace peft {
namespace io {
namespace unicode {

// Code points of valid UTF-8; throws peft::Error naming the byte offset otherwise.
std::u32string decode_utf8(const std::string& text);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(const std::u32string& cps);
// Bytes → text, each maximal invalid subsequence replaced by U+FFFD (Rust's from_utf8_lossy).
std::string utf8_lossy(const std::string& bytes);
bool is_valid_utf8(const std::string& bytes);
// One code point of valid UTF-8: the one starting at byte i, or the one ending just before byte i
// (i > 0); *length gets its size in bytes. Throws peft::Error on invalid UTF-8.
char32_t decode_at(const std::string& text, size_t i, size_t* length);
char32_t decode_before(const std::string& text, size_t i, size_t* length);

bool is_letter(char32_t c);      // \p{L}
bool is_number(char32_t c);      // \p{N}
bool is_whitespace(char32_t c);  // \s of Oniguruma and Rust regex: the White_Space property
bool is_word(char32_t c);        // Rust regex's \w

std::u32string nfd(const std::u32string& cps);
std::u32string nfc(const std::u32string& cps);

// Index in `cps` of the first code point of each extended grapheme cluster (UAX #29, as the Rust
// crate unicode-segmentation 1.13 splits, Unicode 17); empty for empty input. io/grapheme.cpp.
std::vector<size_t> grapheme_starts(const std::u32string& cps);

}  // namespace unicode
}  // namespace io
}  // namespace peft
