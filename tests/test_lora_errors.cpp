// The adapter errors of spec/peft-semantics.md (PEFT's messages, adapters/PEFT_FACTS.md), and
// DESIGN.md decision 5: bad input leaves the model as it was (same outputs, same module types,
// same requires_grad flags). Loading warns, not fails, on keys it does not know.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "peft.h"

namespace fs = std::filesystem;
using namespace peft;
using Catch::Matchers::Contains;

namespace {

// PEFT's test MLP (tests/test_custom_models.py).
class MLP : public nn::Module {
 public:
  MLP() {
    register_module("lin0", std::make_shared<nn::Linear>(10, 20));
    register_module("relu", std::make_shared<nn::ReLU>());
    register_module("drop", std::make_shared<nn::Dropout>(0.5));
    register_module("lin1", std::make_shared<nn::Linear>(20, 2));
    register_module("sm", std::make_shared<nn::LogSoftmax>(-1));
  }
  std::string type_name() const override { return "MLP"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (const char* n : {"lin0", "relu", "drop", "lin1", "sm"}) h = child(n)->forward(h);
    return h;
  }
};

std::shared_ptr<MLP> mlp() {
  manual_seed(0);
  auto m = std::make_shared<MLP>();
  m->eval();
  return m;
}

// A user LoRA layer for LSTM, only so that the registry lists a custom type.
class FakeLoraLSTM : public LoraLayer {
 public:
  FakeLoraLSTM(std::shared_ptr<nn::LSTM> base, const std::string& name, const LoraLayerSettings& s) : LoraLayer(base) {
    update_layer(name, s);
  }
  std::string type_name() const override { return "FakeLoraLSTM"; }
  void update_layer(const std::string& name, const LoraLayerSettings& s) override { add_adapter_settings(name, s); }
  Tensor forward(const Tensor& x) override { return base_layer()->forward(x); }
};

// What "the model is unchanged" compares: module names and types, parameter names, values and
// requires_grad flags, and the eval output.
struct ModelState {
  std::vector<std::pair<std::string, std::string>> modules;
  std::vector<std::tuple<std::string, std::vector<double>, bool>> params;
  std::vector<double> out;
};

ModelState capture(nn::Module& m) {
  ModelState s;
  for (auto& [n, c] : m.named_modules()) s.modules.emplace_back(n, c->type_name());
  for (auto& [n, p] : m.named_parameters()) s.params.emplace_back(n, p.to_vector<double>(), p.requires_grad());
  const bool training = m.is_training();
  m.eval();
  {
    NoGradGuard g;
    s.out = m.forward(Tensor::arange(90).reshape({9, 10})).to_vector<double>();
  }
  m.train(training);
  return s;
}

void check_unchanged(nn::Module& m, const ModelState& before) {
  ModelState now = capture(m);
  CHECK(now.modules == before.modules);
  REQUIRE(now.params.size() == before.params.size());
  for (size_t i = 0; i < now.params.size(); ++i) {
    INFO("parameter " << std::get<0>(before.params[i]));
    CHECK(std::get<0>(now.params[i]) == std::get<0>(before.params[i]));
    CHECK(std::get<1>(now.params[i]) == std::get<1>(before.params[i]));
    CHECK(std::get<2>(now.params[i]) == std::get<2>(before.params[i]));
  }
  CHECK(now.out == before.out);
}

LoraConfig config(std::vector<std::string> targets) {
  LoraConfig c;
  c.target_modules = std::move(targets);
  c.init_lora_weights = LoraInit::Random;
  return c;
}

std::string scratch_dir(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("peft_lora_errors_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_text(const std::string& path, const std::string& s) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << s;
}

// An adapter for mlp() targeting lin0 (r 8) written by C++ into `dir`.
void write_adapter(const std::string& dir) { get_peft_model(mlp(), config({"lin0"}))->save_pretrained(dir); }

}  // namespace

TEST_CASE("no target module matched names the targets and changes nothing", "[lora][errors]") {
  auto m = mlp();
  ModelState before = capture(*m);
  CHECK_THROWS_WITH(get_peft_model(m, config({"foo", "bar"})),
                    Contains("Target modules {'bar', 'foo'} not found in the base model. Please check the target "
                             "modules and try again."));
  check_unchanged(*m, before);
  LoraConfig re;
  re.target_modules = Regex{"lin"};  // a full match is required: "lin" matches neither lin0 nor lin1
  CHECK_THROWS_WITH(get_peft_model(m, re), Contains("Target modules lin not found in the base model."));
  LoraConfig eq;
  eq.target_modules = {"in0"};  // a list entry matches at a "." boundary only
  CHECK_THROWS_WITH(inject_adapter_in_model(eq, m), Contains("Target modules {'in0'} not found"));
  check_unchanged(*m, before);
}

TEST_CASE("excluding every module is an error", "[lora][errors]") {
  auto m = mlp();
  ModelState before = capture(*m);
  LoraConfig all = config({"lin0"});
  all.exclude_modules = Regex{".*"};
  CHECK_THROWS_WITH(get_peft_model(m, all),
                    Contains("All modules were excluded. This is likely unintended. Check your `target_modules`, "
                             "`exclude_modules` and `modules_to_save` configuration."));
  // The only target excluded, other modules unmatched: PEFT's "No modules were targeted" text.
  LoraConfig one = config({"lin0"});
  one.exclude_modules = std::vector<std::string>{"lin0"};
  CHECK_THROWS_WITH(get_peft_model(m, one), Contains("No modules were targeted for adaptation."));
  check_unchanged(*m, before);
}

TEST_CASE("a targeted type without a LoRA layer lists every registered type", "[lora][errors]") {
  auto m = mlp();
  ModelState before = capture(*m);
  std::string builtin;
  for (const auto& e : builtin_lora_layers()) builtin += (builtin.empty() ? "`" : ", `") + e.base_type + "`";
  // lin0 is adapted first in model order; the failure on relu must not leave it adapted.
  CHECK_THROWS_WITH(get_peft_model(m, config({"lin0", "relu"})),
                    Contains("Target module ReLU() is not supported. Currently, only the following modules are "
                             "supported: " + builtin + "."));
  check_unchanged(*m, before);
  LoraConfig custom = config({"relu"});
  custom.register_custom_module<nn::LSTM, FakeLoraLSTM>();
  CHECK_THROWS_WITH(get_peft_model(m, custom),
                    Contains("Currently, only the following modules are supported: `LSTM`, " + builtin + "."));
  check_unchanged(*m, before);
}

TEST_CASE("r <= 0 is refused, in the config and in rank_pattern", "[lora][errors]") {
  auto m = mlp();
  ModelState before = capture(*m);
  for (int64_t r : {0, -1}) {
    LoraConfig c = config({"lin0"});
    c.r = r;
    CHECK_THROWS_WITH(get_peft_model(m, c),
                      Contains("`r` should be a positive integer value but the value passed is " + std::to_string(r)));
  }
  LoraConfig p = config({"lin0", "lin1"});
  p.rank_pattern = {{"lin1", 0}};
  CHECK_THROWS_WITH(get_peft_model(m, p), Contains("`r` should be a positive integer value but the value passed is 0"));
  check_unchanged(*m, before);
}

TEST_CASE("a config without target_modules is refused for a custom model", "[lora][errors]") {
  auto m = mlp();
  ModelState before = capture(*m);
  LoraConfig c;
  CHECK_THROWS_WITH(get_peft_model(m, c), Contains("Please specify `target_modules`"));
  check_unchanged(*m, before);
}

TEST_CASE("invalid config combinations are refused with PEFT's messages", "[lora][errors]") {
  auto m = mlp();
  LoraConfig g = config({"lin0"});
  g.lora_bias = true;
  g.init_lora_weights = LoraInit::Gaussian;
  CHECK_THROWS_WITH(get_peft_model(m, g), Contains("The argument lora_bias=True is only supported with "
                                                   "init_lora_weights=True or False"));
  LoraConfig d = config({"lin0"});
  d.lora_bias = true;
  d.use_dora = true;
  CHECK_THROWS_WITH(get_peft_model(m, d), Contains("The argument lora_bias=True is not supported for DoRA"));
  LoraConfig l;
  l.target_modules = Regex{"lin0"};
  l.layers_to_transform = std::vector<int64_t>{0};
  CHECK_THROWS_WITH(get_peft_model(m, l), Contains("`layers_to_transform` cannot be used when `target_modules` is a str."));
  // lora_bias with init_lora_weights=False is allowed (PEFT's "Vanilla MLP 1 LoRA with lora_b bias").
  LoraConfig ok = config({"lin0"});
  ok.lora_bias = true;
  CHECK_NOTHROW(get_peft_model(mlp(), ok));
}

TEST_CASE("invalid, huge or deeply nested regular expressions are refused before compiling", "[lora][errors]") {
  // std::regex recurses per term and per group: unbounded patterns from adapter_config.json
  // would overflow the stack instead of throwing, so validate() bounds them first.
  auto m = mlp();
  ModelState before = capture(*m);
  LoraConfig bad;
  bad.target_modules = Regex{"lin(0"};
  CHECK_THROWS_WITH(get_peft_model(m, bad), Contains("target_modules 'lin(0' is not a valid regular expression"));
  LoraConfig huge;
  huge.target_modules = Regex{std::string(200000, 'a')};
  CHECK_THROWS_WITH(get_peft_model(m, huge), Contains("target_modules is a regular expression of 200000 characters; "
                                                      "at most 8192 are accepted"));
  LoraConfig deep;
  deep.target_modules = Regex{std::string(500, '(') + "lin0" + std::string(500, ')')};
  CHECK_THROWS_WITH(get_peft_model(m, deep), Contains("nests groups 500 deep; at most 64 levels are accepted"));
  LoraConfig ex = config({"lin0"});
  ex.exclude_modules = Regex{"[lin"};
  CHECK_THROWS_WITH(get_peft_model(m, ex), Contains("exclude_modules '[lin' is not a valid regular expression"));
  LoraConfig alpha = config({"lin0"});
  alpha.alpha_pattern = {{"lin0)", 4.0}};
  CHECK_THROWS_WITH(get_peft_model(m, alpha), Contains("alpha_pattern key 'lin0)' is not a valid regular expression"));
  LoraConfig layers = config({"lin0"});
  layers.layers_to_transform = std::vector<int64_t>{0};
  layers.layers_pattern = std::vector<std::string>{"lay(ers"};
  CHECK_THROWS_WITH(get_peft_model(m, layers), Contains("layers_pattern entry 'lay(ers' is not a valid regular expression"));
  // Counted repetition and back-references: libstdc++ reads their numbers without an overflow
  // check (a fuzzer-found crash), and copies a repeated atom count times.
  LoraConfig big_count;
  big_count.target_modules = Regex{"lin{11111111111111111111}"};
  CHECK_THROWS_WITH(get_peft_model(m, big_count), Contains("repeats something more than 1000 times"));
  big_count.target_modules = Regex{"((lin){100}){100}"};
  CHECK_THROWS_WITH(get_peft_model(m, big_count), Contains("counts multiply to more than 1000"));
  big_count.target_modules = Regex{"(lin)\\11111111111111111111"};
  CHECK_THROWS_WITH(get_peft_model(m, big_count), Contains("escaped number of 20 digits"));
  LoraConfig counted;  // ordinary counts, and braces inside a class are literal
  counted.target_modules = Regex{"lin\\d{1,3}|x[{99999}]"};
  CHECK_NOTHROW(get_peft_model(mlp(), counted));
  // Escaped parentheses open no group: 100 of them are fine.
  LoraConfig escaped;
  escaped.target_modules = Regex{"(lin0)|x" + [] { std::string s; for (int i = 0; i < 100; ++i) s += "\\("; return s; }()};
  CHECK_NOTHROW(get_peft_model(mlp(), escaped));
  // From a file: the same check runs when adapter_config.json is read.
  nlohmann::json j = config({"lin0"}).to_json();
  j["target_modules"] = std::string(3000, '(') + std::string(3000, ')');
  CHECK_THROWS_WITH(LoraConfig::from_json(j), Contains("at most 64 levels are accepted"));
  check_unchanged(*m, before);
}

TEST_CASE("a duplicate adapter name is refused and changes nothing", "[lora][errors]") {
  auto pm = get_peft_model(mlp(), config({"lin0"}));
  ModelState before = capture(*pm);
  CHECK_THROWS_WITH(pm->add_adapter("default", config({"lin1"})),
                    Contains("Adapter with name 'default' already exists."));
  check_unchanged(*pm, before);
  CHECK(pm->peft_config().size() == 1);
  CHECK(pm->targeted_module_names() == std::vector<std::string>{"lin0"});
}

TEST_CASE("unknown adapter names in set_adapter and delete_adapter", "[lora][errors]") {
  auto pm = get_peft_model(mlp(), config({"lin0"}));
  ModelState before = capture(*pm);
  CHECK_THROWS_WITH(pm->set_adapter("nope"), Contains("Adapter nope not found."));
  CHECK_THROWS_WITH(pm->set_adapter(std::vector<std::string>{"default", "nope"}), Contains("Adapter nope not found."));
  CHECK_THROWS_WITH(pm->delete_adapter("nope"), Contains("Adapter nope does not exist"));
  CHECK(pm->active_adapters() == std::vector<std::string>{"default"});
  check_unchanged(*pm, before);
  pm->merge_adapter();
  CHECK_THROWS_WITH(pm->delete_adapter("default"),
                    Contains("Cannot delete adapter(s) ['default'] while they are merged. Please unmerge them first."));
}

TEST_CASE("an adapter tensor of the wrong shape names key and shapes and leaves the model as it was",
          "[lora][errors]") {
  const std::string dir = scratch_dir("shape");
  write_adapter(dir);
  // The config now says r = 4 while the file holds r = 8 tensors.
  std::string cfg = read_text(dir + "/adapter_config.json");
  const std::string r8 = "\"r\": 8";
  REQUIRE(cfg.find(r8) != std::string::npos);
  write_text(dir + "/adapter_config.json", cfg.replace(cfg.find(r8), r8.size(), "\"r\": 4"));

  SECTION("from_pretrained") {
    auto m = mlp();
    ModelState before = capture(*m);
    try {
      PeftModel::from_pretrained(m, dir);
      FAIL("loading r = 8 tensors into r = 4 layers did not throw");
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains("size mismatch for"));
      CHECK_THAT(e.what(), Contains("lin0.lora_"));
      CHECK_THAT(e.what(), Contains("[8, 10]"));  // lora_A in the file
      CHECK_THAT(e.what(), Contains("[4, 10]"));  // lora_A in the model
    }
    check_unchanged(*m, before);
    CHECK(dynamic_cast<nn::Linear*>(m->child("lin0").get()) != nullptr);
  }
  SECTION("load_adapter into a PeftModel") {
    LoraConfig other = config({"lin0", "lin1"});
    auto pm = get_peft_model(mlp(), other);
    ModelState before = capture(*pm);
    CHECK_THROWS_WITH(pm->load_adapter(dir, "second"), Contains("size mismatch for"));
    check_unchanged(*pm, before);
    CHECK(pm->peft_config().count("second") == 0);
    CHECK(pm->active_adapters() == std::vector<std::string>{"default"});
    // and the name is free again
    LoraConfig again = config({"lin0"});
    CHECK_NOTHROW(pm->add_adapter("second", again));
  }
  fs::remove_all(dir);
}

TEST_CASE("a corrupt adapter directory is refused and the model stays as it was", "[lora][errors]") {
  const std::string dir = scratch_dir("corrupt");
  write_adapter(dir);
  const std::string good_cfg = read_text(dir + "/adapter_config.json");
  const std::string good_st = read_text(dir + "/adapter_model.safetensors");
  auto restore = [&] {
    write_text(dir + "/adapter_config.json", good_cfg);
    write_text(dir + "/adapter_model.safetensors", good_st);
  };
  auto m = mlp();
  ModelState before = capture(*m);
  auto refused = [&](const std::string& what) {
    INFO(what);
    CHECK_THROWS_AS(PeftModel::from_pretrained(m, dir), Error);
    check_unchanged(*m, before);
    auto pm = get_peft_model(mlp(), config({"lin1"}));
    ModelState pm_before = capture(*pm);
    CHECK_THROWS_AS(pm->load_adapter(dir, "other"), Error);
    check_unchanged(*pm, pm_before);
    restore();
  };

  fs::remove(dir + "/adapter_config.json");
  CHECK_THROWS_WITH(PeftModel::from_pretrained(m, dir), Contains("Can't find 'adapter_config.json'"));
  refused("no adapter_config.json");
  fs::remove(dir + "/adapter_model.safetensors");
  CHECK_THROWS_WITH(PeftModel::from_pretrained(m, dir), Contains("adapter_model.safetensors"));
  refused("no adapter_model.safetensors");
  write_text(dir + "/adapter_model.safetensors", good_st.substr(0, good_st.size() - 16));
  CHECK_THROWS_WITH(PeftModel::from_pretrained(m, dir), Contains("adapter_model.safetensors"));
  refused("truncated safetensors");
  write_text(dir + "/adapter_model.safetensors", good_st.substr(0, 5));
  refused("safetensors shorter than its header length");

  struct BadConfig {
    std::string key;
    nlohmann::json value;
    std::string message;
  };
  const std::vector<BadConfig> bad = {
      {"r", "8", "'r' must be an integer"},
      {"r", 0, "`r` should be a positive integer value but the value passed is 0"},
      {"lora_alpha", "eight", "'lora_alpha' must be a number"},
      {"bias", 0, "'bias' must be a string"},
      {"use_rslora", "no", "'use_rslora' must be a boolean"},
      {"peft_type", "IA3", "only \"LORA\" is supported"},
      {"target_modules", 5, "'target_modules' must be null, a string or a list"},
      {"target_modules", {"lin0", 1}, "'target_modules' must hold strings"},
      {"modules_to_save", "lin1", "'modules_to_save' must be null or a list of strings"},
      {"rank_pattern", {{"lin0", "x"}}, "'rank_pattern' must be an object of integers"},
      {"init_lora_weights", "loftq", "init_lora_weights \"loftq\" is not supported"},
      // PEFT options that change the math and are not implemented: refused naming the key.
      {"layer_replication", {{0, 2}, {1, 3}}, "'layer_replication' = [[0,2],[1,3]] is not supported"},
      {"trainable_token_indices", {1, 2}, "'trainable_token_indices' = [1,2] is not supported"},
      {"target_parameters", {"lin0.weight"}, "'target_parameters' = [\"lin0.weight\"] is not supported"},
      {"use_qalora", true, "'use_qalora' = true is not supported"},
      {"alora_invocation_tokens", {5, 6}, "'alora_invocation_tokens' = [5,6] is not supported"},
      {"use_bdlora", {{"nblocks", 2}}, "'use_bdlora'"},
      {"arrow_config", {{"top_k", 3}}, "'arrow_config'"},
      {"kasa_config", {{"x", 1}}, "'kasa_config'"},
      {"velora_config", {{"x", 1}}, "'velora_config'"},
      {"monteclora_config", {{"x", 1}}, "'monteclora_config'"},
      {"megatron_config", {{"tensor_model_parallel_size", 2}}, "Megatron-parallel LoRA layers"},
      {"ensure_weight_tying", true, "'ensure_weight_tying' = true is not supported"},
  };
  for (const auto& b : bad) {
    nlohmann::json j = nlohmann::json::parse(good_cfg);
    j[b.key] = b.value;
    write_text(dir + "/adapter_config.json", j.dump(2));
    CHECK_THROWS_WITH(PeftModel::from_pretrained(m, dir), Contains(b.message));
    refused(b.key + ": " + b.value.dump());
  }
  write_text(dir + "/adapter_config.json", good_cfg.substr(0, good_cfg.size() / 2));
  CHECK_THROWS_WITH(PeftModel::from_pretrained(m, dir), Contains("is not valid JSON"));
  refused("half a JSON file");
  write_text(dir + "/adapter_config.json", "[1, 2]");
  CHECK_THROWS_WITH(PeftModel::from_pretrained(m, dir), Contains("expected a JSON object"));
  refused("a JSON array");
  fs::remove_all(dir);
}

TEST_CASE("unimplemented PEFT options load at their defaults", "[lora][errors]") {
  const std::string dir = scratch_dir("default_options");
  write_adapter(dir);
  nlohmann::json j = nlohmann::json::parse(read_text(dir + "/adapter_config.json"));
  // What PEFT 0.21 writes for a plain LoRA adapter (and a few equivalent empty forms).
  j["layer_replication"] = nullptr;
  j["target_parameters"] = nlohmann::json::array();
  j["use_qalora"] = false;
  j["qalora_group_size"] = 32;  // only read with use_qalora
  j["ensure_weight_tying"] = false;
  j["use_bdlora"] = nullptr;
  j["megatron_config"] = nullptr;
  j["loftq_config"] = {{"loftq_bits", 4}};  // only read with init_lora_weights="loftq", which is refused
  j["runtime_config"] = {{"ephemeral_gpu_offload", true}};
  write_text(dir + "/adapter_config.json", j.dump(2));
  std::vector<std::string> warnings;
  std::shared_ptr<PeftModel> pm;
  REQUIRE_NOTHROW(pm = PeftModel::from_pretrained(mlp(), dir, std::nullopt, "default", false, &warnings));
  CHECK(warnings.empty());
  CHECK(pm->targeted_module_names() == std::vector<std::string>{"lin0"});
  fs::remove_all(dir);
}

TEST_CASE("unknown adapter_config.json keys give a warning, not an error", "[lora][errors]") {
  const std::string dir = scratch_dir("unknown_keys");
  write_adapter(dir);
  std::string cfg = read_text(dir + "/adapter_config.json");
  write_text(dir + "/adapter_config.json", "{\n  \"foo_new\": 1,\n  \"bar_new\": {\"x\": true}," + cfg.substr(1));
  std::vector<std::string> warnings;
  std::shared_ptr<PeftModel> pm;
  REQUIRE_NOTHROW(pm = PeftModel::from_pretrained(mlp(), dir, std::nullopt, "default", false, &warnings));
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Contains("Unexpected keyword arguments ['bar_new', 'foo_new'] for class LoraConfig, these "
                                   "are ignored."));
  CHECK(pm->targeted_module_names() == std::vector<std::string>{"lin0"});
  // Without a warnings list the load still succeeds (the warning goes to stderr).
  CHECK_NOTHROW(PeftModel::from_pretrained(mlp(), dir));
  fs::remove_all(dir);
}
