// The model step of a tokenizer.json (its "model" object): one pre-tokenized piece → ids, and the
// vocabulary lookups. io/bpe.h and io/unigram.h implement it; internal to io/tokenizer.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace peft {
namespace io {

class TokenizerModel {
 public:
  virtual ~TokenizerModel() = default;
  // Ids of one pre-tokenized piece, appended to out.
  virtual void tokenize(const std::string& piece, std::vector<int64_t>& out) const = 0;
  virtual std::optional<int64_t> token_to_id(const std::string& token) const = 0;
  virtual const std::string* id_to_token(int64_t id) const = 0;  // nullptr when the id is not in the vocabulary
  // Every token string of the vocabulary (repeats allowed): the Tokenizer counts distinct ones.
  virtual std::vector<std::string> token_strings() const = 0;
};

}  // namespace io
}  // namespace peft
