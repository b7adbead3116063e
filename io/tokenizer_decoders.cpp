// The decoders of tokenizer.json (see tokenizer_steps.h): token strings → text, as Hugging Face
// tokenizers' decoders/ chain them (each decoder maps the list of token strings to a new list;
// the Tokenizer joins the last list).
#include <functional>

#include "core/error.h"
#include "io/tokenizer_steps.h"
#include "io/unicode.h"

namespace peft {
namespace io {
namespace tok {
namespace {

namespace uc = ::peft::io::unicode;
using json = nlohmann::json;
using namespace detail;

class FnDecoder : public Decoder {
 public:
  explicit FnDecoder(std::function<std::vector<std::string>(std::vector<std::string>)> fn) : fn_(std::move(fn)) {}
  std::vector<std::string> apply(std::vector<std::string> tokens) const override { return fn_(std::move(tokens)); }

 private:
  std::function<std::vector<std::string>(std::vector<std::string>)> fn_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (const auto& d : steps_) tokens = d->apply(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

// "<0xAB>" → 0xAB, else -1.
int byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}


}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "decoder");
  if (type == "Sequence") return std::make_unique<SequenceDecoder>(steps_of<Decoder>(j, "decoders", make_decoder));
  if (type == "ByteLevel")
    return std::make_unique<FnDecoder>([](std::vector<std::string> tokens) {
      const ByteLevelMap& m = byte_level();
      std::string bytes;
      for (const std::string& t : tokens) {
        std::string mapped;
        bool all = uc::is_valid_utf8(t);
        if (all) {
          for (char32_t c : uc::decode_utf8(t)) {
            auto it = m.to_byte.find(c);
            if (it == m.to_byte.end()) {
              all = false;
              break;
            }
            mapped.push_back(static_cast<char>(it->second));
          }
        }
        bytes += all ? mapped : t;  // a token outside the alphabet (an added token) goes as its UTF-8
      }
      return std::vector<std::string>{uc::utf8_lossy(bytes)};
    });
  if (type == "Metaspace") {
    const std::string rep = metaspace_replacement(j);
    const Prepend scheme = parse_prepend_scheme(j);
    return std::make_unique<FnDecoder>([rep, scheme](std::vector<std::string> tokens) {
      for (size_t i = 0; i < tokens.size(); ++i)
        tokens[i] = replace_all(tokens[i], rep, i == 0 && scheme != Prepend::Never ? "" : " ");
      return tokens;
    });
  }
  if (type == "Replace") {
    const Pattern p = parse_pattern(j.at("pattern"), "Replace decoder");
    PEFT_CHECK(!p.is_regex, "tokenizer.json: Replace decoder with the regex '", p.text, "' is not supported");
    const std::string content = str_field(j, "content", "");
    return std::make_unique<FnDecoder>([p, content](std::vector<std::string> tokens) {
      for (std::string& t : tokens) t = replace_all(t, p.text, content);
      return tokens;
    });
  }
  if (type == "ByteFallback")
    return std::make_unique<FnDecoder>([](std::vector<std::string> tokens) {
      std::vector<std::string> out;
      std::string pending;
      auto flush = [&]() {
        if (pending.empty()) return;
        if (uc::is_valid_utf8(pending))
          out.push_back(pending);
        else
          for (size_t i = 0; i < pending.size(); ++i) out.push_back("\xEF\xBF\xBD");  // one U+FFFD per byte
        pending.clear();
      };
      for (std::string& t : tokens) {
        const int b = byte_token(t);
        if (b >= 0) {
          pending.push_back(static_cast<char>(b));
        } else {
          flush();
          out.push_back(std::move(t));
        }
      }
      flush();
      return out;
    });
  if (type == "Fuse")
    return std::make_unique<FnDecoder>([](std::vector<std::string> tokens) {
      std::string all;
      for (const std::string& t : tokens) all += t;
      return std::vector<std::string>{all};
    });
  if (type == "Strip") {
    const std::u32string content = uc::decode_utf8(str_field(j, "content", " "));
    PEFT_CHECK(content.size() == 1, "tokenizer.json: Strip decoder content must be one character");
    const size_t start = j.value("start", size_t{0}), stop = j.value("stop", size_t{0});
    return std::make_unique<FnDecoder>([c = content[0], start, stop](std::vector<std::string> tokens) {
      for (std::string& t : tokens) {
        const std::u32string cps = uc::decode_utf8(t);
        size_t b = 0, e = cps.size();
        while (b < start && b < e && cps[b] == c) ++b;
        for (size_t k = 0; k < stop && e > b && cps[e - 1] == c; ++k) --e;
        t = uc::encode_utf8(cps.substr(b, e - b));
      }
      return tokens;
    });
  }
  PEFT_ERROR("tokenizer.json: decoder type '", type,
             "' is not supported (supported: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip)");
}

}  // namespace tok
}  // namespace io
}  // namespace peft
