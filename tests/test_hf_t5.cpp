// T5 / mT5 (layers/hf/t5.h) against transformers 5.25 and PEFT 0.21 on the tiny checkpoints of
// tests/golden/golden_hf_t5.py: logits, PEFT adapters (default targets q, v), a LoRA training
// step's loss and gradients, the parameter line, and refusals.
#include <catch2/catch.hpp>

#include <set>

#include "hf_test_util.h"
#include "program_runner.h"

using namespace peft;
namespace hf = peft::nn::hf;
using namespace hf_test;

namespace {

const char* const kT5Cases[] = {"t5_tied", "t5_v1_1", "mt5"};

std::string t5_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/hf_t5/" + name; }

Tensor t5_io(const std::string& name, const std::string& key) {
  return io::find_tensor(io::load_file(t5_dir(name) + "/io.safetensors"), key);
}

// |got − want| ≤ 1e-4 · max|want| everywhere. Looser than the decoders' per-element rule because
// F32 itself is: on these random-weight checkpoints (gated-GELU, unscaled attention scores)
// transformers' own F32 logits differ from its F64 ones by up to 1.1e-4 at |logit| 6.4, and ours
// by 2.1e-4 (both measured against model.double()); a wrong layout, bucket or scale moves logits by
// O(0.1).
void expect_t5_logits(const Tensor& got, const Tensor& want, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  double scale = 0, worst = 0;
  for (double x : w) scale = std::max(scale, std::abs(x));
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - w[i]));
  INFO("max abs diff " << worst << ", max |logit| " << scale);
  CHECK(worst <= 1e-4 * scale);
}

LoraConfig seq2seq_lora_config() {
  LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8;
  cfg.task_type = "SEQ_2_SEQ_LM";
  return cfg;
}

}  // namespace

TEST_CASE("hf t5: transformers' logits; tied head and output scaling as config.json says", "[hf][t5][golden]") {
  for (const char* name : kT5Cases) {
    DYNAMIC_SECTION(name) {
      auto m = hf::seq2seq_from_pretrained(t5_dir(name) + "/model");
      m->eval();
      const auto meta = read_json(t5_dir(name) + "/meta.json");
      CHECK(m->model_type() == meta.at("model_type").get<std::string>());
      CHECK(m->dims().tie == meta.at("tied").get<bool>());
      CHECK(m->child("lm_head")->param("weight").is_same(m->child("shared")->param("weight")) == m->dims().tie);
      CHECK(m->child("encoder")->child("embed_tokens")->param("weight").is_same(m->child("shared")->param("weight")));
      NoGradGuard no_grad;
      const Tensor ids = t5_io(name, "input_ids"), mask = t5_io(name, "attention_mask"),
                   dec = t5_io(name, "decoder_input_ids");
      expect_t5_logits(m->logits(ids, mask, dec), t5_io(name, "logits"), "logits");
      // Two steps by hand: the encoder once, then the decoder.
      const Tensor enc = m->encode(ids, mask);
      CHECK(enc.shape() == Shape{ids.size(0), ids.size(1), m->dims().d_model});
      expect_t5_logits(m->decode(dec, enc, mask), t5_io(name, "logits"), "encode + decode");
    }
  }
}

TEST_CASE("hf t5: PEFT adapters load and give PEFT's logits; the parameter line and keys", "[hf][t5][golden][peft]") {
  for (const char* name : kT5Cases) {
    DYNAMIC_SECTION(name) {
      const auto meta = read_json(t5_dir(name) + "/meta.json");
      {
        auto m = hf::seq2seq_from_pretrained(t5_dir(name) + "/model");
        auto pm = PeftModel::from_pretrained(m, t5_dir(name) + "/adapter");
        pm->eval();
        const Tensor ids = t5_io(name, "input_ids"), mask = t5_io(name, "attention_mask"),
                     dec = t5_io(name, "decoder_input_ids");
        NoGradGuard no_grad;
        expect_t5_logits(m->logits(ids, mask, dec), t5_io(name, "logits_lora"), "PEFT adapter");
        auto off = pm->disable_adapter();
        expect_t5_logits(m->logits(ids, mask, dec), t5_io(name, "logits"), "adapter disabled");
      }
      auto m = hf::seq2seq_from_pretrained(t5_dir(name) + "/model");
      auto pm = get_peft_model(m, seq2seq_lora_config());
      std::ostringstream line;
      pm->print_trainable_parameters(line);
      CHECK(line.str() == meta.at("print_trainable_parameters").get<std::string>() + "\n");
      CHECK(pm->peft_config().at("default").target_modules.to_json() == meta.at("target_modules"));
      TempDir tmp(std::string("t5_") + name);
      pm->save_pretrained(tmp.path.string());
      std::map<std::string, Shape> ours, peft_keys;
      for (const auto& kv : io::load_file((tmp.path / "adapter_model.safetensors").string())) ours[kv.first] = kv.second.shape();
      for (const auto& kv : io::load_file(t5_dir(name) + "/adapter/adapter_model.safetensors"))
        peft_keys[kv.first] = kv.second.shape();
      CHECK(ours == peft_keys);
      CHECK(read_json((tmp.path / "adapter_config.json").string()).at("task_type") == "SEQ_2_SEQ_LM");
    }
  }
}

TEST_CASE("hf t5: a LoRA training step gives PEFT's loss and adapter gradients", "[hf][t5][golden][peft]") {
  for (const char* name : kT5Cases) {
    DYNAMIC_SECTION(name) {
      auto m = hf::seq2seq_from_pretrained(t5_dir(name) + "/model");
      auto pm = PeftModel::from_pretrained(m, t5_dir(name) + "/adapter", std::nullopt, "default", /*is_trainable=*/true);
      pm->train();
      const Tensor ids = t5_io(name, "input_ids"), mask = t5_io(name, "attention_mask"), labels = t5_io(name, "labels");
      // transformers' T5 loss: decoder_input_ids = shift_right(labels), cross entropy over labels != -100.
      const Tensor logits = m->logits(ids, mask, m->shift_right(labels));
      const int64_t B = labels.size(0), T = labels.size(1);
      Tensor loss = cross_entropy(logits.reshape({B * T, logits.size(2)}), labels.reshape({B * T}));
      CHECK(loss.item() == Approx(t5_io(name, "loss").item()).epsilon(1e-5));
      loss.backward();
      const NamedTensors io_all = io::load_file(t5_dir(name) + "/io.safetensors");
      size_t checked = 0;
      for (const auto& [pname, p] : pm->named_parameters()) {
        if (!p.requires_grad()) continue;
        INFO(pname);
        const Tensor& want = io::find_tensor(io_all, "grad." + pname);
        REQUIRE(p.grad().defined());
        const auto g = p.grad().to_vector<double>(), w = want.to_vector<double>();
        REQUIRE(g.size() == w.size());
        double scale = 0;
        for (double x : w) scale = std::max(scale, std::abs(x));
        for (size_t i = 0; i < g.size(); ++i) REQUIRE(std::abs(g[i] - w[i]) <= 1e-6 + 3e-4 * scale);  // see expect_t5_logits
        ++checked;
      }
      size_t stored = 0;
      for (const auto& kv : io_all) stored += kv.first.rfind("grad.", 0) == 0;
      CHECK(checked == stored);
      CHECK(checked > 0);
    }
  }
}

TEST_CASE("hf t5: relative position buckets as transformers' _relative_position_bucket", "[hf][t5]") {
  // Values of transformers' T5Attention._relative_position_bucket for 32 buckets, max distance 128.
  CHECK(hf::t5_relative_position_bucket(0, true, 32, 128) == 0);
  CHECK(hf::t5_relative_position_bucket(3, true, 32, 128) == 19);
  CHECK(hf::t5_relative_position_bucket(-3, true, 32, 128) == 3);
  CHECK(hf::t5_relative_position_bucket(-8, true, 32, 128) == 8);
  CHECK(hf::t5_relative_position_bucket(-20, true, 32, 128) == 10);
  CHECK(hf::t5_relative_position_bucket(-1000, true, 32, 128) == 15);
  CHECK(hf::t5_relative_position_bucket(1000, true, 32, 128) == 31);
  CHECK(hf::t5_relative_position_bucket(5, false, 32, 128) == 0);  // causal: the future is bucket 0
  CHECK(hf::t5_relative_position_bucket(-20, false, 32, 128) == 17);
  CHECK(hf::t5_relative_position_bucket(-45, false, 32, 128) == 23);
  CHECK(hf::t5_relative_position_bucket(-9, true, 32, 128) == 8);
  CHECK(hf::t5_relative_position_bucket(90, true, 32, 128) == 30);
  CHECK(hf::t5_relative_position_bucket(-127, false, 32, 128) == 31);
}

TEST_CASE("hf t5: bad inputs and configs are refused", "[hf][t5][errors]") {
  auto m = hf::seq2seq_from_pretrained(t5_dir("mt5") + "/model");
  const Tensor ids = t5_io("mt5", "input_ids"), dec = t5_io("mt5", "decoder_input_ids");
  REQUIRE_THROWS_WITH(m->forward(ids), Catch::Contains("encoder-decoder"));
  REQUIRE_THROWS_WITH(m->logits(ids, Tensor(), Tensor()), Catch::Contains("decoder_input_ids"));
  REQUIRE_THROWS_WITH(m->logits(Tensor::from_vector(std::vector<int64_t>{1, 500}, {1, 2}), Tensor(), dec),
                      Catch::Contains("outside the vocabulary"));
  REQUIRE_THROWS_WITH(m->logits(ids, Tensor::ones({2, 3}, DType::I64), dec), Catch::Contains("mask"));
  REQUIRE_THROWS_WITH(hf::from_pretrained(t5_dir("mt5") + "/model"), Catch::Contains("seq2seq_from_pretrained"));
  REQUIRE_THROWS_WITH(hf::seq2seq_from_pretrained(case_dir("llama_gqa") + "/model"), Catch::Contains("not an encoder-decoder"));
  auto config = [](const char* extra) {
    return hf::HfConfig(nlohmann::json::parse(std::string(R"({"model_type": "t5", "d_model": 8, "d_kv": 2, "num_heads": 2,
      "d_ff": 8, "num_layers": 1, "vocab_size": 10)") + extra + "}"));
  };
  CHECK_NOTHROW(hf::seq2seq_lm_from_config(config("")));
  REQUIRE_THROWS_WITH(hf::seq2seq_lm_from_config(config(R"(, "feed_forward_proj": "gated-gelu-x")")),
                      Catch::Contains("feed_forward_proj"));
  REQUIRE_THROWS_WITH(hf::seq2seq_lm_from_config(config(R"(, "feed_forward_proj": "swiglu")")),
                      Catch::Contains("not supported"));
  REQUIRE_THROWS_WITH(hf::seq2seq_lm_from_config(config(R"(, "dropout_rate": 1.5)")), Catch::Contains("dropout_rate"));
  REQUIRE_THROWS_WITH(hf::seq2seq_lm_from_config(
                          config(R"(, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 16)")),
                      Catch::Contains("above half the buckets"));
}

TEST_CASE("hf t5: dropout_rate applies in training mode only", "[hf][t5]") {
  nlohmann::json j = read_json(t5_dir("mt5") + "/model/config.json");
  j["dropout_rate"] = 0.3;
  auto m = hf::seq2seq_lm_from_config(hf::HfConfig(j));
  hf::load_pretrained_weights(*m, t5_dir("mt5") + "/model");
  const Tensor ids = t5_io("mt5", "input_ids"), mask = t5_io("mt5", "attention_mask"),
               dec = t5_io("mt5", "decoder_input_ids");
  NoGradGuard no_grad;
  m->eval();
  expect_t5_logits(m->logits(ids, mask, dec), t5_io("mt5", "logits"), "eval ignores dropout_rate");
  m->train();
  const auto a = m->logits(ids, mask, dec).to_vector<double>(), b = t5_io("mt5", "logits").to_vector<double>();
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
  CHECK(diff > 1e-3);
}

TEST_CASE("hf t5: greedy generate gives transformers' generate ids", "[hf][t5][golden]") {
  for (const char* name : kT5Cases) {
    DYNAMIC_SECTION(name) {
      auto m = hf::seq2seq_from_pretrained(t5_dir(name) + "/model");
      hf::GenerationConfig g;
      g.max_new_tokens = 6;
      const Tensor want = t5_io(name, "generated");
      const Tensor got = hf::generate(*m, t5_io(name, "input_ids"), t5_io(name, "attention_mask"), g);
      CHECK(got.shape() == want.shape());
      CHECK(got.to_vector<int64_t>() == want.to_vector<int64_t>());
    }
  }
}

TEST_CASE("hf_lora sample on T5: params prints PEFT's line (mt0-large's seed line on the meta device); logits",
          "[hf][t5][samples]") {
  using peft::testing::run;
  const std::string bin = peft::testing::sample_binary("hf_lora");
  if (bin.empty()) return;
  {
    // The seeds' PEFT README: mt0-large, r=8, lora_alpha=32, lora_dropout=0.1 (1.2 billion parameters, none allocated).
    const std::string dir = std::string(PEFT_GOLDEN_DIR) + "/hf_params/mt0_large";
    const auto r = run(bin + " params --model-config " + dir + "/config.json --r 8 --lora-alpha 32 --lora-dropout 0.1");
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(r.output == "trainable params: 2,359,296 || all params: 1,231,940,608 || trainable%: 0.1915\n");
    CHECK(r.output == read_json(dir + "/expected.json").at("print_trainable_parameters").get<std::string>() + "\n");
  }
  for (const char* name : kT5Cases) {
    DYNAMIC_SECTION(name) {
      const auto meta = read_json(t5_dir(name) + "/meta.json");
      auto r = run(bin + " params --model-config " + t5_dir(name) + "/model/config.json --r 4 --lora-alpha 8");
      INFO(r.output);
      REQUIRE(r.status == 0);
      CHECK(r.output == meta.at("print_trainable_parameters").get<std::string>() + "\n");
      TempDir tmp(std::string("t5_sample_") + name);
      const std::string in = (tmp.path / "in.safetensors").string(), out = (tmp.path / "out.safetensors").string();
      io::save_file({{"input_ids", t5_io(name, "input_ids")}, {"attention_mask", t5_io(name, "attention_mask")},
                     {"decoder_input_ids", t5_io(name, "decoder_input_ids")}},
                    in);
      r = run(bin + " logits --model " + t5_dir(name) + "/model --adapter " + t5_dir(name) + "/adapter --input " + in +
              " --out " + out);
      INFO(r.output);
      REQUIRE(r.status == 0);
      expect_t5_logits(io::find_tensor(io::load_file(out), "logits"), t5_io(name, "logits_lora"), "hf_lora logits");
      // Without decoder_input_ids an encoder-decoder model cannot run: a clear error.
      io::save_file({{"input_ids", t5_io(name, "input_ids")}}, in);
      r = run(bin + " logits --model " + t5_dir(name) + "/model --input " + in + " --out " + out);
      CHECK(r.status == 1);
      CHECK_THAT(r.output, Catch::Contains("decoder_input_ids"));
    }
  }
}
