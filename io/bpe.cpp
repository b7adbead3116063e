// BPE as Hugging Face tokenizers applies it (models/bpe/model.rs, word.rs): a piece starts as one
// symbol per character (or per byte token with byte_fallback, or <unk>, fused when fuse_unk), then
// the lowest-ranked mergeable adjacent pair is merged, leftmost first on ties, until none is left.
// A min-heap of candidate merges keeps that O(n log n) in the piece length: SentencePiece-style
// tokenizers have no pre-tokenizer, so a whole line is one piece.
#include "io/bpe.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "core/error.h"
#include "io/unicode.h"

namespace peft {
namespace io {
namespace {

std::string optional_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  PEFT_CHECK(it->is_string(), "tokenizer.json: model.", key, " must be a string or null");
  return it->get<std::string>();
}

bool optional_bool(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  PEFT_CHECK(it->is_boolean(), "tokenizer.json: model.", key, " must be a boolean");
  return it->get<bool>();
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model) {
  auto dropout = model.find("dropout");
  PEFT_CHECK(dropout == model.end() || dropout->is_null() || (dropout->is_number() && dropout->get<double>() == 0.0),
             "tokenizer.json: BPE dropout ", dropout == model.end() ? "" : dropout->dump(),
             " is not supported (it makes encoding random; set it to null)");
  auto vocab = model.find("vocab");
  PEFT_CHECK(vocab != model.end() && vocab->is_object(), "tokenizer.json: BPE model without a \"vocab\" object");
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    PEFT_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0,
               "tokenizer.json: vocab entry '", it.key(), "' has no non-negative integer id");
    const int64_t id = it.value().get<int64_t>();
    vocab_[it.key()] = id;
    vocab_r_[id] = it.key();
  }
  continuing_subword_prefix_ = optional_string(model, "continuing_subword_prefix");
  end_of_word_suffix_ = optional_string(model, "end_of_word_suffix");
  fuse_unk_ = optional_bool(model, "fuse_unk");
  byte_fallback_ = optional_bool(model, "byte_fallback");
  ignore_merges_ = optional_bool(model, "ignore_merges");
  const std::string unk = optional_string(model, "unk_token");
  if (!unk.empty()) {
    auto it = vocab_.find(unk);
    PEFT_CHECK(it != vocab_.end(), "tokenizer.json: unk_token '", unk, "' is not in the vocabulary");
    unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(name);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  auto merges = model.find("merges");
  PEFT_CHECK(merges != model.end() && merges->is_array(), "tokenizer.json: BPE model without a \"merges\" array");
  const size_t prefix_len = continuing_subword_prefix_.size();
  int64_t rank = 0;
  for (const auto& m : *merges) {
    std::string a, b;
    if (m.is_string()) {  // the older "a b" form
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      PEFT_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
                 "tokenizer.json: merge ", rank, " '", s, "' is not two tokens separated by one space");
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else {
      PEFT_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                 "tokenizer.json: merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]");
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    PEFT_CHECK(ia != vocab_.end() && ib != vocab_.end(), "tokenizer.json: merge ", rank, " names '",
               ia == vocab_.end() ? a : b, "', which is not in the vocabulary");
    const std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : std::string());
    auto im = vocab_.find(merged);
    PEFT_CHECK(im != vocab_.end(), "tokenizer.json: merge ", rank, " makes '", merged,
               "', which is not in the vocabulary");
    merges_[{ia->second, ib->second}] = Merge{rank, im->second};  // a repeated pair: the later one wins, as in Rust
    ++rank;
  }
}

std::optional<int64_t> BpeModel::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  auto it = vocab_r_.find(id);
  return it == vocab_r_.end() ? nullptr : &it->second;
}

std::vector<std::string> BpeModel::token_strings() const {
  std::vector<std::string> out;
  out.reserve(vocab_.size());
  for (const auto& kv : vocab_) out.push_back(kv.first);
  return out;
}

void BpeModel::tokenize(const std::string& piece, std::vector<int64_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int64_t id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  auto add = [&sym](int64_t id) {
    const int n = static_cast<int>(sym.size());
    if (n > 0) sym.back().next = n;
    sym.push_back(Symbol{id, n - 1, -1, true});
  };
  int64_t pending_unk = -1;  // an <unk> not yet added (so consecutive ones can fuse), or -1
  for (size_t i = 0; i < piece.size();) {
    size_t len = 0;
    unicode::decode_at(piece, i, &len);
    std::string s = piece.substr(i, len);
    if (i > 0 && !continuing_subword_prefix_.empty()) s = continuing_subword_prefix_ + s;
    const bool last = i + len == piece.size();
    if (last && !end_of_word_suffix_.empty()) s += end_of_word_suffix_;
    i += len;
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : s) all = all && byte_ids_[b] >= 0;
      if (all) {
        // Rust adds these without flushing a pending <unk>; the <unk> lands after them.
        for (unsigned char b : s) add(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
    // No unk_token: the character is dropped, as in tokenizers.
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Candidate {
    int64_t rank;
    int pos;
    int64_t new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int pos) {
    const int nxt = sym[static_cast<size_t>(pos)].next;
    if (nxt < 0) return;
    auto it = merges_.find({sym[static_cast<size_t>(pos)].id, sym[static_cast<size_t>(nxt)].id});
    if (it != merges_.end()) queue.push(Candidate{it->second.rank, pos, it->second.new_id});
  };
  for (int p = 0; p + 1 < static_cast<int>(sym.size()); ++p) consider(p);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[static_cast<size_t>(top.pos)];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[static_cast<size_t>(left.next)];
    auto it = merges_.find({left.id, right.id});
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // a stale candidate
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[static_cast<size_t>(right.next)].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : sym)
    if (s.alive) out.push_back(s.id);
}

}  // namespace io
}  // namespace peft
