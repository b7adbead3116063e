// Interoperability with Hugging Face PEFT (spec/peft-semantics.md "Saving and loading"): the
// adapters in tests/golden/data/peft/<case>/ were written by PEFT 0.21.2's save_pretrained
// (tests/golden/golden_peft.py). Each case builds the same base model here, loads PyTorch's base
// weights by name, loads PEFT's adapter and compares the outputs with PEFT's; then it saves the
// adapter from C++ and compares the files with PEFT's key for key.
//
// adapter_config.json: every key PEFT writes is written, with PEFT's value, except
//   - "auto_mapping": PEFT records the Python class and module ({"base_model_class": "MLP",
//     "parent_library": "__main__"}); we write the C++ type name and "peft.cpp" (only
//     AutoPeftModel reads it, and a custom model has no importable module anyway);
//   - "target_modules": PEFT writes a Python set in hash order, we write it sorted: compared as sets.
//
// With PEFT_CPP_ADAPTER_OUT set, the C++-written adapters are also kept in
// $PEFT_CPP_ADAPTER_OUT/<case>/ for tests/golden/check_cpp_adapter_in_peft.py, which loads them
// into PEFT (a manual check: CI has no Python).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include <unistd.h>

#include "golden_util.h"
#include "peft.h"

namespace fs = std::filesystem;
using namespace peft;
using nlohmann::json;

namespace {

// Runs its children in registration order (through the children table, so injected layers
// run), the PEFT test models' forward.
class Chain : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Chain)
  Chain(std::string type, std::vector<std::pair<std::string, nn::ModulePtr>> children) : type_(std::move(type)) {
    for (auto& [n, m] : children) register_module(n, m);
  }
  std::string type_name() const override { return type_; }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& [n, m] : named_children()) h = m->forward(h);
    return h;
  }

 private:
  std::string type_;
};

// A parameter-free step (reshape) inside a Chain.
class Fn : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Fn)
  explicit Fn(std::function<Tensor(const Tensor&)> f) : f_(std::move(f)) {}
  std::string type_name() const override { return "Fn"; }
  Tensor forward(const Tensor& x) override { return f_(x); }

 private:
  std::function<Tensor(const Tensor&)> f_;
};

template <class M, class... A>
nn::ModulePtr mk(A&&... a) {
  return std::make_shared<M>(std::forward<A>(a)...);
}

nn::ModulePtr reshape_to(Shape s) {
  return mk<Fn>(std::function<Tensor(const Tensor&)>([s](const Tensor& x) { return x.reshape(s); }));
}

// The classes of golden_peft.py, by name.
nn::ModulePtr make_model(const std::string& cls) {
  if (cls == "MLP")
    return mk<Chain>("MLP", std::vector<std::pair<std::string, nn::ModulePtr>>{
                                {"lin0", mk<nn::Linear>(10, 20)}, {"relu", mk<nn::ReLU>()}, {"drop", mk<nn::Dropout>(0.5)},
                                {"lin1", mk<nn::Linear>(20, 2)}, {"sm", mk<nn::LogSoftmax>(-1)}});
  if (cls == "SeedMLP")
    return mk<Chain>("SeedMLP", std::vector<std::pair<std::string, nn::ModulePtr>>{
                                    {"seq", mk<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                                mk<nn::Linear>(20, 16), mk<nn::ReLU>(), mk<nn::Linear>(16, 16),
                                                mk<nn::ReLU>(), mk<nn::Linear>(16, 2), mk<nn::LogSoftmax>(-1)})}});
  if (cls == "ModelEmb")
    return mk<Chain>("ModelEmb", std::vector<std::pair<std::string, nn::ModulePtr>>{
                                     {"emb", mk<nn::Embedding>(100, 5)}, {"flat", mk<nn::Flatten>()},
                                     {"lin0", mk<nn::Linear>(50, 2)}, {"sm", mk<nn::LogSoftmax>(-1)}});
  if (cls == "ModelConv2D")
    return mk<Chain>("ModelConv2D", std::vector<std::pair<std::string, nn::ModulePtr>>{
                                        {"in", reshape_to({-1, 5, 3, 3})}, {"conv2d", mk<nn::Conv2d>(5, 10, 3)},
                                        {"relu", mk<nn::ReLU>()}, {"flat", mk<nn::Flatten>()},
                                        {"lin0", mk<nn::Linear>(10, 2)}, {"sm", mk<nn::LogSoftmax>(-1)}});
  if (cls == "ModelConv2D1x1")
    return mk<Chain>("ModelConv2D1x1", std::vector<std::pair<std::string, nn::ModulePtr>>{
                                           {"in", reshape_to({-1, 1, 3, 3})}, {"conv2d", mk<nn::Conv2d>(1, 10, 1)},
                                           {"relu", mk<nn::ReLU>()}, {"flat", mk<nn::Flatten>()},
                                           {"lin0", mk<nn::Linear>(90, 2)}, {"sm", mk<nn::LogSoftmax>(-1)}});
  if (cls == "ModelConv2DGroups") {
    nn::Conv2dConfig groups;
    groups.groups = 8;
    return mk<Chain>("ModelConv2DGroups", std::vector<std::pair<std::string, nn::ModulePtr>>{
                                              {"in", reshape_to({90})}, {"lin0", mk<nn::Linear>(90, 288)},
                                              {"view", reshape_to({2, 16, 3, 3})},
                                              {"conv2d", mk<nn::Conv2d>(16, 16, 3, groups)}, {"relu", mk<nn::ReLU>()},
                                              {"flat", mk<nn::Flatten>()}, {"lin1", mk<nn::Linear>(16, 2)},
                                              {"sm", mk<nn::LogSoftmax>(-1)}});
  }
  FAIL("golden_peft.py model class '" << cls << "' has no C++ twin in test_peft_interop.cpp");
  return nullptr;
}

std::string case_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/peft/" + name; }

json read_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  return json::parse(f);
}

json case_info(const golden::Case& io) { return json::parse(io.metadata().at("info")); }

// The case's base model with PyTorch's weights, in eval mode.
nn::ModulePtr base_model(const std::string& name, const json& info) {
  nn::ModulePtr m = make_model(info.at("model").get<std::string>());
  m->load_state_dict(io::load_file(case_dir(name) + "/base_model.safetensors"));  // strict: every name must match
  m->eval();
  return m;
}

const golden::Tol kTol{1e-5, 1e-5};

// A fresh scratch directory under the system temp dir.
std::string scratch_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peft_interop_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// The C++-written adapter in `ours` against PEFT's in `theirs`: same tensors (names, shapes,
// dtypes, values), metadata {"format": "pt"}, and the config keys and values (see the header).
void compare_adapter_files(const std::string& ours, const std::string& theirs, const std::string& model_type) {
  INFO("C++ adapter " << ours << " vs PEFT's " << theirs);
  auto mine = io::SafetensorsFile::open(ours + "/adapter_model.safetensors");
  auto peft_file = io::SafetensorsFile::open(theirs + "/adapter_model.safetensors");
  CHECK(mine.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  NamedTensors a = io::load_file(ours + "/adapter_model.safetensors");
  NamedTensors b = io::load_file(theirs + "/adapter_model.safetensors");
  std::map<std::string, Tensor> am(a.begin(), a.end()), bm(b.begin(), b.end());
  std::set<std::string> ak, bk;
  for (auto& kv : am) ak.insert(kv.first);
  for (auto& kv : bm) bk.insert(kv.first);
  CHECK(ak == bk);
  for (auto& [k, t] : bm) {
    if (!am.count(k)) continue;
    INFO("tensor " << k);
    CHECK(am[k].shape() == t.shape());
    CHECK(am[k].dtype() == t.dtype());
    if (am[k].shape() == t.shape()) CHECK(am[k].to_vector<double>() == t.to_vector<double>());
  }
  json mj = read_json(ours + "/adapter_config.json"), pj = read_json(theirs + "/adapter_config.json");
  for (auto it = pj.begin(); it != pj.end(); ++it) {
    INFO("adapter_config.json key '" << it.key() << "': C++ " << (mj.contains(it.key()) ? mj[it.key()].dump() : "(absent)")
                                     << ", PEFT " << it.value().dump());
    REQUIRE(mj.contains(it.key()));
    const json& v = mj[it.key()];
    if (it.key() == "auto_mapping") {
      CHECK(v.at("base_model_class") == json(model_type));
      CHECK(v.at("parent_library").is_string());
    } else if (it.key() == "target_modules" && v.is_array()) {
      CHECK(std::set<std::string>(v.begin(), v.end()) == std::set<std::string>(it.value().begin(), it.value().end()));
    } else {
      CHECK(v == it.value());
    }
  }
  for (auto it = mj.begin(); it != mj.end(); ++it) {
    INFO("key written by C++ only: " << it.key());
    CHECK(pj.contains(it.key()));
  }
}

// "Embedding" / "Conv2d" cases need their LoRA layer registered.
bool types_registered(const std::vector<std::string>& types) {
  std::set<std::string> have;
  for (const auto& e : builtin_lora_layers()) have.insert(e.base_type);
  for (const auto& t : types)
    if (!have.count(t)) {
      WARN("LoRA layer for " << t << " is not registered yet: case skipped");
      return false;
    }
  return true;
}

struct InteropCase {
  std::string name;
  std::vector<std::string> types;  // LoRA layer types the case needs
  bool other = false;              // has a second adapter "other" in other/
};

const std::vector<InteropCase>& interop_cases() {
  static const std::vector<InteropCase> cases = {
      {"mlp_list", {"Linear"}},        {"mlp_regex", {"Linear"}},
      {"mlp_modules_to_save", {"Linear"}}, {"mlp_bias_all", {"Linear"}},
      {"mlp_bias_lora_only", {"Linear"}},  {"mlp_rslora", {"Linear"}},
      {"mlp_patterns", {"Linear"}},    {"mlp_dropout", {"Linear"}},
      {"mlp_lora_bias", {"Linear"}},   {"mlp_dora", {"Linear"}},
      {"mlp_two_adapters", {"Linear"}, true},
      {"seed_mlp_two_adapters", {"Linear"}, true},
      {"emb_two_adapters", {"Embedding", "Linear"}, true},
      {"seed_mlp", {"Linear"}},        {"emb", {"Embedding", "Linear"}},
      {"conv2d", {"Conv2d", "Linear"}}, {"conv2d_1x1", {"Conv2d"}},
      {"conv2d_groups", {"Conv2d"}},   {"conv2d_dora", {"Conv2d"}},
  };
  return cases;
}

void run_interop_case(const InteropCase& ic) {
  INFO("PEFT golden case " << ic.name);
  if (!types_registered(ic.types)) return;
  const std::string dir = case_dir(ic.name);
  golden::Case io("peft/" + ic.name + "/io");
  const json info = case_info(io);
  const Tensor x = io.get("x");

  // ---- PEFT → C++: load PEFT's adapter(s), compare outputs
  std::vector<std::string> warnings;
  auto pm = PeftModel::from_pretrained(base_model(ic.name, info), dir, std::nullopt, "default", false, &warnings);
  CHECK(warnings.empty());
  for (const auto& w : warnings) UNSCOPED_INFO("load warning: " << w);
  if (ic.other) {
    pm->load_adapter(dir + "/other", "other", false, &warnings);
    CHECK(warnings.empty());
  }
  CHECK_FALSE(pm->is_training());
  {
    // Loaded for inference: frozen, except what PEFT leaves trainable (bias "all" / "lora_only").
    std::vector<std::string> trainable_names;
    for (auto& [n, p] : pm->named_parameters())
      if (p.requires_grad()) trainable_names.push_back(n);
    CHECK(trainable_names == info.at("loaded_trainable").get<std::vector<std::string>>());
  }
  CHECK(pm->active_adapters() == std::vector<std::string>{"default"});
  {
    NoGradGuard g;
    golden::expect_close(io, "out", pm->forward(x), kTol);
    {
      auto off = pm->disable_adapter();
      golden::expect_close(io, "base_out", pm->forward(x), kTol);
    }
    if (ic.other) {
      pm->set_adapter("other");
      golden::expect_close(io, "out_other", pm->forward(x), kTol);
      if (io.has("out_both")) {  // absent with modules_to_save (one active copy at a time)
        pm->set_adapter(std::vector<std::string>{"default", "other"});
        golden::expect_close(io, "out_both", pm->forward(x), kTol);
      }
      pm->set_adapter("default");
    }
    if (io.has("out_mixed")) {  // PEFT's mixed batch: row i runs {other, __base__, default}[i % 3]
      const std::vector<std::string> cycle = {"other", kBaseAdapterName, "default"};
      std::vector<std::string> names;
      for (int64_t i = 0; i < x.size(0); ++i) names.push_back(cycle[static_cast<size_t>(i % 3)]);
      golden::expect_close(io, "out_mixed", pm->forward(x, names), kTol);
      CHECK(pm->active_adapters() == std::vector<std::string>{"default"});  // unchanged by the batch
    }
  }

  // ---- C++ → PEFT: the files C++ writes for the same weights are PEFT's
  const std::string out = scratch_dir(ic.name);
  pm->save_pretrained(out);
  compare_adapter_files(out, dir, info.at("model").get<std::string>());
  if (ic.other) compare_adapter_files(out + "/other", dir + "/other", info.at("model").get<std::string>());
  if (const char* keep = std::getenv("PEFT_CPP_ADAPTER_OUT")) {
    fs::create_directories(fs::path(keep) / ic.name);
    fs::copy(out, fs::path(keep) / ic.name, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }
  // ... and load back into C++ with the same outputs
  auto again = PeftModel::from_pretrained(base_model(ic.name, info), out);
  {
    NoGradGuard g;
    golden::expect_close(io, "out", again->forward(x), kTol);
  }
  fs::remove_all(out);

  // ---- merge_and_unload gives PEFT's merged output (cases where PEFT merges)
  if (io.has("merged_out")) {
    nn::ModulePtr merged = pm->merge_and_unload();
    NoGradGuard g;
    golden::expect_close(io, "merged_out", merged->forward(x), kTol);
  }

  // ---- counts and targeted names of a trainable load equal get_peft_model's in PEFT
  auto trainable = PeftModel::from_pretrained(base_model(ic.name, info), dir, std::nullopt, "default", true);
  auto [n_trainable, n_all] = trainable->get_nb_trainable_parameters();
  CHECK(n_trainable == info.at("trainable").get<int64_t>());
  CHECK(n_all == info.at("all").get<int64_t>());
  CHECK(trainable->targeted_module_names() == info.at("targeted").get<std::vector<std::string>>());
}

}  // namespace

TEST_CASE("adapters written by PEFT load with PEFT's outputs, and C++ writes PEFT's files", "[interop]") {
  for (const auto& ic : interop_cases()) {
    DYNAMIC_SECTION(ic.name) { run_interop_case(ic); }
  }
}

TEST_CASE("every PEFT golden case folder is covered by the interop test", "[interop]") {
  std::set<std::string> covered = {"mlp_inject"};
  for (const auto& ic : interop_cases()) covered.insert(ic.name);
  for (const auto& e : fs::directory_iterator(std::string(PEFT_GOLDEN_DIR) + "/peft")) {
    INFO("golden folder " << e.path().filename().string());
    CHECK(covered.count(e.path().filename().string()));
  }
}

TEST_CASE("an adapter PEFT injected with inject_adapter_in_model (no key prefix) loads and saves", "[interop]") {
  const std::string dir = case_dir("mlp_inject");
  golden::Case io("peft/mlp_inject/io");
  const json info = case_info(io);
  nn::ModulePtr model = base_model("mlp_inject", info);
  std::vector<std::string> warnings;
  LoraConfig cfg = LoraConfig::from_pretrained(dir, &warnings);
  CHECK(warnings.empty());
  nn::ModulePtr adapted = inject_adapter_in_model(cfg, model);
  CHECK(adapted == model);
  NamedTensors state = io::load_file(dir + "/adapter_model.safetensors");
  for (const auto& kv : state) CHECK(kv.first.rfind("base_model.model.", 0) == std::string::npos);
  AdapterLoadResult r = set_peft_model_state_dict(*model, state, "default");
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  model->eval();
  {
    NoGradGuard g;
    golden::expect_close(io, "out", model->forward(io.get("x")), kTol);
  }
  // Saved without the prefix: exactly PEFT's keys and values.
  NamedTensors ours = get_peft_model_state_dict(*model, cfg, "default", "");
  std::map<std::string, Tensor> om(ours.begin(), ours.end()), pm(state.begin(), state.end());
  REQUIRE(om.size() == pm.size());
  for (auto& [k, t] : pm) {
    INFO("key " << k);
    REQUIRE(om.count(k));
    CHECK(om[k].to_vector<double>() == t.to_vector<double>());
  }
  // The same prefix-less file also loads into a PeftModel.
  auto peft_model = get_peft_model(base_model("mlp_inject", info), cfg);
  AdapterLoadResult r2 = set_peft_model_state_dict(*peft_model->model(), state, "default");
  CHECK(r2.missing_keys.empty());
  peft_model->eval();
  NoGradGuard g;
  golden::expect_close(io, "out", peft_model->forward(io.get("x")), kTol);
}

TEST_CASE("adapter_config.json written by PEFT parses to the config PEFT used", "[interop]") {
  std::vector<std::string> warnings;
  LoraConfig c = LoraConfig::from_pretrained(case_dir("mlp_patterns"), &warnings);
  CHECK(warnings.empty());  // every key PEFT 0.21.2 writes is known
  CHECK(c.r == 4);
  CHECK(c.lora_alpha == 8);
  CHECK(c.inference_mode);
  CHECK(c.init_lora_weights == LoraInit::Random);
  REQUIRE(c.rank_pattern.size() == 1);
  CHECK(c.rank_pattern[0] == std::pair<std::string, int64_t>{"lin1", 2});
  REQUIRE(c.alpha_pattern.size() == 1);
  CHECK(c.alpha_pattern[0] == std::pair<std::string, double>{"lin0", 16.0});
  CHECK(c.settings_for("lin0").scaling() == 4.0);  // 16 / 4
  CHECK(c.settings_for("lin1").scaling() == 4.0);  // 8 / 2

  LoraConfig regex = LoraConfig::from_pretrained(case_dir("mlp_regex"));
  CHECK(regex.target_modules.is_regex());
  CHECK(regex.target_modules.regex() == R"(lin\d)");
  LoraConfig rs = LoraConfig::from_pretrained(case_dir("mlp_rslora"));
  CHECK(rs.use_rslora);
  CHECK(rs.settings_for("lin0").scaling() == 8.0);  // 16 / sqrt(4)
  LoraConfig mts = LoraConfig::from_pretrained(case_dir("mlp_modules_to_save"));
  CHECK(mts.modules_to_save == std::vector<std::string>{"lin1"});
  CHECK(LoraConfig::from_pretrained(case_dir("mlp_bias_all")).bias == "all");
  CHECK(LoraConfig::from_pretrained(case_dir("mlp_dora")).use_dora);
  CHECK(LoraConfig::from_pretrained(case_dir("mlp_lora_bias")).lora_bias);
  CHECK(LoraConfig::from_pretrained(case_dir("mlp_dropout")).lora_dropout == 0.1);
}

TEST_CASE("alphas that are no int64 survive to_json as doubles", "[interop][config]") {
  // PEFT writes an int alpha as an int; we do so for integral values an int64 holds exactly.
  // 7.77e92 is integral but no int64: casting it was undefined behaviour (found by the fuzzer).
  LoraConfig c;
  c.lora_alpha = 7.77e92;
  c.alpha_pattern = {{"lin0", -7.77e92}, {"lin1", 16.0}, {"lin2", 0.5}, {"lin3", 9007199254740992.0}};
  const nlohmann::json j = c.to_json();
  CHECK(j["lora_alpha"].is_number_float());
  CHECK(j["lora_alpha"].get<double>() == 7.77e92);
  CHECK(j["alpha_pattern"]["lin0"].get<double>() == -7.77e92);
  CHECK(j["alpha_pattern"]["lin1"].is_number_integer());
  CHECK(j["alpha_pattern"]["lin2"].is_number_float());
  CHECK(j["alpha_pattern"]["lin3"].get<int64_t>() == 9007199254740992);
  LoraConfig back = LoraConfig::from_json(j);
  CHECK(back.lora_alpha == c.lora_alpha);
  CHECK(back.alpha_pattern == c.alpha_pattern);
}
