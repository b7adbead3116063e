// The BPE model of Hugging Face tokenizers (models/bpe): a vocabulary, ranked merges, and the
// options tokenizer.json's "model" object carries (unk_token, fuse_unk, byte_fallback,
// ignore_merges, continuing_subword_prefix, end_of_word_suffix). Internal to io/tokenizer.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/tokenizer_model.h"

namespace peft {
namespace io {

class BpeModel final : public TokenizerModel {
 public:
  // From tokenizer.json's "model" object (type "BPE"); refuses dropout > 0 (training-time
  // randomness), merges naming unknown tokens and an unk_token missing from the vocabulary.
  explicit BpeModel(const nlohmann::json& model);

  // Ids of one pre-tokenized piece (its text already in the model's alphabet), appended to out.
  void tokenize(const std::string& piece, std::vector<int64_t>& out) const override;

  std::optional<int64_t> token_to_id(const std::string& token) const override;
  const std::string* id_to_token(int64_t id) const override;  // nullptr when the id is not in the vocabulary
  std::vector<std::string> token_strings() const override;
  int64_t size() const { return static_cast<int64_t>(vocab_.size()); }
  const std::unordered_map<std::string, int64_t>& vocab() const { return vocab_; }

 private:
  struct PairHash {
    size_t operator()(const std::pair<int64_t, int64_t>& p) const {
      return std::hash<int64_t>()(p.first * 1000003 + p.second);
    }
  };
  struct Merge {
    int64_t rank, new_id;
  };
  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<int64_t, std::string> vocab_r_;
  std::unordered_map<std::pair<int64_t, int64_t>, Merge, PairHash> merges_;
  std::optional<int64_t> unk_id_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  int64_t byte_ids_[256];  // <0xXX> tokens for byte_fallback, -1 where missing
};

}  // namespace io
}  // namespace peft
