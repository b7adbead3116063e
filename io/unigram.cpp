// Unigram as Hugging Face tokenizers applies it (models/unigram/model.rs, encode_optimized, and its
// Model::tokenize). Ties keep the first candidate reached: positions are visited left to right and,
// from each, the pieces shortest first; a later candidate must score strictly higher to replace it.
// The <unk> candidate of a character comes after the pieces starting there. Scores are summed in
// double, as Rust's f64.
#include "io/unigram.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "core/error.h"

namespace peft {
namespace io {
namespace {

constexpr double kUnkPenalty = 10.0;  // tokenizers' K_UNK_PENALTY

size_t utf8_length(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

}  // namespace

UnigramModel::UnigramModel(const nlohmann::json& model) {
  auto vocab = model.find("vocab");
  PEFT_CHECK(vocab != model.end() && vocab->is_array(), "tokenizer.json: Unigram model without a \"vocab\" list");
  for (const auto& entry : *vocab) {
    PEFT_CHECK(entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_number(),
               "tokenizer.json: Unigram vocab entry ", pieces_.size(), " is not [piece, score]: ", entry.dump());
    pieces_.push_back(entry[0].get<std::string>());
    scores_.push_back(entry[1].get<double>());
  }
  auto unk = model.find("unk_id");
  if (unk != model.end() && !unk->is_null()) {
    PEFT_CHECK(unk->is_number_integer() && unk->get<int64_t>() >= 0, "tokenizer.json: Unigram unk_id ", unk->dump(),
               " is not a non-negative integer");
    PEFT_CHECK(!pieces_.empty(), "tokenizer.json: Unigram vocab is empty but an unk_id is given");
    PEFT_CHECK(unk->get<int64_t>() < static_cast<int64_t>(pieces_.size()), "tokenizer.json: Unigram unk_id ",
               unk->get<int64_t>(), " is outside the vocab (", pieces_.size(), " pieces)");
    unk_id_ = unk->get<int64_t>();
  }
  auto fallback = model.find("byte_fallback");
  if (fallback != model.end() && !fallback->is_null()) {
    PEFT_CHECK(fallback->is_boolean(), "tokenizer.json: model.byte_fallback must be a boolean");
    byte_fallback_ = fallback->get<bool>();
  }

  double min_score = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < pieces_.size(); ++i) {
    ids_[pieces_[i]] = static_cast<int64_t>(i);  // a repeated piece: the later id wins, as in Rust
    min_score = std::min(min_score, scores_[i]);
  }
  unk_score_ = min_score - kUnkPenalty;

  std::fill(std::begin(root_children_), std::end(root_children_), -1);
  trie_.emplace_back();
  for (const auto& kv : ids_) {
    int32_t node = 0;
    for (unsigned char b : kv.first) {
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(trie_.size());
        trie_.emplace_back();
        auto& ch = trie_[static_cast<size_t>(node)].children;
        ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{0})), {b, next});
        if (node == 0) root_children_[b] = next;
      }
      node = next;
    }
    trie_[static_cast<size_t>(node)].id = kv.second;  // the empty piece marks the root, never matched
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = ids_.find(name);
    byte_ids_[b] = it == ids_.end() ? -1 : it->second;
  }
}

int32_t UnigramModel::child(int32_t node, unsigned char b) const {
  if (node == 0) return root_children_[b];
  const auto& ch = trie_[static_cast<size_t>(node)].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{0}));
  return it != ch.end() && it->first == b ? it->second : -1;
}

void UnigramModel::tokenize(const std::string& piece, std::vector<int64_t>& out) const {
  if (piece.empty()) return;
  struct Best {
    double score = 0.0;
    int64_t start = -1;  // where the best path's last token starts; -1: not reached yet
    int64_t id = 0;
  };
  const size_t size = piece.size();
  std::vector<Best> best(size + 1);
  for (size_t start = 0; start < size;) {
    const double till_here = best[start].score;
    const size_t char_len = utf8_length(static_cast<unsigned char>(piece[start]));
    bool single_char_piece = false;
    int32_t node = 0;
    for (size_t end = start; end < size;) {
      node = child(node, static_cast<unsigned char>(piece[end++]));
      if (node < 0) break;
      const int64_t id = trie_[static_cast<size_t>(node)].id;
      if (id < 0) continue;
      const double candidate = scores_[static_cast<size_t>(id)] + till_here;
      Best& target = best[end];
      if (target.start < 0 || candidate > target.score) target = Best{candidate, static_cast<int64_t>(start), id};
      single_char_piece = single_char_piece || end - start == char_len;
    }
    if (!single_char_piece) {
      const double candidate = unk_score_ + till_here;
      Best& target = best[start + char_len];
      if (target.start < 0 || candidate > target.score) {
        PEFT_CHECK(unk_id_.has_value(), "Unigram: '", piece.substr(start, char_len),
                   "' is not in the vocabulary and the model has no unk_id");
        target = Best{candidate, static_cast<int64_t>(start), *unk_id_};
      }
    }
    start += char_len;
  }

  // Back from the end; runs of <unk> become one string, looked up again as tokenizers does.
  std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) of each token, last first
  std::vector<int64_t> span_ids;                 // its id, or -1 for fused <unk>s
  for (size_t end = size; end > 0;) {
    const Best& b = best[end];
    PEFT_CHECK(b.start >= 0, "Unigram: no segmentation of '", piece, "'");
    const size_t begin = static_cast<size_t>(b.start);
    if (unk_id_ && b.id == *unk_id_) {
      if (!span_ids.empty() && span_ids.back() < 0)
        spans.back().first = begin;
      else
        spans.emplace_back(begin, end), span_ids.push_back(-1);
    } else {
      spans.emplace_back(begin, end);
      span_ids.push_back(b.id);
    }
    end = begin;
  }
  for (size_t k = spans.size(); k-- > 0;) {
    if (span_ids[k] >= 0) {
      out.push_back(span_ids[k]);
      continue;
    }
    const std::string s = piece.substr(spans[k].first, spans[k].second - spans[k].first);
    auto it = ids_.find(s);
    if (it != ids_.end()) {
      out.push_back(it->second);
      continue;
    }
    bool all_bytes = byte_fallback_;
    for (size_t i = 0; all_bytes && i < s.size(); ++i) all_bytes = byte_ids_[static_cast<unsigned char>(s[i])] >= 0;
    if (all_bytes) {
      for (unsigned char c : s) out.push_back(byte_ids_[c]);
      continue;
    }
    out.push_back(*unk_id_);
  }
}

std::optional<int64_t> UnigramModel::token_to_id(const std::string& token) const {
  auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

const std::string* UnigramModel::id_to_token(int64_t id) const {
  return id >= 0 && id < static_cast<int64_t>(pieces_.size()) ? &pieces_[static_cast<size_t>(id)] : nullptr;
}

std::vector<std::string> UnigramModel::token_strings() const { return pieces_; }

}  // namespace io
}  // namespace peft
