// UTF-8 and the Unicode tables behind io/unicode.h. See that header for what each function
// matches; the tables are generated (io/make_unicode_tables.py), the Hangul (de)composition is
// the algorithm of Unicode's chapter 3.12.
#include "io/unicode.h"

#include <algorithm>

#include "core/error.h"

namespace peft {
namespace io {
namespace unicode {
namespace {

struct CodeRange {
  char32_t lo, hi;
};
struct CombiningClass {
  char32_t cp;
  int ccc;
};
struct Decomposition {
  char32_t cp, first, second;  // second == 0: a singleton
};
struct Composition {
  char32_t first, second, composite;
};

#include "io/unicode_tables.inc"

template <size_t N>
bool in_ranges(const CodeRange (&table)[N], char32_t c) {
  const CodeRange* end = table + N;
  const CodeRange* it = std::upper_bound(table, end, c, [](char32_t v, const CodeRange& r) { return v < r.lo; });
  return it != table && c <= (it - 1)->hi;
}

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

int combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const CombiningClass* end = kCombiningClass + sizeof(kCombiningClass) / sizeof(kCombiningClass[0]);
  const CombiningClass* it =
      std::lower_bound(kCombiningClass, end, c, [](const CombiningClass& e, char32_t v) { return e.cp < v; });
  return it != end && it->cp == c ? it->ccc : 0;
}

void decompose_into(char32_t c, std::u32string& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* end = kDecomposition + sizeof(kDecomposition) / sizeof(kDecomposition[0]);
  const Decomposition* it =
      std::lower_bound(kDecomposition, end, c, [](const Decomposition& e, char32_t v) { return e.cp < v; });
  if (it == end || it->cp != c) {
    out.push_back(c);
    return;
  }
  decompose_into(it->first, out);  // canonical mappings nest a few levels at most
  if (it->second != 0) decompose_into(it->second, out);
}

// 0 when the pair has no primary composite.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const Composition* end = kComposition + sizeof(kComposition) / sizeof(kComposition[0]);
  const Composition* it = std::lower_bound(kComposition, end, std::make_pair(a, b),
                                           [](const Composition& e, const std::pair<char32_t, char32_t>& v) {
                                             return e.first != v.first ? e.first < v.first : e.second < v.second;
                                           });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

// Length of the valid sequence at s[i] (1..4), or -(length of its maximal invalid prefix).
int utf8_sequence(const std::string& s, size_t i, char32_t* cp) {
  auto byte = [&](size_t k) -> int { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : -1; };
  const int b0 = byte(0);
  if (b0 < 0x80) {
    *cp = static_cast<char32_t>(b0);
    return 1;
  }
  auto cont = [](int b) { return b >= 0x80 && b <= 0xBF; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!cont(byte(1))) return -1;
    *cp = static_cast<char32_t>(((b0 & 0x1F) << 6) | (byte(1) & 0x3F));
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const int b1 = byte(1);
    const bool ok1 = b0 == 0xE0 ? (b1 >= 0xA0 && b1 <= 0xBF) : b0 == 0xED ? (b1 >= 0x80 && b1 <= 0x9F) : cont(b1);
    if (!ok1) return -1;
    if (!cont(byte(2))) return -2;
    *cp = static_cast<char32_t>(((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (byte(2) & 0x3F));
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const int b1 = byte(1);
    const bool ok1 = b0 == 0xF0 ? (b1 >= 0x90 && b1 <= 0xBF) : b0 == 0xF4 ? (b1 >= 0x80 && b1 <= 0x8F) : cont(b1);
    if (!ok1) return -1;
    if (!cont(byte(2))) return -2;
    if (!cont(byte(3))) return -3;
    *cp = static_cast<char32_t>(((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) |
                                (byte(3) & 0x3F));
    return 4;
  }
  return -1;
}

}  // namespace

std::u32string decode_utf8(const std::string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    const int n = utf8_sequence(text, i, &cp);
    PEFT_CHECK(n > 0, "text is not valid UTF-8 (byte offset ", i, ")");
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

char32_t decode_at(const std::string& text, size_t i, size_t* length) {
  char32_t cp = 0;
  const int n = utf8_sequence(text, i, &cp);
  PEFT_CHECK(n > 0, "text is not valid UTF-8 (byte offset ", i, ")");
  *length = static_cast<size_t>(n);
  return cp;
}

char32_t decode_before(const std::string& text, size_t i, size_t* length) {
  PEFT_CHECK(i > 0 && i <= text.size(), "decode_before: byte offset ", i, " outside (0, ", text.size(), "]");
  size_t start = i - 1;
  while (start > 0 && i - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  const char32_t cp = decode_at(text, start, length);
  PEFT_CHECK(start + *length == i, "text is not valid UTF-8 (before byte offset ", i, ")");
  return cp;
}

bool is_valid_utf8(const std::string& bytes) {
  for (size_t i = 0; i < bytes.size();) {
    char32_t cp = 0;
    const int n = utf8_sequence(bytes, i, &cp);
    if (n < 0) return false;
    i += static_cast<size_t>(n);
  }
  return true;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(const std::u32string& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) append_utf8(out, c);
  return out;
}

std::string utf8_lossy(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    char32_t cp = 0;
    const int n = utf8_sequence(bytes, i, &cp);
    if (n > 0) {
      out.append(bytes, i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
    } else {
      append_utf8(out, 0xFFFD);
      i += static_cast<size_t>(-n);
    }
  }
  return out;
}

bool is_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return in_ranges(kLetter, c);
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(kNumber, c);
}

bool is_whitespace(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_word(char32_t c) {
  if (c < 0x80) return is_letter(c) || is_number(c) || c == '_';
  return in_ranges(kWord, c);
}

std::u32string nfd(const std::u32string& cps) {
  std::u32string out;
  out.reserve(cps.size());
  for (char32_t c : cps) decompose_into(c, out);
  // Canonical ordering: each run of non-starters sorted (stably) by combining class.
  for (size_t i = 0; i < out.size();) {
    if (combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && combining_class(out[j]) != 0) ++j;
    std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(i), out.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  return out;
}

std::u32string nfc(const std::u32string& cps) {
  bool ascii = true;
  for (char32_t c : cps) ascii = ascii && c < 0x80;
  if (ascii) return cps;
  const std::u32string d = nfd(cps);
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  int last_ccc = -1;  // class of the last character kept after the starter; -1: none
  for (char32_t c : d) {
    const int cc = combining_class(c);
    if (starter != std::u32string::npos && (last_ccc == -1 || last_ccc < cc)) {
      if (char32_t composite = compose_pair(out[starter], c)) {
        out[starter] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = out.size();
      last_ccc = -1;
    } else {
      last_ccc = cc;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace unicode
}  // namespace io
}  // namespace peft
