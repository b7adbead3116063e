// Normalizers and pre-tokenizers of tokenizer.json (tokenizer_steps.h; the decoders are in
// tokenizer_decoders.cpp). Semantics follow huggingface/tokenizers (normalizers/, pre_tokenizers/,
// tokenizer/pattern.rs).
// The regex Split pre-tokenizers of GPT-2, Llama 3 and Qwen2 are matched by hand-written scanners
// (below) that implement those exact patterns, leftmost-first alternation included; any other
// regex is refused by name rather than approximated.
#include "io/tokenizer_steps.h"

#include <algorithm>
#include <array>
#include <functional>
#include <unordered_map>

#include "core/error.h"
#include "io/precompiled.h"
#include "io/unicode.h"

namespace peft {
namespace io {
namespace tok {
namespace {

namespace uc = ::peft::io::unicode;
using json = nlohmann::json;

// ---- split machinery (tokenizers' SplitDelimiterBehavior)

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct Span {
  size_t begin, end;
  bool match;
};

Behavior parse_behavior(const json& j) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  PEFT_ERROR("tokenizer.json: unknown split behavior ", j.dump(),
             " (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

// Spans covering [0, n) from the match list, then merged as the behaviour says.
void split_into(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches, Behavior behavior,
                bool invert, std::vector<Piece>& out) {
  std::vector<Span> spans;
  const size_t n = piece.text.size();
  if (n == 0) return;
  size_t prev = 0;
  for (const auto& m : matches) {
    if (prev != m.first) spans.push_back({prev, m.first, invert});
    spans.push_back({m.first, m.second, !invert});
    prev = m.second;
  }
  if (prev != n) spans.push_back({prev, n, invert});

  std::vector<Span> merged;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::Removed:
      for (const Span& s : spans)
        if (!s.match) merged.push_back(s);
      break;
    case Behavior::Isolated:
      merged = spans;
      break;
    case Behavior::MergedWithPrevious:
      for (const Span& s : spans) {
        if (s.match && !previous_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back(s);
        previous_match = s.match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !merged.empty())
          merged.back().begin = it->begin;
        else
          merged.push_back(*it);
        previous_match = it->match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case Behavior::Contiguous:
      for (size_t i = 0; i < spans.size(); ++i) {
        if (i > 0 && spans[i].match == previous_match)
          merged.back().end = spans[i].end;
        else
          merged.push_back(spans[i]);
        previous_match = spans[i].match;
      }
      break;
  }
  for (const Span& s : merged)
    if (s.end > s.begin) out.push_back(Piece{piece.text.substr(s.begin, s.end - s.begin), piece.at_origin && s.begin == 0});
}

// Byte offsets of every code point boundary (size cps + 1).
std::vector<size_t> boundaries(const std::u32string& cps) {
  std::vector<size_t> b(cps.size() + 1, 0);
  size_t off = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    b[i] = off;
    off += cps[i] < 0x80 ? 1 : cps[i] < 0x800 ? 2 : cps[i] < 0x10000 ? 3 : 4;
  }
  b[cps.size()] = off;
  return b;
}

// ---- the split regexes, one scanner per known pattern

enum class SplitRegex { Gpt2, Llama3, Qwen2 };

const char* const kGpt2Pattern = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
const char* const kLlama3Pattern =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const char* const kQwen2Pattern =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

bool is_other(char32_t c) { return !uc::is_whitespace(c) && !uc::is_letter(c) && !uc::is_number(c); }
bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }

template <class Pred>
size_t run_end(const std::u32string& s, size_t i, Pred pred) {
  while (i < s.size() && pred(s[i])) ++i;
  return i;
}

// Length of 's 't 're 've 'm 'll 'd at i (0 if none); case-insensitive as (?i:...) in Oniguruma,
// where 's' also folds U+017F LATIN SMALL LETTER LONG S.
size_t contraction(const std::u32string& s, size_t i, bool ignore_case) {
  if (s[i] != '\'' || i + 1 >= s.size()) return 0;
  auto fold = [ignore_case](char32_t c) -> char32_t {
    if (!ignore_case) return c;
    if (c == 0x17F) return 's';
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
  };
  const char32_t a = fold(s[i + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= s.size()) return 0;
  const char32_t b = fold(s[i + 2]);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// \s+(?!\S)|\s+ at i (s[i] is whitespace): the run, less its last character when a non-space follows.
size_t whitespace_tail(const std::u32string& s, size_t i) {
  const size_t k = run_end(s, i, uc::is_whitespace);
  if (k == s.size() || k - i == 1) return k - i;
  return k - i - 1;
}

size_t match_gpt2(const std::u32string& s, size_t i) {
  if (size_t c = contraction(s, i, false)) return c;
  const size_t j = i + (s[i] == ' ' && i + 1 < s.size() ? 1 : 0);
  if (uc::is_letter(s[j])) return run_end(s, j, uc::is_letter) - i;
  if (uc::is_number(s[j])) return run_end(s, j, uc::is_number) - i;
  if (is_other(s[j])) return run_end(s, j, is_other) - i;
  return whitespace_tail(s, i);
}

size_t match_llama3(const std::u32string& s, size_t i, size_t max_digits) {
  if (size_t c = contraction(s, i, true)) return c;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (uc::is_letter(s[i])) return run_end(s, i, uc::is_letter) - i;
  if (!is_newline(s[i]) && !uc::is_number(s[i]) && i + 1 < s.size() && uc::is_letter(s[i + 1]))
    return run_end(s, i + 1, uc::is_letter) - i;
  // \p{N}{1,3} (Llama 3) or \p{N} (Qwen2)
  if (uc::is_number(s[i])) {
    size_t k = i;
    while (k < s.size() && k - i < max_digits && uc::is_number(s[k])) ++k;
    return k - i;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t j = i + (s[i] == ' ' && i + 1 < s.size() ? 1 : 0);
  if (is_other(s[j])) return run_end(s, run_end(s, j, is_other), is_newline) - i;
  // \s*[\r\n]+ : up to the last newline of the whitespace run
  const size_t k = run_end(s, i, uc::is_whitespace);
  for (size_t p = k; p > i; --p)
    if (is_newline(s[p - 1])) return p - i;
  return whitespace_tail(s, i);
}

std::vector<std::pair<size_t, size_t>> regex_matches(SplitRegex re, const std::string& text) {
  const std::u32string cps = uc::decode_utf8(text);
  const std::vector<size_t> b = boundaries(cps);
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < cps.size();) {
    const size_t len = re == SplitRegex::Gpt2     ? match_gpt2(cps, i)
                       : re == SplitRegex::Llama3 ? match_llama3(cps, i, 3)
                                                  : match_llama3(cps, i, 1);
    out.emplace_back(b[i], b[i + len]);
    i += len;
  }
  return out;
}

std::vector<std::pair<size_t, size_t>> literal_matches(const std::string& pattern, const std::string& text) {
  std::vector<std::pair<size_t, size_t>> out;
  if (pattern.empty()) return out;
  for (size_t pos = text.find(pattern); pos != std::string::npos; pos = text.find(pattern, pos + pattern.size()))
    out.emplace_back(pos, pos + pattern.size());
  return out;
}

template <class Pred>
std::vector<std::pair<size_t, size_t>> char_matches(const std::string& text, Pred pred) {
  const std::u32string cps = uc::decode_utf8(text);
  const std::vector<size_t> b = boundaries(cps);
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < cps.size(); ++i)
    if (pred(cps[i])) out.emplace_back(b[i], b[i + 1]);
  return out;
}


// ---- normalizers

// The regex " {2,}" replaced by `content`: each run of two or more U+0020 is one match.
std::string collapse_spaces(const std::string& s, const std::string& content) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t k = i;
    while (k < s.size() && s[k] == ' ') ++k;
    if (k - i >= 2) {
      out += content;
      i = k;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

class FnNormalizer : public Normalizer {
 public:
  explicit FnNormalizer(std::function<std::string(const std::string&)> fn) : fn_(std::move(fn)) {}
  std::string apply(const std::string& text) const override { return fn_(text); }

 private:
  std::function<std::string(const std::string&)> fn_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  std::string apply(const std::string& text) const override {
    std::string s = text;
    for (const auto& n : steps_) s = n->apply(s);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

// ---- pre-tokenizers

class FnPreTokenizer : public PreTokenizer {
 public:
  explicit FnPreTokenizer(std::function<void(const Piece&, std::vector<Piece>&)> fn) : fn_(std::move(fn)) {}
  std::vector<Piece> apply(const std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (const Piece& p : pieces)
      if (!p.text.empty()) fn_(p, out);
    return out;
  }

 private:
  std::function<void(const Piece&, std::vector<Piece>&)> fn_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  std::vector<Piece> apply(const std::vector<Piece>& pieces) const override {
    std::vector<Piece> p = pieces;
    for (const auto& s : steps_) p = s->apply(p);
    return p;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

namespace detail {

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t hit = s.find(from); hit != std::string::npos; hit = s.find(from, pos)) {
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

Pattern parse_pattern(const json& j, const char* where) {
  PEFT_CHECK(j.is_object() && j.size() == 1 && (j.contains("String") || j.contains("Regex")),
             "tokenizer.json: ", where, " pattern must be {\"String\": ...} or {\"Regex\": ...}, got ", j.dump());
  Pattern p;
  p.is_regex = j.contains("Regex");
  p.text = p.is_regex ? j.at("Regex").get<std::string>() : j.at("String").get<std::string>();
  return p;
}

std::string str_field(const json& j, const char* key, const std::string& fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  PEFT_CHECK(it->is_string(), "tokenizer.json: '", key, "' must be a string in ", j.dump());
  return it->get<std::string>();
}

bool bool_field(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  PEFT_CHECK(it->is_boolean(), "tokenizer.json: '", key, "' must be a boolean in ", j.dump());
  return it->get<bool>();
}

std::string type_of(const json& j, const char* what) {
  PEFT_CHECK(j.is_object() && j.contains("type") && j.at("type").is_string(), "tokenizer.json: ", what,
             " without a \"type\": ", j.dump());
  return j.at("type").get<std::string>();
}

// ---- byte-level alphabet (GPT-2's bytes_to_unicode)

ByteLevelMap::ByteLevelMap() {
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
    uc::append_utf8(to_char[static_cast<size_t>(b)], c);
    to_byte[c] = static_cast<unsigned char>(b);
  }
}

const ByteLevelMap& byte_level() {
  static const ByteLevelMap m;
  return m;
}

Prepend parse_prepend_scheme(const json& j) {
  if (j.contains("prepend_scheme") && !j.at("prepend_scheme").is_null()) {
    const std::string s = j.at("prepend_scheme").get<std::string>();
    if (s == "always") return Prepend::Always;
    if (s == "first") return Prepend::First;
    if (s == "never") return Prepend::Never;
    PEFT_ERROR("tokenizer.json: Metaspace prepend_scheme '", s, "' is not always, first or never");
  }
  return bool_field(j, "add_prefix_space", true) ? Prepend::Always : Prepend::Never;  // the older form
}

std::string metaspace_replacement(const json& j) {
  const std::string r = str_field(j, "replacement", "\xE2\x96\x81");
  PEFT_CHECK(uc::decode_utf8(r).size() == 1, "tokenizer.json: Metaspace replacement '", r, "' is not one character");
  return r;
}

}  // namespace detail

using namespace detail;

const std::string& byte_level_char(unsigned char b) { return byte_level().to_char[b]; }

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "normalizer");
  if (type == "Sequence") return std::make_unique<SequenceNormalizer>(steps_of<Normalizer>(j, "normalizers", make_normalizer));
  if (type == "NFC")
    return std::make_unique<FnNormalizer>([](const std::string& s) { return uc::encode_utf8(uc::nfc(uc::decode_utf8(s))); });
  if (type == "NFD")
    return std::make_unique<FnNormalizer>([](const std::string& s) { return uc::encode_utf8(uc::nfd(uc::decode_utf8(s))); });
  if (type == "Prepend") {
    const std::string prepend = str_field(j, "prepend", "");
    return std::make_unique<FnNormalizer>([prepend](const std::string& s) { return s.empty() ? s : prepend + s; });
  }
  if (type == "Replace") {
    const Pattern p = parse_pattern(j.at("pattern"), "Replace");
    if (p.is_regex) {
      // SentencePiece's remove_extra_whitespaces as transformers' converters write it (T5, mT5).
      PEFT_CHECK(p.text == " {2,}", "tokenizer.json: Replace normalizer with the regex '", p.text,
                 "' is not supported (only string patterns and the regex ' {2,}')");
      const std::string content = str_field(j, "content", "");
      return std::make_unique<FnNormalizer>([content](const std::string& s) { return collapse_spaces(s, content); });
    }
    const std::string content = str_field(j, "content", "");
    return std::make_unique<FnNormalizer>([p, content](const std::string& s) { return replace_all(s, p.text, content); });
  }
  if (type == "Strip") {
    const bool left = bool_field(j, "strip_left", false), right = bool_field(j, "strip_right", false);
    return std::make_unique<FnNormalizer>([left, right](const std::string& s) {
      const std::u32string c = uc::decode_utf8(s);
      size_t b = 0, e = c.size();
      while (left && b < e && uc::is_whitespace(c[b])) ++b;
      while (right && e > b && uc::is_whitespace(c[e - 1])) --e;
      return uc::encode_utf8(c.substr(b, e - b));
    });
  }
  if (type == "Precompiled") {
    auto map = std::make_shared<const PrecompiledCharsmap>(str_field(j, "precompiled_charsmap", ""));
    return std::make_unique<FnNormalizer>([map](const std::string& s) { return map->normalize(s); });
  }
  PEFT_ERROR("tokenizer.json: normalizer type '", type,
             "' is not supported (supported: Sequence, NFC, NFD, Prepend, Replace with a string or ' {2,}', Strip, "
             "Precompiled)");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "pre_tokenizer");
  if (type == "Sequence") return std::make_unique<SequencePreTokenizer>(steps_of<PreTokenizer>(j, "pretokenizers", make_pre_tokenizer));
  if (type == "ByteLevel") {
    const bool add_prefix_space = bool_field(j, "add_prefix_space", true), use_regex = bool_field(j, "use_regex", true);
    return std::make_unique<FnPreTokenizer>([add_prefix_space, use_regex](const Piece& p, std::vector<Piece>& out) {
      Piece q = p;
      if (add_prefix_space && q.text[0] != ' ') q.text = " " + q.text;
      std::vector<Piece> parts;
      if (use_regex)
        split_into(q, regex_matches(SplitRegex::Gpt2, q.text), Behavior::Isolated, false, parts);
      else
        parts.push_back(q);
      for (Piece& part : parts) {
        std::string mapped;
        for (unsigned char b : part.text) mapped += byte_level_char(b);
        out.push_back(Piece{std::move(mapped), part.at_origin});
      }
    });
  }
  if (type == "Split") {
    const Pattern pattern = parse_pattern(j.at("pattern"), "Split");
    const Behavior behavior = parse_behavior(j.at("behavior"));
    const bool invert = bool_field(j, "invert", false);
    if (!pattern.is_regex)
      return std::make_unique<FnPreTokenizer>([pattern, behavior, invert](const Piece& p, std::vector<Piece>& out) {
        split_into(p, literal_matches(pattern.text, p.text), behavior, invert, out);
      });
    SplitRegex re;
    if (pattern.text == kGpt2Pattern)
      re = SplitRegex::Gpt2;
    else if (pattern.text == kLlama3Pattern)
      re = SplitRegex::Llama3;
    else if (pattern.text == kQwen2Pattern)
      re = SplitRegex::Qwen2;
    else
      PEFT_ERROR("tokenizer.json: Split regex '", pattern.text,
                 "' is not supported (supported: the GPT-2, Llama 3 and Qwen2 pre-tokenizer patterns)");
    return std::make_unique<FnPreTokenizer>([re, behavior, invert](const Piece& p, std::vector<Piece>& out) {
      split_into(p, regex_matches(re, p.text), behavior, invert, out);
    });
  }
  if (type == "Metaspace") {
    const std::string rep = metaspace_replacement(j);
    const Prepend scheme = parse_prepend_scheme(j);
    const bool split = bool_field(j, "split", true);
    return std::make_unique<FnPreTokenizer>([rep, scheme, split](const Piece& p, std::vector<Piece>& out) {
      Piece q{replace_all(p.text, " ", rep), p.at_origin};
      const bool starts = q.text.compare(0, rep.size(), rep) == 0;
      if (!starts && (scheme == Prepend::Always || (scheme == Prepend::First && q.at_origin))) q.text = rep + q.text;
      if (split)
        split_into(q, literal_matches(rep, q.text), Behavior::MergedWithNext, false, out);
      else
        out.push_back(std::move(q));
    });
  }
  if (type == "WhitespaceSplit")
    return std::make_unique<FnPreTokenizer>([](const Piece& p, std::vector<Piece>& out) {
      split_into(p, char_matches(p.text, uc::is_whitespace), Behavior::Removed, false, out);
    });
  if (type == "Digits") {
    const bool individual = bool_field(j, "individual_digits", false);
    return std::make_unique<FnPreTokenizer>([individual](const Piece& p, std::vector<Piece>& out) {
      split_into(p, char_matches(p.text, uc::is_number), individual ? Behavior::Isolated : Behavior::Contiguous,
                 false, out);
    });
  }
  PEFT_ERROR("tokenizer.json: pre_tokenizer type '", type,
             "' is not supported (supported: Sequence, ByteLevel, Split, Metaspace, WhitespaceSplit, Digits)");
}

}  // namespace tok
}  // namespace io
}  // namespace peft
