// Tokenizer: text ↔ token ids from a Hugging Face tokenizer.json (the file transformers' fast
// tokenizers save), with the ids tokenizers / transformers give. Supported: BPE models — byte-level
// (GPT-2 / OPT, Llama 3, Qwen2) and SentencePiece-style with byte fallback (Llama 2, Mistral) — and
// SentencePiece Unigram models (T5, mT5; unk fusing and byte fallback), with their normalizers
// (NFC, NFD, Prepend, Replace with a string or T5's regex " {2,}", Strip, Precompiled — the
// SentencePiece charsmap), pre-tokenizers (ByteLevel, the GPT-2 / Llama 3 / Qwen2 Split regexes,
// Metaspace, WhitespaceSplit, Digits), added and special tokens (single_word, lstrip, rstrip,
// normalized), post-processors (TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing)
// and decoders (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip). Anything else in the
// file (a WordPiece or WordLevel model, another regex, BPE dropout) is refused by name when the
// file is read.
//
// As transformers does, the file's "truncation" and "padding" settings are not applied: encode()
// returns the whole text; cut or pad the ids yourself.
//
// Pure functions on strings and ids (DESIGN.md): a Tokenizer is immutable after loading and
// safe to share between threads.
//
//   auto tok = peft::io::Tokenizer::from_pretrained("opt-350m");   // reads opt-350m/tokenizer.json
//   std::vector<int64_t> ids = tok.encode("Hello world");           // with </s> first, as OPT's
//   std::string text = tok.decode(ids, /*skip_special_tokens=*/true);
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace peft {
namespace io {

class Tokenizer {
 public:
  // Reads and validates a tokenizer.json; throws peft::Error naming the file and the problem.
  static Tokenizer from_file(const std::string& path);
  // The tokenizer.json inside a model folder (save_pretrained's layout).
  static Tokenizer from_pretrained(const std::string& dir);
  // From the JSON text itself; `origin` names it in error messages.
  static Tokenizer from_json(const std::string& json_text, const std::string& origin = "tokenizer.json");

  // Token ids of `text` (valid UTF-8, else peft::Error). add_special_tokens applies the
  // post-processor (e.g. a BOS token); special tokens written in the text are always recognised.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  // The token strings of encode(text, false).
  std::vector<std::string> tokenize(const std::string& text) const;
  // Text of `ids`; an id outside the vocabulary throws. skip_special_tokens drops special tokens.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  // Distinct tokens, the model's plus the added ones (tokenizers' get_vocab_size(true)).
  int64_t vocab_size() const;
  std::optional<int64_t> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(int64_t id) const;
  bool is_special(int64_t id) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace io
}  // namespace peft
