// Which modules get_peft_model adapts, against PEFT 0.21.2's own answers
// (tests/golden/golden_peft_targeting.py → data/peft_targeting/targeting.json): target_modules
// "all-linear" (every Linear but a transformers model's lm_head; condensed to suffixes from 20
// names on), exclude_modules as a list and as a regex, layers_to_transform with and without
// layers_pattern. For each case the same model is built here, the same configs applied, and
// targeted_module_names (in order) and the saved adapter_config.json's target_modules compared.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "peft.h"

using namespace peft;
namespace fs = std::filesystem;
namespace hf = peft::nn::hf;
using Catch::Matchers::Contains;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag)
      : path(fs::temp_directory_path() / ("peft_targeting_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// The containers golden_peft_targeting.py builds with torch.nn (same names, same types).
std::shared_ptr<nn::ModuleDict> mlp() {
  auto m = std::make_shared<nn::ModuleDict>();
  m->insert("lin0", std::make_shared<nn::Linear>(10, 20));
  m->insert("relu", std::make_shared<nn::ReLU>());
  m->insert("drop", std::make_shared<nn::Dropout>(0.5));
  m->insert("lin1", std::make_shared<nn::Linear>(20, 2));
  m->insert("sm", std::make_shared<nn::LogSoftmax>(-1));
  return m;
}

std::shared_ptr<nn::ModuleDict> tower() {
  auto root = std::make_shared<nn::ModuleDict>();
  root->insert("in_proj", std::make_shared<nn::Linear>(4, 8));
  auto layers = std::make_shared<nn::ModuleList>();
  for (int i = 0; i < 4; ++i) {
    auto attn = std::make_shared<nn::ModuleDict>();
    for (const char* n : {"q", "k", "o"}) attn->insert(n, std::make_shared<nn::Linear>(8, 8));
    auto mlp_block = std::make_shared<nn::ModuleDict>();
    mlp_block->insert("fc1", std::make_shared<nn::Linear>(8, 16));
    mlp_block->insert("fc2", std::make_shared<nn::Linear>(16, 8));
    auto block = std::make_shared<nn::ModuleDict>();
    block->insert("attn", attn);
    block->insert("norm", std::make_shared<nn::LayerNorm>(8));
    block->insert("mlp", mlp_block);
    layers->push_back(block);
  }
  auto model = std::make_shared<nn::ModuleDict>();
  model->insert("layers", layers);
  root->insert("model", model);
  root->insert("head", std::make_shared<nn::Linear>(8, 3));
  return root;
}

std::shared_ptr<nn::ModuleDict> no_linear() {
  auto m = std::make_shared<nn::ModuleDict>();
  m->insert("emb", std::make_shared<nn::Embedding>(10, 4));
  m->insert("norm", std::make_shared<nn::LayerNorm>(4));
  return m;
}

nn::ModulePtr build(const nlohmann::json& desc) {
  const std::string kind = desc.at("kind"), name = desc.at("name");
  const std::string data = PEFT_GOLDEN_DIR;
  if (kind == "hf") return hf::from_pretrained(data + "/hf/" + name + "/model");
  if (kind == "hf_t5") return hf::seq2seq_from_pretrained(data + "/hf_t5/" + name + "/model");
  if (name == "mlp") return mlp();
  if (name == "tower") return tower();
  REQUIRE(name == "no_linear");
  return no_linear();
}

// The golden's LoraConfig(r=2, lora_alpha=4, **config) read as adapter_config.json is.
LoraConfig config_of(const nlohmann::json& adapter) {
  nlohmann::json j = adapter.at("config");
  j["r"] = 2;
  j["lora_alpha"] = 4;
  return LoraConfig::from_json(j);
}

const nlohmann::json& golden() {
  static const nlohmann::json j = read_json(std::string(PEFT_GOLDEN_DIR) + "/peft_targeting/targeting.json");
  return j;
}

// Applies a case's adapters in order: get_peft_model for the first, add_adapter for the rest.
std::shared_ptr<PeftModel> apply(nn::ModulePtr model, const nlohmann::json& c) {
  std::shared_ptr<PeftModel> pm;
  for (const auto& a : c.at("adapters")) {
    if (!pm) pm = get_peft_model(model, config_of(a), a.at("name"));
    else pm->add_adapter(a.at("name"), config_of(a));
  }
  return pm;
}

}  // namespace

TEST_CASE("targeting: PEFT's targeted_module_names and saved target_modules", "[lora][targeting][golden][peft]") {
  const auto& cases = golden().at("cases");
  REQUIRE(cases.size() >= 20);
  for (const auto& c : cases) {
    if (c.contains("error")) continue;
    DYNAMIC_SECTION(c.at("name").get<std::string>()) {
      auto pm = apply(build(c.at("model")), c);
      CHECK(pm->targeted_module_names() == c.at("targeted_module_names").get<std::vector<std::string>>());
      TempDir dir(c.at("name"));
      pm->save_pretrained(dir.path.string());
      for (const auto& [adapter, want] : c.at("saved_target_modules").items()) {
        INFO("adapter " << adapter);
        const fs::path sub = adapter == "default" ? dir.path : dir.path / adapter;
        CHECK(read_json((sub / "adapter_config.json").string()).at("target_modules") == want);
      }
    }
  }
}

TEST_CASE("targeting: PEFT's refusals (all-linear without a Linear, everything excluded)", "[lora][targeting][golden]") {
  int n = 0;
  for (const auto& c : golden().at("cases")) {
    if (!c.contains("error")) continue;
    DYNAMIC_SECTION(c.at("name").get<std::string>()) {
      auto model = build(c.at("model"));
      std::vector<std::string> before;
      for (auto& [name, m] : model->named_modules()) before.push_back(name + ":" + m->type_name());
      CHECK_THROWS_WITH(apply(model, c), Contains(c.at("error").get<std::string>()));
      std::vector<std::string> after;
      for (auto& [name, m] : model->named_modules()) after.push_back(name + ":" + m->type_name());
      CHECK(after == before);  // nothing was replaced
    }
    ++n;
  }
  CHECK(n == 2);
}

TEST_CASE("targeting: a saved all-linear adapter loads onto the same modules", "[lora][targeting][golden]") {
  // The file holds the resolved names (here condensed to T5's q, k, v, o, wi_0, wi_1, wo), so
  // loading it targets what "all-linear" targeted.
  LoraConfig cfg;
  cfg.r = 2;
  cfg.task_type = "SEQ_2_SEQ_LM";
  cfg.target_modules = ModuleSelector::all_linear();
  const std::string folder = std::string(PEFT_GOLDEN_DIR) + "/hf_t5/mt5/model";
  auto pm = get_peft_model(hf::seq2seq_from_pretrained(folder), cfg);
  TempDir dir("reload");
  pm->save_pretrained(dir.path.string());
  auto loaded = PeftModel::from_pretrained(hf::seq2seq_from_pretrained(folder), dir.path.string());
  CHECK(loaded->targeted_module_names() == pm->targeted_module_names());
  CHECK(loaded->targeted_module_names().size() == 43);
  CHECK(loaded->peft_config().at("default").target_modules.names() ==
        std::vector<std::string>{"k", "o", "q", "v", "wi_0", "wi_1", "wo"});
}

TEST_CASE("targeting: \"all-linear\" is PEFT's string, in any case", "[lora][targeting]") {
  CHECK(ModuleSelector::all_linear().is_all_linear());
  CHECK(ModuleSelector(Regex{"All-Linear"}).is_all_linear());
  CHECK_FALSE(ModuleSelector(Regex{"all-linear2"}).is_all_linear());
  CHECK_FALSE(ModuleSelector(Regex{"all.linear"}).is_all_linear());
  CHECK_FALSE(ModuleSelector(std::vector<std::string>{"all-linear"}).is_all_linear());  // a list entry is a name
  CHECK(LoraConfig::from_json({{"target_modules", "ALL-LINEAR"}}).target_modules.is_all_linear());
  // Unresolved (inject_adapter_in_model's config is the caller's), it writes back as given.
  CHECK(LoraConfig::from_json({{"target_modules", "All-Linear"}}).to_json().at("target_modules") == "All-Linear");
}

TEST_CASE("targeting: all-linear keeps PEFT's string rules", "[lora][targeting][errors]") {
  LoraConfig cfg;
  cfg.target_modules = ModuleSelector::all_linear();
  cfg.layers_to_transform = std::vector<int64_t>{0};
  CHECK_THROWS_WITH(get_peft_model(tower(), cfg),
                    Contains("`layers_to_transform` cannot be used when `target_modules` is a str."));
  CHECK_THROWS_WITH(LoraConfig::from_json({{"target_modules", "all-linear"}, {"layers_to_transform", 1}}),
                    Contains("`layers_to_transform` cannot be used when `target_modules` is a str."));
  CHECK_THROWS_WITH(LoraConfig::from_json({{"target_modules", "all-linear"}, {"layers_pattern", "layers"}}),
                    Contains("`layers_pattern` cannot be used when `target_modules` is a str."));
}

TEST_CASE("targeting: inject_adapter_in_model resolves all-linear too", "[lora][targeting]") {
  LoraConfig cfg;
  cfg.target_modules = ModuleSelector::all_linear();
  auto m = inject_adapter_in_model(cfg, mlp());
  CHECK(m->get_submodule("lin0")->type_name() == "lora.Linear");
  CHECK(m->get_submodule("lin1")->type_name() == "lora.Linear");  // a custom model keeps its last Linear
}

TEST_CASE("targeting: the output layer of a transformers model is never an all-linear target", "[lora][targeting]") {
  // SEQ_CLS models have no lm_head; PEFT then leaves out "score" (else "classifier") for task_type SEQ_CLS.
  struct SeqCls : nn::hf::PretrainedModel {
    explicit SeqCls(const char* head) : PretrainedModel(nn::hf::HfConfig(nlohmann::json{{"model_type", "llama"}})) {
      register_module("proj", std::make_shared<nn::Linear>(4, 4));
      register_module(head, std::make_shared<nn::Linear>(4, 2));
    }
    std::string type_name() const override { return "SeqCls"; }
    void init_weights() override {}
    Tensor forward(const Tensor& x) override { return x; }
  };
  for (const char* head : {"score", "classifier", "lm_head"}) {
    DYNAMIC_SECTION(head) {
      auto model = std::make_shared<SeqCls>(head);
      LoraConfig cfg;
      cfg.task_type = "SEQ_CLS";
      CHECK(all_linear_module_names(*model, cfg) == std::vector<std::string>{"proj"});
      cfg.task_type = "CAUSAL_LM";
      const bool lm_head = std::string(head) == "lm_head";
      CHECK(all_linear_module_names(*model, cfg) ==
            (lm_head ? std::vector<std::string>{"proj"} : std::vector<std::string>{"proj", head}));
    }
  }
}

TEST_CASE("targeting: find_minimal_target_modules is PEFT's", "[lora][targeting]") {
  // PEFT's docstring example.
  std::vector<std::string> targets, others;
  for (int i = 0; i < 100; ++i) {
    targets.push_back("model.decoder.layers." + std::to_string(i) + ".self_attn.q_proj");
    targets.push_back("model.decoder.layers." + std::to_string(i) + ".self_attn.v_proj");
    others.push_back("model.encoder.layers." + std::to_string(i) + ".self_attn.k_proj");
  }
  CHECK(find_minimal_target_modules(targets, others) == std::vector<std::string>{"q_proj", "v_proj"});
  // Encoder and decoder q_proj told apart by one more segment; a name whose every suffix is taken stays whole.
  CHECK(find_minimal_target_modules({"dec.q", "enc.v"}, {"enc.q", "dec.v"}) == std::vector<std::string>{"dec.q", "enc.v"});
  CHECK_THROWS_WITH(find_minimal_target_modules({}, {}), Contains("target_modules should be a list or set of strings."));
  CHECK_THROWS_WITH(find_minimal_target_modules({"a"}, {"a"}), Contains("contain common elements"));
}
