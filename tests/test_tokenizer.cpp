// io/tokenizer: ids, tokens and decoded text equal Hugging Face tokenizers' (and transformers',
// which the golden script checked agree) on six tokenizer.json files built like OPT's, Llama 3's,
// Qwen2's, Llama 2's and Mistral's and one exercising added-token flags
// (tests/golden/golden_tokenizers.py), over texts with Unicode, digits, whitespace edge cases
// and inline special tokens. Then the Unicode pieces on their own, and refusals.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/tokenizer.h"
#include "io/unicode.h"

using peft::io::Tokenizer;
namespace uc = peft::io::unicode;
using json = nlohmann::json;

namespace {

const char* const kCases[] = {"opt_bytelevel",        "llama3",           "qwen2",
                              "llama2_sentencepiece", "mistral_metaspace", "added_tokens"};

std::string case_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/tokenizers/" + name; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return json::parse(in);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string printable(const std::string& s) { return json(s).dump(); }

}  // namespace

TEST_CASE("tokenizer: ids, tokens and decode equal tokenizers' on every golden text", "[tokenizer][golden]") {
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      const Tokenizer tok = Tokenizer::from_pretrained(case_dir(name));
      const json expected = read_json(case_dir(name) + "/expected.json");
      CHECK(tok.vocab_size() == expected.at("vocab_size").get<int64_t>());
      for (const json& c : expected.at("cases")) {
        const std::string text = c.at("text").get<std::string>();
        INFO("text " << printable(text));
        CHECK(tok.encode(text) == c.at("ids").get<std::vector<int64_t>>());
        CHECK(tok.encode(text, false) == c.at("ids_no_special").get<std::vector<int64_t>>());
        CHECK(tok.tokenize(text) == c.at("tokens").get<std::vector<std::string>>());
        const std::vector<int64_t> ids = c.at("ids").get<std::vector<int64_t>>();
        CHECK(printable(tok.decode(ids)) == printable(c.at("decoded").get<std::string>()));
        CHECK(printable(tok.decode(ids, true)) == printable(c.at("decoded_skip_special").get<std::string>()));
      }
    }
  }
}

TEST_CASE("tokenizer: token ↔ id lookups and special flags", "[tokenizer]") {
  const Tokenizer tok = Tokenizer::from_pretrained(case_dir("opt_bytelevel"));
  CHECK(tok.token_to_id("</s>") == 2);
  CHECK(tok.id_to_token(2) == std::string("</s>"));
  CHECK(tok.is_special(2));
  CHECK_FALSE(tok.token_to_id("no such token").has_value());
  CHECK_FALSE(tok.id_to_token(1 << 30).has_value());
  const int64_t a = *tok.token_to_id("a");
  CHECK_FALSE(tok.is_special(a));
  CHECK_THROWS_WITH(tok.decode({a, 1 << 30}), Catch::Contains("id 1073741824 is not in the vocabulary"));
  CHECK_THROWS_WITH(tok.encode(std::string("ab\xFF", 3)), Catch::Contains("not valid UTF-8"));
}

TEST_CASE("tokenizer: unsupported or broken files are refused by name", "[tokenizer]") {
  const json base = json::parse(read_text(case_dir("llama3") + "/tokenizer.json"));
  auto refused = [&](const std::function<void(json&)>& edit, const std::string& message) {
    json j = base;
    edit(j);
    CHECK_THROWS_WITH(Tokenizer::from_json(j.dump(), "edited.json"), Catch::Contains(message));
  };
  refused([](json& j) { j["model"]["type"] = "WordPiece"; }, "model type 'WordPiece' is not supported");
  refused([](json& j) { j["model"]["dropout"] = 0.1; }, "BPE dropout");
  refused([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+"; },
          "Split regex '\\w+' is not supported");
  refused([](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "normalizer type 'Lowercase'");
  refused([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "decoder type 'WordPiece'");
  refused([](json& j) { j["model"]["merges"].push_back(json::array({"zzz_missing", "a"})); },
          "'zzz_missing', which is not in the vocabulary");
  refused([](json& j) { j.erase("model"); }, "no \"model\" object");
  CHECK_THROWS_WITH(Tokenizer::from_json("{not json", "x.json"), Catch::Contains("x.json is not valid JSON"));
  CHECK_THROWS_WITH(Tokenizer::from_pretrained("/nonexistent/dir"), Catch::Contains("has no tokenizer.json"));
}

TEST_CASE("unicode: classes, NFC / NFD and lossy UTF-8", "[tokenizer][unicode]") {
  CHECK(uc::is_letter(U'é'));
  CHECK(uc::is_letter(U'語'));
  CHECK_FALSE(uc::is_letter(U'3'));
  CHECK(uc::is_number(U'٣'));
  CHECK(uc::is_number(U'Ⅻ'));
  CHECK(uc::is_whitespace(0x3000));
  CHECK(uc::is_whitespace(0xA0));
  CHECK_FALSE(uc::is_whitespace(0x200B));  // ZERO WIDTH SPACE is not White_Space
  CHECK(uc::is_word(U'_'));
  CHECK(uc::is_word(0x301));  // a combining mark
  CHECK(uc::encode_utf8(uc::nfc(uc::decode_utf8("cafe\xCC\x81"))) == "caf\xC3\xA9");
  CHECK(uc::encode_utf8(uc::nfd(uc::decode_utf8("caf\xC3\xA9"))) == "cafe\xCC\x81");
  // Hangul: 한 = ᄒ + ᅡ + ᆫ both ways; canonical reordering of marks (dot below 220 before acute 230).
  CHECK(uc::nfd(U"\uD55C") == U"\u1112\u1161\u11AB");
  CHECK(uc::nfc(U"\u1112\u1161\u11AB") == U"\uD55C");
  CHECK(uc::nfd(U"a\u0301\u0323") == U"a\u0323\u0301");
  CHECK(uc::nfc(U"a\u0301\u0323") == U"\u1EA1\u0301");
  // One code point at / before a byte offset (added-token boundaries).
  const std::string mixed = "a\xE2\x82\xAC\xF0\x9F\x98\x80";  // a € 😀
  size_t len = 0;
  CHECK(uc::decode_at(mixed, 1, &len) == 0x20AC);
  CHECK(len == 3);
  CHECK(uc::decode_before(mixed, 8, &len) == 0x1F600);
  CHECK(len == 4);
  CHECK(uc::decode_before(mixed, 1, &len) == 'a');
  CHECK_THROWS_WITH(uc::decode_at(mixed, 2, &len), Catch::Contains("not valid UTF-8"));
  CHECK_THROWS_WITH(uc::decode_before(mixed, 2, &len), Catch::Contains("not valid UTF-8"));
  // Rust's from_utf8_lossy: one U+FFFD per maximal invalid prefix.
  CHECK(uc::utf8_lossy(std::string("a\xF0\x9F\x98", 4)) == "a\xEF\xBF\xBD");
  CHECK(uc::utf8_lossy(std::string("\xFF\xFE", 2)) == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(uc::utf8_lossy(std::string("\xE2\x82x", 3)) == "\xEF\xBF\xBDx");
}

// Random-text parity, run by hand: PEFT_TOKENIZER_FUZZ names a file written by
// tests/golden/fuzz_tokenizers.py (skipped without it, as in CI).
TEST_CASE("tokenizer: random texts from fuzz_tokenizers.py equal tokenizers'", "[tokenizer][fuzz]") {
  const char* path = std::getenv("PEFT_TOKENIZER_FUZZ");
  if (path == nullptr) {
    WARN("PEFT_TOKENIZER_FUZZ is not set: random-text parity skipped (see tests/golden/fuzz_tokenizers.py)");
    return;
  }
  const json all = read_json(path);
  size_t differ = 0, total = 0;
  for (auto it = all.begin(); it != all.end(); ++it) {
    const Tokenizer tok = Tokenizer::from_pretrained(case_dir(it.key()));
    for (const json& c : it.value()) {
      ++total;
      const std::vector<int64_t> want = c.at("ids").get<std::vector<int64_t>>();
      const bool same = tok.encode(c.at("text").get<std::string>()) == want &&
                        tok.decode(want) == c.at("decoded").get<std::string>();
      if (!same && ++differ <= 5) UNSCOPED_INFO(it.key() << ": " << printable(c.at("text").get<std::string>()));
    }
  }
  INFO(differ << " of " << total << " texts differ");
  CHECK(differ == 0);
}
