// Tokenizer (io/tokenizer.h): the encode pipeline of Hugging Face tokenizers —
//   added tokens split out of the raw text (those with normalized = false), the normalizer on
//   the rest, added tokens split out of the normalized text (normalized = true), the
//   pre-tokenizer, the model (BPE or Unigram) on each piece, the post-processor —
// and its decode (ids → tokens, special ones optionally dropped, then the decoder chain).
#include "io/tokenizer.h"

#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/bpe.h"
#include "io/unigram.h"
#include "io/tokenizer_steps.h"
#include "io/unicode.h"

namespace peft {
namespace io {
namespace {

using json = nlohmann::json;

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// Leftmost-longest matching of a set of literal patterns (aho-corasick's MatchKind::LeftmostLongest,
// which tokenizers uses), bucketed by first byte so that ordinary text costs one lookup per byte.
class LiteralSet {
 public:
  void add(const std::string& pattern, size_t token_index) {
    if (pattern.empty()) return;
    by_first_[static_cast<unsigned char>(pattern[0])].push_back({pattern, token_index});
  }
  bool empty() const {
    for (const auto& b : by_first_)
      if (!b.empty()) return false;
    return true;
  }
  // The leftmost match at or after `from`: {begin, end, token index}; begin == npos when none.
  struct Match {
    size_t begin = std::string::npos, end = 0, token = 0;
  };
  Match find(const std::string& s, size_t from) const {
    for (size_t p = from; p < s.size(); ++p) {
      const auto& bucket = by_first_[static_cast<unsigned char>(s[p])];
      Match best;
      for (const auto& e : bucket) {
        if (e.first.size() <= s.size() - p && s.compare(p, e.first.size(), e.first) == 0 &&
            (best.begin == std::string::npos || e.first.size() > best.end - best.begin))
          best = Match{p, p + e.first.size(), e.second};
      }
      if (best.begin != std::string::npos) return best;
    }
    return Match{};
  }

 private:
  std::vector<std::pair<std::string, size_t>> by_first_[256];
};

// A stretch of the text: an added token's id, or -1 for text still to tokenize.
struct Segment {
  std::string text;
  int64_t added_id = -1;
  bool at_origin = false;
};

// Rust regex's \s* / \w at a byte offset, decoding only the code points looked at (this runs
// once per added-token match, so it must not depend on the text's length).
size_t whitespace_end(const std::string& s, size_t i) {  // end of the whitespace run starting at i
  size_t len = 0;
  while (i < s.size() && unicode::is_whitespace(unicode::decode_at(s, i, &len))) i += len;
  return i;
}

size_t whitespace_begin(const std::string& s, size_t i) {  // start of the whitespace run ending at i
  size_t len = 0;
  while (i > 0 && unicode::is_whitespace(unicode::decode_before(s, i, &len))) i -= len;
  return i;
}

bool word_before(const std::string& s, size_t i) {
  size_t len = 0;
  return i > 0 && unicode::is_word(unicode::decode_before(s, i, &len));
}

bool word_at(const std::string& s, size_t i) {
  size_t len = 0;
  return i < s.size() && unicode::is_word(unicode::decode_at(s, i, &len));
}

}  // namespace

struct Tokenizer::Impl {
  std::string origin;
  std::unique_ptr<TokenizerModel> model;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::Decoder> decoder;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int64_t> added_by_content;
  std::unordered_map<int64_t, size_t> added_by_id;  // → index into `added`
  std::unordered_set<std::string> special_contents;
  LiteralSet raw_set, normalized_set;
  std::vector<int64_t> prefix_ids, suffix_ids;  // the post-processor's, around a single sequence
  int64_t vocab_size = 0;

  // tokenizers' AddedVocabulary::find_matches on one stretch of text.
  void split_added(const Segment& seg, const LiteralSet& set, std::vector<Segment>& out) const {
    const std::string& s = seg.text;
    size_t start_offset = 0, from = 0;
    while (true) {
      const LiteralSet::Match m = set.find(s, from);
      if (m.begin == std::string::npos) break;
      from = m.end;
      const AddedToken& t = added[m.token];
      size_t begin = m.begin, end = m.end;
      if (t.single_word && (word_before(s, begin) || word_at(s, end))) continue;
      if (t.lstrip) begin = std::max(whitespace_begin(s, begin), start_offset);
      if (t.rstrip) end = whitespace_end(s, end);
      if (start_offset < begin)
        out.push_back(Segment{s.substr(start_offset, begin - start_offset), -1, seg.at_origin && start_offset == 0});
      out.push_back(Segment{s.substr(begin, end - begin), t.id, false});
      start_offset = end;
    }
    if (start_offset < s.size())
      out.push_back(Segment{s.substr(start_offset), -1, seg.at_origin && start_offset == 0});
  }

  std::vector<int64_t> encode_body(const std::string& text, std::vector<std::string>* tokens) const {
    PEFT_CHECK(unicode::is_valid_utf8(text), "Tokenizer (", origin, "): the text is not valid UTF-8");
    std::vector<Segment> raw;
    split_added(Segment{text, -1, true}, raw_set, raw);
    std::vector<Segment> segments;
    for (Segment& seg : raw) {
      if (seg.added_id >= 0) {
        segments.push_back(std::move(seg));
        continue;
      }
      if (normalizer) seg.text = normalizer->apply(seg.text);
      split_added(seg, normalized_set, segments);
    }
    std::vector<int64_t> ids;
    for (const Segment& seg : segments) {
      if (seg.added_id >= 0) {
        ids.push_back(seg.added_id);
        continue;
      }
      std::vector<tok::Piece> pieces{tok::Piece{seg.text, seg.at_origin}};
      if (pre_tokenizer) pieces = pre_tokenizer->apply(pieces);
      for (const tok::Piece& p : pieces) model->tokenize(p.text, ids);
    }
    if (tokens)
      for (int64_t id : ids) tokens->push_back(token_of(id));
    return ids;
  }

  std::string token_of(int64_t id) const {
    auto a = added_by_id.find(id);
    if (a != added_by_id.end()) return added[a->second].content;
    const std::string* t = model->id_to_token(id);
    PEFT_CHECK(t != nullptr, "Tokenizer (", origin, "): id ", id, " is not in the vocabulary (", vocab_size,
               " tokens)");
    return *t;
  }
};

namespace {

// The ids a post-processor puts before / after a single sequence.
void read_post_processor(const json& j, std::vector<int64_t>& prefix, std::vector<int64_t>& suffix) {
  if (j.is_null()) return;
  PEFT_CHECK(j.is_object() && j.contains("type"), "tokenizer.json: post_processor without a \"type\"");
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const json& p : j.at("processors")) read_post_processor(p, prefix, suffix);
    return;
  }
  if (type == "ByteLevel") return;  // offsets only
  if (type == "TemplateProcessing") {
    const json& specials = j.at("special_tokens");
    bool seen_sequence = false;
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        PEFT_CHECK(item.at("Sequence").at("id").get<std::string>() == "A",
                   "tokenizer.json: TemplateProcessing's single template uses sequence B");
        PEFT_CHECK(!seen_sequence, "tokenizer.json: TemplateProcessing's single template names $A twice");
        seen_sequence = true;
        continue;
      }
      PEFT_CHECK(item.contains("SpecialToken"), "tokenizer.json: TemplateProcessing item ", item.dump(),
                 " is neither a SpecialToken nor a Sequence");
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      PEFT_CHECK(specials.contains(name), "tokenizer.json: TemplateProcessing names the special token '", name,
                 "' but its special_tokens do not define it");
      for (const json& id : specials.at(name).at("ids")) (seen_sequence ? suffix : prefix).push_back(id.get<int64_t>());
    }
    PEFT_CHECK(seen_sequence, "tokenizer.json: TemplateProcessing's single template has no $A");
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix.push_back(j.at("cls").at(1).get<int64_t>());
    suffix.push_back(j.at("sep").at(1).get<int64_t>());
    return;
  }
  PEFT_ERROR("tokenizer.json: post_processor type '", type,
             "' is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
}

}  // namespace

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& origin) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    PEFT_ERROR("Tokenizer: ", origin, " is not valid JSON: ", e.what());
  }
  auto impl = std::make_shared<Impl>();
  impl->origin = origin;
  try {
    PEFT_CHECK(j.is_object() && j.contains("model"), "no \"model\" object");
    const json& model = j.at("model");
    const std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
    if (type == "BPE")
      impl->model = std::make_unique<BpeModel>(model);
    else if (type == "Unigram")
      impl->model = std::make_unique<UnigramModel>(model);
    else
      PEFT_ERROR("model type '", type, "' is not supported (only BPE and Unigram; WordPiece and WordLevel are not implemented)");
    impl->normalizer = tok::make_normalizer(j.value("normalizer", json()));
    impl->pre_tokenizer = tok::make_pre_tokenizer(j.value("pre_tokenizer", json()));
    impl->decoder = tok::make_decoder(j.value("decoder", json()));
    read_post_processor(j.value("post_processor", json()), impl->prefix_ids, impl->suffix_ids);

    std::unordered_set<std::string> contents;
    for (std::string& t : impl->model->token_strings()) contents.insert(std::move(t));
    for (const json& a : j.value("added_tokens", json::array())) {
      AddedToken t;
      t.content = a.at("content").get<std::string>();
      PEFT_CHECK(!t.content.empty(), "an added token with empty content");
      // As tokenizers: a token the model already has keeps the model's id.
      const std::optional<int64_t> in_model = impl->model->token_to_id(t.content);
      t.id = in_model ? *in_model : a.at("id").get<int64_t>();
      t.single_word = a.value("single_word", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.special = a.value("special", false);
      t.normalized = a.value("normalized", !t.special);
      if (impl->added_by_content.count(t.content)) continue;
      const size_t index = impl->added.size();
      impl->added.push_back(t);
      impl->added_by_content[t.content] = t.id;
      impl->added_by_id[t.id] = index;
      if (t.special) impl->special_contents.insert(t.content);
      contents.insert(t.content);
    }
    for (size_t i = 0; i < impl->added.size(); ++i) {
      const AddedToken& t = impl->added[i];
      if (t.normalized)
        impl->normalized_set.add(impl->normalizer ? impl->normalizer->apply(t.content) : t.content, i);
      else
        impl->raw_set.add(t.content, i);
    }
    impl->vocab_size = static_cast<int64_t>(contents.size());
    for (int64_t id : impl->prefix_ids) impl->token_of(id);  // the post-processor's ids must exist
    for (int64_t id : impl->suffix_ids) impl->token_of(id);
  } catch (const json::exception& e) {
    PEFT_ERROR("Tokenizer: ", origin, ": malformed: ", e.what());
  } catch (const Error& e) {
    PEFT_ERROR("Tokenizer: ", origin, ": ", e.what());
  }
  Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PEFT_CHECK(in.good(), "Tokenizer: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_json(ss.str(), path);
}

Tokenizer Tokenizer::from_pretrained(const std::string& dir) {
  const std::string path = dir + "/tokenizer.json";
  std::ifstream probe(path);
  PEFT_CHECK(probe.good(), "Tokenizer::from_pretrained: '", dir,
             "' has no tokenizer.json (only fast-tokenizer files are read; save the tokenizer with transformers' "
             "save_pretrained)");
  return from_file(path);
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<int64_t> body = impl_->encode_body(text, nullptr);
  if (!add_special_tokens) return body;
  std::vector<int64_t> ids = impl_->prefix_ids;
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), impl_->suffix_ids.begin(), impl_->suffix_ids.end());
  return ids;
}

std::vector<std::string> Tokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> tokens;
  impl_->encode_body(text, &tokens);
  return tokens;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    std::string t = impl_->token_of(id);
    if (skip_special_tokens && impl_->special_contents.count(t)) continue;
    tokens.push_back(std::move(t));
  }
  if (impl_->decoder) tokens = impl_->decoder->apply(std::move(tokens));
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0 && !impl_->decoder) out += ' ';
    out += tokens[i];
  }
  return out;
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->added_by_content.find(token);
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int64_t id) const {
  auto a = impl_->added_by_id.find(id);
  if (a != impl_->added_by_id.end()) return impl_->added[a->second].content;
  const std::string* t = impl_->model->id_to_token(id);
  if (!t) return std::nullopt;
  return *t;
}

bool Tokenizer::is_special(int64_t id) const {
  auto a = impl_->added_by_id.find(id);
  return a != impl_->added_by_id.end() && impl_->added[a->second].special;
}

}  // namespace io
}  // namespace peft
