// The Unigram model of Hugging Face tokenizers (models/unigram), SentencePiece's: a vocabulary of
// [piece, score] pairs whose index is the id, unk_id, byte_fallback. A piece is split into the
// vocabulary pieces of highest total score (Viterbi over the byte positions, as tokenizers'
// encode_optimized); characters no piece covers score min_score - 10 as <unk>, and consecutive
// <unk>s fuse into one (tokenizers' fuse_unk, always on for Unigram). Internal to io/tokenizer.cpp.
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

class UnigramModel final : public TokenizerModel {
 public:
  // From tokenizer.json's "model" object (type "Unigram"); refuses a missing or malformed vocab and
  // an unk_id outside it. Other keys are ignored, as tokenizers' reader does.
  explicit UnigramModel(const nlohmann::json& model);

  // Throws peft::Error when a character is not covered and there is no unk_id (as tokenizers).
  void tokenize(const std::string& piece, std::vector<int64_t>& out) const override;
  std::optional<int64_t> token_to_id(const std::string& token) const override;
  const std::string* id_to_token(int64_t id) const override;
  std::vector<std::string> token_strings() const override;

 private:
  // A byte trie of the pieces: node 0 is the root; children sorted by byte.
  struct Node {
    int64_t id = -1;  // the piece ending here (its token_to_id, i.e. the last of repeated pieces), or -1
    std::vector<std::pair<unsigned char, int32_t>> children;
  };
  int32_t child(int32_t node, unsigned char b) const;

  std::vector<std::string> pieces_;
  std::vector<double> scores_;
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<Node> trie_;
  int32_t root_children_[256];  // the root's children by byte (-1: none), the hot lookup
  std::optional<int64_t> unk_id_;
  bool byte_fallback_ = false;
  double unk_score_ = 0.0;
  int64_t byte_ids_[256];  // <0xXX> pieces for byte_fallback, -1 where missing
};

}  // namespace io
}  // namespace peft
