// io/tokenizer with a Unigram model: ids, tokens and decoded text equal Hugging Face tokenizers'
// (and transformers', which the golden script checked agree) on two tokenizer.json files made from
// SentencePiece unigram models the way transformers converts T5 / mT5
// (tests/golden/golden_tokenizers_unigram.py): the nmt_nfkc precompiled charsmap with the
// WhitespaceSplit + Metaspace setup, and the older layout with Replace " {2,}", byte fallback and
// a custom charsmap. Then grapheme clusters, and refusals.
#include <catch2/catch.hpp>

#include <algorithm>
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

std::string case_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/tokenizers/" + name; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return json::parse(in);
}

std::string printable(const std::string& s) { return json(s).dump(); }

}  // namespace

TEST_CASE("unigram tokenizer: ids, tokens and decode equal tokenizers' on every golden text",
          "[tokenizer][unigram][golden]") {
  for (const char* name : {"t5_unigram", "mt5_bytefallback"}) {
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

TEST_CASE("unigram tokenizer: lookups, </s> appended, <unk> runs fused, byte fallback", "[tokenizer][unigram]") {
  const Tokenizer t5 = Tokenizer::from_pretrained(case_dir("t5_unigram"));
  CHECK(t5.vocab_size() == 803);
  CHECK(t5.token_to_id("</s>") == 1);
  CHECK(t5.id_to_token(2) == std::string("<unk>"));
  CHECK(t5.is_special(1));
  CHECK(t5.token_to_id("<extra_id_0>") == 802);
  CHECK_FALSE(t5.id_to_token(803).has_value());
  const std::vector<int64_t> ids = t5.encode("x");
  REQUIRE(ids.size() >= 2);
  CHECK(ids.back() == 1);
  // Five characters the vocabulary lacks: one <unk>, as tokenizers' fuse_unk.
  const std::vector<std::string> unk = t5.tokenize("\u0f00\u1000\u13a0\u2c00\ua500");
  CHECK(std::count(unk.begin(), unk.end(), "<unk>") == 1);
  // Full-width letters are NFKC-folded by the precompiled charsmap before the model sees them.
  CHECK(t5.encode("\xEF\xBC\xA1") == t5.encode("A"));  // U+FF21

  const Tokenizer mt5 = Tokenizer::from_pretrained(case_dir("mt5_bytefallback"));
  const std::vector<std::string> bytes = mt5.tokenize("\u0f00");  // U+0F00: E0 BC 80
  CHECK(bytes == std::vector<std::string>{"\xE2\x96\x81", "<0xE0>", "<0xBC>", "<0x80>"});
  CHECK(mt5.decode(mt5.encode("a \u0f00 b"), true) == "a \u0f00 b");
  CHECK(mt5.encode("a  b") == mt5.encode("a b"));  // Replace " {2,}" → " "
}

TEST_CASE("grapheme clusters: the UAX #29 rules tokenizers' Precompiled normalizer walks by", "[tokenizer][unicode]") {
  auto clusters = [](const std::u32string& s) { return uc::grapheme_starts(s); };
  using V = std::vector<size_t>;
  CHECK(clusters(U"") == V{});
  CHECK(clusters(U"ab") == V{0, 1});
  CHECK(clusters(U"e\u0301x") == V{0, 2});               // GB9: a combining mark stays
  CHECK(clusters(U"\r\n\u0301") == V{0, 2});             // GB3, GB4: CR LF, then a mark alone
  CHECK(clusters(U"\U0001F1EB\U0001F1F7\U0001F1EF") == V{0, 2});  // GB12/13: flags pair up
  CHECK(clusters(U"\U0001F469\u200D\U0001F4BB!") == V{0, 3});     // GB11: emoji ZWJ sequence
  CHECK(clusters(U"a\u200D\U0001F4BB") == V{0, 2});               // ZWJ after a non-emoji: no GB11
  CHECK(clusters(U"\u1100\u1161\u11A8\u1100") == V{0, 3});        // GB6-8: Hangul L V T, then L
  CHECK(clusters(U"\u0915\u094D\u0937\u093F") == V{0});           // GB9c: क्षि is one cluster
  CHECK(clusters(U"\u0600x") == V{0});                            // GB9b: a Prepend joins the next
}

TEST_CASE("unigram tokenizer: broken or unsupported files are refused by name", "[tokenizer][unigram]") {
  std::ifstream in(case_dir("mt5_bytefallback") + "/tokenizer.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const json base = json::parse(ss.str());
  auto refused = [&](const std::function<void(json&)>& edit, const std::string& message) {
    json j = base;
    edit(j);
    CHECK_THROWS_WITH(Tokenizer::from_json(j.dump(), "edited.json"), Catch::Contains(message));
  };
  refused([](json& j) { j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "AAA*"; },
          "precompiled_charsmap is not base64");
  refused([](json& j) { j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "/////w=="; },
          "says its trie has 4294967295 bytes");
  refused([](json& j) { j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "AAAAAA=="; },
          "precompiled_charsmap has an empty trie");
  refused([](json& j) { j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "BAAAAAAAAAD/"; },
          "replacement strings are not UTF-8");
  refused([](json& j) { j["normalizer"]["normalizers"][1]["pattern"]["Regex"] = "\\s+"; },
          "Replace normalizer with the regex '\\s+' is not supported");
  refused([](json& j) { j["model"]["unk_id"] = 100000; }, "unk_id 100000 is outside the vocab");
  refused([](json& j) { j["model"]["vocab"][5] = "x"; }, "Unigram vocab entry 5 is not [piece, score]");
  refused([](json& j) { j["model"].erase("vocab"); }, "Unigram model without a \"vocab\" list");
  // A trie whose first unit points outside itself: the first lookup throws, naming the charsmap.
  json j = base;
  j["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "BAAAAAD8//8=";  // 1 unit, offset huge
  const Tokenizer tok = Tokenizer::from_json(j.dump(), "edited.json");
  CHECK_THROWS_WITH(tok.encode("x"), Catch::Contains("corrupt precompiled_charsmap"));
}
