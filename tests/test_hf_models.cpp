// transformers decoder models (layers/hf): tiny random OPT / Llama / Mistral / Qwen2 checkpoints
// written by transformers' save_pretrained (tests/golden/golden_hf.py) load by transformers'
// names and give transformers' logits; PEFT adapters made on them load and give PEFT's logits;
// a LoraConfig without target_modules picks PEFT's defaults and prints PEFT's parameter line;
// adapters saved here have PEFT's keys; bad checkpoints are refused and change nothing.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "golden_util.h"
#include "hf_test_util.h"
#include "program_runner.h"

using namespace peft;
namespace fs = std::filesystem;
namespace hf = peft::nn::hf;

using namespace hf_test;

TEST_CASE("hf models: transformers' logits from a save_pretrained folder", "[hf][golden]") {
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      auto lm = hf::from_pretrained(case_dir(name) + "/model");
      lm->eval();
      const Tensor ids = io_tensor(name, "input_ids"), mask = io_tensor(name, "attention_mask");
      NoGradGuard no_grad;
      expect_logits(lm->logits(ids, mask), io_tensor(name, "logits"), mask, "with left padding");
      expect_logits(lm->logits(ids), io_tensor(name, "logits_nomask"), Tensor(), "without a mask");
      expect_logits(lm->forward(ids), io_tensor(name, "logits_nomask"), Tensor(), "Module::forward");
    }
  }
}

TEST_CASE("hf models: parameter names are the checkpoint's, tied weights shared", "[hf]") {
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      auto lm = hf::from_pretrained(case_dir(name) + "/model");
      std::set<std::string> file_keys;
      for (const auto& kv : io::load_file(case_dir(name) + "/model/model.safetensors")) file_keys.insert(kv.first);
      std::set<std::string> ours;
      for (const auto& kv : lm->state_dict()) ours.insert(kv.first);
      for (const auto& [alias, src] : lm->tied_weights()) {
        CHECK(ours.count(alias));
        CHECK(lm->get_submodule(alias.substr(0, alias.rfind('.')))->param("weight").is_same(
            lm->get_submodule(src.substr(0, src.rfind('.')))->param("weight")));
        if (!file_keys.count(alias)) ours.erase(alias);
      }
      CHECK(ours == file_keys);
    }
  }
}

TEST_CASE("hf models: PEFT adapters made on them load and give PEFT's logits", "[hf][golden][peft]") {
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      auto lm = hf::from_pretrained(case_dir(name) + "/model");
      auto pm = PeftModel::from_pretrained(lm, case_dir(name) + "/adapter");
      pm->eval();
      const Tensor ids = io_tensor(name, "input_ids"), mask = io_tensor(name, "attention_mask");
      NoGradGuard no_grad;
      expect_logits(lm->logits(ids, mask), io_tensor(name, "logits_lora"), mask, "PEFT adapter");
      {
        auto off = pm->disable_adapter();
        expect_logits(lm->logits(ids, mask), io_tensor(name, "logits"), mask, "adapter disabled");
      }
    }
  }
}

TEST_CASE("hf models: a LoRA training step gives PEFT's loss and adapter gradients", "[hf][golden][peft]") {
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      auto lm = hf::from_pretrained(case_dir(name) + "/model");
      auto pm = PeftModel::from_pretrained(lm, case_dir(name) + "/adapter", std::nullopt, "default", /*is_trainable=*/true);
      pm->train();
      const Tensor ids = io_tensor(name, "input_ids"), mask = io_tensor(name, "attention_mask"),
                   labels = io_tensor(name, "labels");
      const int64_t B = ids.size(0), T = ids.size(1);
      // transformers' ForCausalLMLoss: logits[:, t] predict labels[:, t + 1], mean over labels != -100.
      Tensor logits = lm->logits(ids, mask);
      Tensor loss = cross_entropy(logits.slice(1, 0, T - 1).reshape({B * (T - 1), logits.size(2)}),
                                  labels.slice(1, 1, T).reshape({B * (T - 1)}));
      CHECK(loss.item() == Approx(io_tensor(name, "loss").item()).epsilon(1e-5));
      loss.backward();
      const NamedTensors io_all = io::load_file(case_dir(name) + "/io.safetensors");
      size_t checked = 0;
      for (const auto& [pname, p] : pm->named_parameters()) {
        if (!p.requires_grad()) continue;
        INFO(pname);
        const Tensor& want = io::find_tensor(io_all, "grad." + pname);
        REQUIRE(p.grad().defined());
        REQUIRE(p.grad().shape() == want.shape());
        const auto g = p.grad().to_vector<double>(), w = want.to_vector<double>();
        double scale = 0;
        for (double x : w) scale = std::max(scale, std::abs(x));
        for (size_t i = 0; i < g.size(); ++i) REQUIRE(std::abs(g[i] - w[i]) <= 1e-6 + 1e-4 * scale);
        ++checked;
      }
      size_t stored = 0;
      for (const auto& kv : io_all) stored += kv.first.rfind("grad.", 0) == 0;
      CHECK(checked == stored);
      CHECK(checked > 0);
    }
  }
}

TEST_CASE("hf models: no target_modules picks PEFT's defaults; PEFT's parameter line; PEFT's keys", "[hf][peft]") {
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      const auto meta = read_json(case_dir(name) + "/meta.json");
      auto lm = hf::from_pretrained(case_dir(name) + "/model");
      auto pm = get_peft_model(lm, golden_lora_config());
      std::ostringstream line;
      pm->print_trainable_parameters(line);
      CHECK(line.str() == meta.at("print_trainable_parameters").get<std::string>() + "\n");
      const auto [trainable, all] = pm->get_nb_trainable_parameters();
      CHECK(trainable == meta.at("trainable_params").get<int64_t>());
      CHECK(all == meta.at("all_params").get<int64_t>());
      CHECK(pm->peft_config().at("default").target_modules.to_json() == meta.at("target_modules"));

      TempDir tmp(name);
      pm->save_pretrained(tmp.path.string());
      std::map<std::string, Shape> ours, peft_keys;
      for (const auto& kv : io::load_file((tmp.path / "adapter_model.safetensors").string())) ours[kv.first] = kv.second.shape();
      for (const auto& kv : io::load_file(case_dir(name) + "/adapter/adapter_model.safetensors"))
        peft_keys[kv.first] = kv.second.shape();
      CHECK(ours == peft_keys);
      const auto cfg = read_json((tmp.path / "adapter_config.json").string());
      const auto peft_cfg = read_json(case_dir(name) + "/adapter/adapter_config.json");
      // PEFT writes target_modules in Python set order (it varies with the hash seed): compare sets.
      auto as_set = [](const nlohmann::json& j) { return j.get<std::set<std::string>>(); };
      CHECK(as_set(cfg.at("target_modules")) == as_set(peft_cfg.at("target_modules")));
      CHECK(cfg.at("task_type") == peft_cfg.at("task_type"));
    }
  }
}

TEST_CASE("hf models: save_pretrained round trip; init from a config", "[hf]") {
  auto lm = hf::from_pretrained(case_dir("llama3_rope_tied") + "/model");
  TempDir tmp("roundtrip");
  hf::save_pretrained(*lm, tmp.path.string());
  auto again = hf::from_pretrained(tmp.path.string());
  const Tensor ids = io_tensor("llama3_rope_tied", "input_ids");
  NoGradGuard no_grad;
  CHECK(again->logits(ids).to_vector<float>() == lm->logits(ids).to_vector<float>());
  // A config alone: transformers' init (N(0, 0.02) weights, unit norms), tied head shared.
  auto fresh = hf::causal_lm_from_config(lm->config());
  const auto w = fresh->get_submodule("model.layers.0.self_attn.q_proj")->param("weight").to_vector<double>();
  double ss = 0;
  for (double x : w) ss += x * x;
  CHECK(std::sqrt(ss / static_cast<double>(w.size())) == Approx(0.02).epsilon(0.3));
  CHECK(fresh->get_submodule("model.norm")->param("weight").to_vector<double>() ==
        std::vector<double>(static_cast<size_t>(lm->config().get_int("hidden_size")), 1.0));
}

TEST_CASE("hf models: a sharded checkpoint (model.safetensors.index.json) loads as the single file", "[hf]") {
  const std::string src = case_dir("qwen2") + "/model";
  const NamedTensors all = io::load_file(src + "/model.safetensors");
  TempDir t("sharded");
  fs::copy(src + "/config.json", t.path / "config.json");
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  NamedTensors shard[2];
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string file = i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    shard[i % 2].push_back(all[i]);
    index["weight_map"][all[i].first] = file;
  }
  io::save_file(shard[0], (t.path / "model-00001-of-00002.safetensors").string());
  io::save_file(shard[1], (t.path / "model-00002-of-00002.safetensors").string());
  std::ofstream(t.path / "model.safetensors.index.json") << index.dump();
  auto lm = hf::from_pretrained(t.path.string());
  const Tensor ids = io_tensor("qwen2", "input_ids"), mask = io_tensor("qwen2", "attention_mask");
  {
    NoGradGuard no_grad;
    expect_logits(lm->logits(ids, mask), io_tensor("qwen2", "logits"), mask, "sharded");
  }
  index["weight_map"][all[0].first] = "model-00002-of-00002.safetensors";  // points at the wrong shard
  std::ofstream(t.path / "model.safetensors.index.json") << index.dump();
  REQUIRE_THROWS_WITH(hf::from_pretrained(t.path.string()), Catch::Contains("which does not hold it"));
  index["weight_map"][all[0].first] = "../elsewhere.safetensors";
  std::ofstream(t.path / "model.safetensors.index.json") << index.dump();
  REQUIRE_THROWS_WITH(hf::from_pretrained(t.path.string()), Catch::Contains("not a plain file name"));
}

TEST_CASE("hf models: from_pretrained builds on the meta device and takes the checkpoint's values as they are",
          "[hf]") {
  const std::string src = case_dir("llama3_rope_tied") + "/model";
  // No random initialisation: loading draws nothing from the global generator.
  manual_seed(123);
  const double next = default_generator().uniform();
  manual_seed(123);
  auto lm = hf::from_pretrained(src);
  CHECK(default_generator().uniform() == next);
  const NamedTensors file = io::load_file(src + "/model.safetensors");
  const NamedTensors sd = lm->state_dict();
  for (const auto& [name, t] : sd) {
    INFO(name);
    CHECK(t.device().is_cpu());
    CHECK(t.dtype() == DType::F32);
    CHECK(t.requires_grad());
  }
  for (const auto& [key, value] : file) {
    const Tensor& t = lm->get_submodule(key.substr(0, key.rfind('.')))->param(key.substr(key.rfind('.') + 1));
    CHECK(max(abs(sub(t, value.to(DType::F32)))).item() == 0);
  }
  for (const auto& [alias, source] : lm->tied_weights()) {
    const Tensor& a = lm->get_submodule(alias.substr(0, alias.rfind('.')))->param("weight");
    const Tensor& b = lm->get_submodule(source.substr(0, source.rfind('.')))->param("weight");
    CHECK(a.unsafe_impl() == b.unsafe_impl());
  }
  // BF16 straight from the file: the F32 load rounded, nothing else.
  auto bf = hf::from_pretrained(src, {Device::cpu(), DType::BF16});
  for (const auto& [name, t] : bf->state_dict()) {
    INFO(name);
    REQUIRE(t.dtype() == DType::BF16);
    const Tensor& f = lm->get_submodule(name.substr(0, name.rfind('.')))->param(name.substr(name.rfind('.') + 1));
    CHECK(max(abs(sub(t.to(DType::F32), f.to(DType::BF16).to(DType::F32)))).item() == 0);
  }
  // A misshapen weight is named with both shapes; nothing is returned.
  TempDir t("meta_shape");
  for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), t.path / e.path().filename());
  NamedTensors bad = file;
  bad.front().second = Tensor::zeros({3, 3});
  io::save_file(bad, (t.path / "model.safetensors").string());
  REQUIRE_THROWS_WITH(hf::from_pretrained(t.path.string()),
                      Catch::Contains("weight " + bad.front().first + " has shape [3, 3] in the checkpoint"));
}

TEST_CASE("hf models: LoRA fine-tuning steps lower the loss on a tiny Llama", "[hf][training]") {
  auto lm = hf::from_pretrained(case_dir("llama_gqa") + "/model");
  auto pm = get_peft_model(lm, golden_lora_config());
  pm->train();
  optim::AdamW opt(pm->trainable_parameters(), {.lr = 1e-2});
  const Tensor ids = io_tensor("llama_gqa", "input_ids");
  const int64_t B = ids.size(0), T = ids.size(1);
  auto loss_now = [&] {
    Tensor logits = lm->logits(ids);
    // Next-token loss as transformers' ForCausalLMLoss: predict ids[:, 1:] from logits[:, :-1].
    Tensor l = logits.slice(1, 0, T - 1).reshape({B * (T - 1), logits.size(2)});
    return cross_entropy(l, ids.slice(1, 1, T).reshape({B * (T - 1)}));
  };
  const double first = loss_now().item();
  for (int step = 0; step < 20; ++step) {
    Tensor loss = loss_now();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  CHECK(loss_now().item() < first - 0.1);
}

TEST_CASE("hf models: bad checkpoints and inputs are refused and change nothing", "[hf][errors]") {
  const std::string src = case_dir("llama_gqa") + "/model";
  auto copy_model = [&](const TempDir& t) {
    for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), t.path / e.path().filename());
  };
  SECTION("unknown model_type, corrupt or missing config") {
    TempDir t("bad_config");
    copy_model(t);
    auto cfg = read_json(src + "/config.json");
    cfg["model_type"] = "gpt_bigcode";
    std::ofstream(t.path / "config.json") << cfg.dump();
    REQUIRE_THROWS_WITH(hf::from_pretrained(t.path.string()), Catch::Contains("\"gpt_bigcode\" is not supported"));
    std::ofstream(t.path / "config.json") << "{ not json";
    REQUIRE_THROWS_WITH(hf::from_pretrained(t.path.string()), Catch::Contains("not valid JSON"));
    fs::remove(t.path / "config.json");
    REQUIRE_THROWS_WITH(hf::from_pretrained(t.path.string()), Catch::Contains("config.json"));
  }
  SECTION("unsupported options are refused, not ignored") {
    auto cfg = read_json(src + "/config.json");
    cfg["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    cfg.erase("rope_parameters");
    REQUIRE_THROWS_WITH(hf::LlamaForCausalLM(hf::HfConfig(cfg)), Catch::Contains("\"yarn\" is not supported"));
    cfg = read_json(src + "/config.json");
    cfg["attention_dropout"] = 0.1;
    REQUIRE_THROWS_WITH(hf::LlamaForCausalLM(hf::HfConfig(cfg)), Catch::Contains("attention_dropout"));
    cfg = read_json(src + "/config.json");
    cfg["hidden_act"] = "mish";
    REQUIRE_THROWS_WITH(hf::LlamaForCausalLM(hf::HfConfig(cfg)), Catch::Contains("\"mish\" is not supported"));
    cfg = read_json(src + "/config.json");
    cfg["num_key_value_heads"] = 3;
    REQUIRE_THROWS_WITH(hf::LlamaForCausalLM(hf::HfConfig(cfg)), Catch::Contains("num_key_value_heads"));
  }
  SECTION("missing, unexpected and misshapen weights leave the model as it was") {
    auto lm = hf::from_pretrained(src);
    const auto before = lm->get_submodule("model.norm")->param("weight").to_vector<float>();
    auto sd = io::load_file(src + "/model.safetensors");
    TempDir t("bad_weights");
    copy_model(t);
    const std::string file = (t.path / "model.safetensors").string();
    auto with = [&](NamedTensors tensors) { io::save_file(tensors, file); };
    // model.norm.weight first in the list, so a partial load would have changed it.
    NamedTensors changed;
    for (auto& kv : sd) changed.emplace_back(kv.first, kv.first == "model.norm.weight" ? peft::mul(kv.second, 2.0) : kv.second);
    std::stable_partition(changed.begin(), changed.end(), [](const auto& kv) { return kv.first == "model.norm.weight"; });
    NamedTensors missing(changed.begin(), changed.end() - 1);
    with(missing);
    REQUIRE_THROWS_WITH(hf::load_pretrained_weights(*lm, t.path.string()), Catch::Contains("lacks 1 weight"));
    NamedTensors extra = changed;
    extra.emplace_back("model.layers.9.mlp.up_proj.weight", Tensor::zeros({2, 2}));
    with(extra);
    REQUIRE_THROWS_WITH(hf::load_pretrained_weights(*lm, t.path.string()),
                        Catch::Contains("model.layers.9.mlp.up_proj.weight"));
    NamedTensors shaped = changed;
    shaped.back().second = Tensor::zeros({3, 3});
    with(shaped);
    REQUIRE_THROWS(hf::load_pretrained_weights(*lm, t.path.string()));
    CHECK(lm->get_submodule("model.norm")->param("weight").to_vector<float>() == before);
    fs::remove(file);
    REQUIRE_THROWS_WITH(hf::load_pretrained_weights(*lm, t.path.string()), Catch::Contains("no model.safetensors"));
  }
  SECTION("bad token ids and masks") {
    auto lm = hf::from_pretrained(src);
    const int64_t V = lm->vocab_size();
    REQUIRE_THROWS_WITH(lm->logits(Tensor::from_vector(std::vector<int64_t>{1, V}, {1, 2})),
                        Catch::Contains("outside the vocabulary"));
    REQUIRE_THROWS_WITH(lm->logits(Tensor::zeros({1, 2})), Catch::Contains("input_ids must be I64"));
    REQUIRE_THROWS_WITH(lm->logits(Tensor::from_vector(std::vector<int64_t>{1, 2}, {1, 2}),
                                   Tensor::from_vector(std::vector<int64_t>{1, 1, 1}, {1, 3})),
                        Catch::Contains("attention_mask"));
  }
  SECTION("a transformers model type without PEFT defaults needs target_modules") {
    CHECK(default_lora_target_modules("llama") == std::vector<std::string>{"q_proj", "v_proj"});
    CHECK_FALSE(default_lora_target_modules("no_such_model").has_value());
  }
}


TEST_CASE("hf_lora sample: params prints PEFT's line; logits writes PEFT's logits", "[hf][samples]") {
  using peft::testing::run;
  const std::string bin = peft::testing::sample_binary("hf_lora");
  if (bin.empty()) return;
  for (const char* name : {"llama_gqa", "opt_350m_style"}) {
    DYNAMIC_SECTION(name) {
      const auto meta = read_json(case_dir(name) + "/meta.json");
      auto r = run(bin + " params --model-config " + case_dir(name) + "/model/config.json --r 4 --lora-alpha 8");
      INFO(r.output);
      REQUIRE(r.status == 0);
      CHECK(r.output == meta.at("print_trainable_parameters").get<std::string>() + "\n");
      TempDir tmp(std::string("sample_") + name);
      const std::string dst = (tmp.path / "logits.safetensors").string();
      r = run(bin + " logits --model " + case_dir(name) + "/model --adapter " + case_dir(name) + "/adapter --input " +
              case_dir(name) + "/io.safetensors --out " + dst);
      INFO(r.output);
      REQUIRE(r.status == 0);
      expect_logits(io::find_tensor(io::load_file(dst), "logits"), io_tensor(name, "logits_lora"),
                    io_tensor(name, "attention_mask"), "hf_lora logits");
    }
  }
  const auto r = run(bin + " logits --model /nonexistent --input x --out y");
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("error:"));
  CHECK(run(bin + " params --r 4").status == 2);
  CHECK(run(bin + " params --model-config x --bogus 1").status == 2);
}

TEST_CASE("hf_lora params: PEFT's line for full-size configs, built on the meta device", "[hf][samples][meta]") {
  // tests/golden/golden_hf_params.py: transformers builds each model on torch's meta device and
  // PEFT prints the line; here the same config goes through `hf_lora params` (no weights
  // allocated: a 7B model would need 27 GB in F32).
  using peft::testing::run;
  const std::string bin = peft::testing::sample_binary("hf_lora");
  if (bin.empty()) return;
  for (const char* name : {"llama2_7b", "llama3_8b", "mistral_7b", "qwen2_0_5b", "opt_350m"}) {
    DYNAMIC_SECTION(name) {
      const std::string dir = std::string(PEFT_GOLDEN_DIR) + "/hf_params/" + name;
      const auto expected = read_json(dir + "/expected.json");
      const auto& lora = expected.at("lora");
      std::ostringstream cmd;
      cmd << bin << " params --model-config " << dir << "/config.json --r " << lora.at("r").get<int64_t>()
          << " --lora-alpha " << lora.at("lora_alpha").get<double>() << " --lora-dropout "
          << lora.at("lora_dropout").get<double>();
      const auto r = run(cmd.str());
      INFO(cmd.str() << "\n" << r.output);
      REQUIRE(r.status == 0);
      CHECK(r.output == expected.at("print_trainable_parameters").get<std::string>() + "\n");
    }
  }
}
