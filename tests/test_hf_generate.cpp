// Generation with the KV cache (layers/hf/generate.h): greedy tokens equal transformers'
// generate() on the six tiny checkpoints (left padding included); a cached step gives the
// logits of the uncached forward; sampling keeps to its top-k / top-p set and repeats with a
// seed; eos stops rows; bad settings are refused.
#include <catch2/catch.hpp>

#include "hf_test_util.h"

using namespace hf_test;
namespace hf = peft::nn::hf;

TEST_CASE("generate: greedy tokens equal transformers' generate (KV cache, left padding)", "[hf][golden][generate]") {
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      auto lm = hf::from_pretrained(case_dir(name) + "/model");
      hf::GenerationConfig g;
      g.max_new_tokens = 6;
      const Tensor out = hf::generate(*lm, io_tensor(name, "input_ids"), io_tensor(name, "attention_mask"), g);
      CHECK(out.to_vector<int64_t>() == io_tensor(name, "generated").to_vector<int64_t>());
    }
  }
}

TEST_CASE("generate: a cached step gives the full forward's logits", "[hf][generate]") {
  for (const char* name : {"mistral", "opt_350m_style"}) {
    DYNAMIC_SECTION(name) {
      auto lm = hf::from_pretrained(case_dir(name) + "/model");
      lm->eval();
      const Tensor ids = io_tensor(name, "input_ids");  // row 0 unpadded: model() positions = generate's
      const Tensor row = ids.slice(0, 0, 1).contiguous();
      const int64_t T = row.size(1);
      NoGradGuard no_grad;
      const Tensor full = lm->logits(row);
      hf::KvCache cache;
      const Tensor pos = Tensor::arange(T, DType::I64).unsqueeze(0);
      const Tensor first = lm->logits_step(row.slice(1, 0, 4).contiguous(), Tensor(), pos.slice(1, 0, 4).contiguous(), cache);
      CHECK(cache.length() == 4);
      const Tensor rest = lm->logits_step(row.slice(1, 4, T).contiguous(), Tensor(), pos.slice(1, 4, T).contiguous(), cache);
      CHECK(cache.length() == T);
      expect_logits(cat({first, rest}, 1), full, Tensor(), "cached vs full");
    }
  }
}

TEST_CASE("generate: sampling, eos and bad settings", "[hf][generate]") {
  auto lm = hf::from_pretrained(case_dir("llama_gqa") + "/model");
  const Tensor ids = io_tensor("llama_gqa", "input_ids"), mask = io_tensor("llama_gqa", "attention_mask");
  hf::GenerationConfig greedy;
  greedy.max_new_tokens = 5;
  const auto want = hf::generate(*lm, ids, mask, greedy).to_vector<int64_t>();
  SECTION("top_k = 1 is greedy; a seed repeats a draw") {
    hf::GenerationConfig s = greedy;
    s.do_sample = true;
    s.top_k = 1;
    Generator g(1);
    CHECK(hf::generate(*lm, ids, mask, s, &g).to_vector<int64_t>() == want);
    s.top_k = 0;
    s.temperature = 1.5;
    s.top_p = 0.9;
    Generator a(42), b(42);
    CHECK(hf::generate(*lm, ids, mask, s, &a).to_vector<int64_t>() == hf::generate(*lm, ids, mask, s, &b).to_vector<int64_t>());
  }
  SECTION("top_k = 3: every sampled token is among the 3 most likely") {
    hf::GenerationConfig s = greedy;
    s.do_sample = true;
    s.top_k = 3;
    s.max_new_tokens = 1;
    Generator g(9);
    NoGradGuard no_grad;
    lm->eval();
    const Tensor last = lm->logits(ids.slice(0, 0, 1).contiguous()).select(1, ids.size(1) - 1).select(0, 0);
    std::vector<float> l = last.to_vector<float>();
    std::vector<float> sorted = l;
    std::sort(sorted.rbegin(), sorted.rend());
    for (int i = 0; i < 20; ++i) {
      const auto out = hf::generate(*lm, ids.slice(0, 0, 1).contiguous(), Tensor(), s, &g).to_vector<int64_t>();
      CHECK(l[static_cast<size_t>(out.back())] >= sorted[2]);
    }
  }
  SECTION("eos stops a row; finished rows continue with pad_token_id; all finished stops") {
    hf::GenerationConfig e = greedy;
    e.eos_token_id = want[static_cast<size_t>(ids.size(1))];  // row 0's first new token
    e.pad_token_id = 5;
    const Tensor out = hf::generate(*lm, ids, mask, e);
    const int64_t T = ids.size(1), L = out.size(1);
    const auto v = out.to_vector<int64_t>();
    CHECK(v[static_cast<size_t>(T)] == *e.eos_token_id);
    for (int64_t t = T + 1; t < L; ++t) CHECK(v[static_cast<size_t>(t)] == 5);
    hf::GenerationConfig one = e;
    const Tensor single = hf::generate(*lm, ids.slice(0, 0, 1).contiguous(), Tensor(), one);
    CHECK(single.size(1) == T + 1);
  }
  SECTION("bad settings") {
    hf::GenerationConfig b = greedy;
    b.do_sample = true;
    b.temperature = 0;
    REQUIRE_THROWS_WITH(hf::generate(*lm, ids, mask, b), Catch::Contains("temperature"));
    b.temperature = 1;
    b.top_p = 0;
    REQUIRE_THROWS_WITH(hf::generate(*lm, ids, mask, b), Catch::Contains("top_p"));
    REQUIRE_THROWS_WITH(hf::generate(*lm, Tensor::zeros({1, 3}), Tensor(), greedy), Catch::Contains("input_ids"));
    hf::KvCache wrong;
    wrong.k.resize(7), wrong.v.resize(7);
    REQUIRE_THROWS_WITH(lm->logits_step(ids, mask, ids, wrong), Catch::Contains("KV cache holds 7"));
  }
}
