// The `peft` command-line tool (samples/peft_cli): each command on good and bad files, checked
// through its exit code and output. The binary is found next to this test's build directory
// (<build>/tests/test_peft_cli → <build>/samples/peft). Merged weights are checked against
// PeftModel::merge_and_unload on the same base model and PEFT-written adapter.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include <sys/wait.h>
#include <unistd.h>

#include "peft.h"
#include "cli_test_util.h"

namespace fs = std::filesystem;
using namespace peft;
using namespace cli_test;

namespace {

std::string case_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/peft/" + name; }

fs::path scratch() {
  fs::path d = fs::temp_directory_path() / ("peft_cli_test_" + std::to_string(getpid()));
  fs::create_directories(d);
  return d;
}

// ---- the golden models (the classes of golden_peft.py, as in test_peft_interop.cpp)
class Chain : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Chain)
  explicit Chain(std::vector<std::pair<std::string, nn::ModulePtr>> children) {
    for (auto& [n, m] : children) register_module(n, m);
  }
  std::string type_name() const override { return "Chain"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& [n, m] : named_children()) h = m->forward(h);
    return h;
  }
};

template <class M, class... A>
nn::ModulePtr mk(A&&... a) {
  return std::make_shared<M>(std::forward<A>(a)...);
}

// Only the parameterised layers matter for merging (no forward is run).
nn::ModulePtr make_model(const std::string& case_name) {
  using Children = std::vector<std::pair<std::string, nn::ModulePtr>>;
  if (case_name.rfind("mlp", 0) == 0)
    return mk<Chain>(Children{{"lin0", mk<nn::Linear>(10, 20)}, {"lin1", mk<nn::Linear>(20, 2)}});
  if (case_name == "emb") return mk<Chain>(Children{{"emb", mk<nn::Embedding>(100, 5)}, {"lin0", mk<nn::Linear>(50, 2)}});
  if (case_name == "conv2d" || case_name == "conv2d_dora")
    return mk<Chain>(Children{{"conv2d", mk<nn::Conv2d>(5, 10, 3)}, {"lin0", mk<nn::Linear>(10, 2)}});
  if (case_name == "conv2d_1x1")
    return mk<Chain>(Children{{"conv2d", mk<nn::Conv2d>(1, 10, 1)}, {"lin0", mk<nn::Linear>(90, 2)}});
  FAIL("no model for case " << case_name);
  return nullptr;
}

// merge_and_unload's state dict for a case, with adapter `active` ("default", or "other" read
// from the case's other/ folder) active.
NamedTensors reference_merge(const std::string& case_name, const std::string& active = "default") {
  nn::ModulePtr m = make_model(case_name);
  m->load_state_dict(io::load_file(case_dir(case_name) + "/base_model.safetensors"));
  auto pm = PeftModel::from_pretrained(m, case_dir(case_name));
  if (active != "default") {
    pm->load_adapter(case_dir(case_name) + "/" + active, active);
    pm->set_adapter(active);
  }
  return pm->merge_and_unload()->state_dict();
}

}  // namespace

TEST_CASE("peft with no command, an unknown command or an unknown option is a usage error (exit 2)", "[cli]") {
  Result none = run_cli({});
  CHECK(none.code == 2);
  CHECK(contains(none.out, "usage: peft"));
  CHECK(run_cli({"frobnicate"}).code == 2);
  CHECK(run_cli({"inspect"}).code == 2);
  CHECK(run_cli({"inspect", case_dir("mlp_list") + "/base_model.safetensors", "--bogus"}).code == 2);
  CHECK(run_cli({"validate", "a", "b"}).code == 2);
  CHECK(run_cli({"merge", "--base", "x"}).code == 2);
  CHECK(run_cli({"merge", "--base"}).code == 2);
  CHECK(run_cli({"diff", "a"}).code == 2);
  Result atol = run_cli({"diff", "a", "b", "--atol", "abc"});
  CHECK(atol.code == 2);
  CHECK(contains(atol.out, "--atol"));
}

TEST_CASE("every peft command answers --help with exit 0", "[cli]") {
  Result top = run_cli({"--help"});
  CHECK(top.code == 0);
  CHECK(contains(top.out, "inspect"));
  CHECK(contains(top.out, "merge"));
  for (const char* cmd : {"inspect", "validate", "merge", "diff"}) {
    Result r = run_cli({cmd, "--help"});
    CHECK(r.code == 0);
    CHECK(contains(r.out, std::string("usage: peft ") + cmd));
  }
  CHECK(run_cli({"merge", "--base", "--help"}).code == 0);
}

TEST_CASE("peft inspect lists every tensor and the metadata, as text and JSON", "[cli]") {
  const std::string f = case_dir("emb") + "/adapter_model.safetensors";
  Result text = run_cli({"inspect", f});
  REQUIRE(text.code == 0);
  CHECK(contains(text.out, "base_model.model.emb.lora_embedding_A  F32  [8, 100]  3200 bytes"));
  CHECK(contains(text.out, "format: pt"));
  Result js = run_cli({"inspect", f, "--json"});
  REQUIRE(js.code == 0);
  auto j = nlohmann::json::parse(js.out);
  CHECK(j["metadata"]["format"] == "pt");
  REQUIRE(j["tensors"].size() == 4);
  CHECK(j["tensors"][0]["name"] == "base_model.model.emb.lora_embedding_A");
  CHECK(j["tensors"][0]["shape"] == nlohmann::json::array({8, 100}));
  CHECK(j["tensors"][0]["bytes"] == 3200);
  Result missing = run_cli({"inspect", "/nonexistent/x.safetensors"});
  CHECK(missing.code == 1);
}

TEST_CASE("peft validate accepts good files and gives the bracketed reason for bad ones", "[cli]") {
  fs::path d = scratch();
  const std::string good = case_dir("mlp_list") + "/base_model.safetensors";
  Result ok = run_cli({"validate", good});
  CHECK(ok.code == 0);
  CHECK(contains(ok.out, "OK"));

  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream o(d / name, std::ios::binary);
    o << content;
    return (d / name).string();
  };
  struct Bad {
    std::string name, content, reason;
  };
  for (const Bad& b : {Bad{"short.st", bytes.substr(0, 5), "[HeaderTooSmall]"},
                       Bad{"header.st", bytes.substr(0, 40), "[InvalidHeaderLength]"},
                       Bad{"data.st", bytes.substr(0, bytes.size() - 4), "[MetadataIncompleteBuffer]"},
                       Bad{"trailing.st", bytes + "xxxx", "[MetadataIncompleteBuffer]"}}) {
    Result r = run_cli({"validate", write(b.name, b.content)});
    INFO(b.name << ": " << r.out);
    CHECK(r.code == 1);
    CHECK(contains(r.out, b.reason));
  }
  CHECK(run_cli({"validate", (d / "absent.st").string()}).code == 1);
  fs::remove_all(d);
}

TEST_CASE("peft diff reports keys, shapes and max abs differences, exit 1 beyond atol", "[cli]") {
  fs::path d = scratch();
  const std::string a = case_dir("mlp_list") + "/base_model.safetensors";
  Result same = run_cli({"diff", a, a});
  CHECK(same.code == 0);
  CHECK(contains(same.out, "files match"));

  NamedTensors t = io::load_file(a);
  for (auto& [n, v] : t)
    if (n == "lin0.bias") v = v.clone().add_(Tensor::full(v.shape(), 0.25));
  io::save_file(t, (d / "shifted.st").string());
  Result diff = run_cli({"diff", a, (d / "shifted.st").string()});
  CHECK(diff.code == 1);
  CHECK(contains(diff.out, "DIFF lin0.bias  max_abs_diff 0.25"));
  CHECK(run_cli({"diff", a, (d / "shifted.st").string(), "--atol", "0.3"}).code == 0);

  NamedTensors other{{"lin0.weight", Tensor::zeros({3, 3})}, {"extra", Tensor::zeros({1})}};
  io::save_file(other, (d / "other.st").string());
  Result keys = run_cli({"diff", a, (d / "other.st").string(), "--atol", "100"});
  CHECK(keys.code == 1);
  CHECK(contains(keys.out, "only in A: lin1.weight"));
  CHECK(contains(keys.out, "only in B: extra"));
  CHECK(contains(keys.out, "shape differs: lin0.weight"));
  CHECK(run_cli({"diff", a, (d / "missing.st").string()}).code == 1);
  fs::remove_all(d);
}

TEST_CASE("peft merge gives merge_and_unload's weights for PEFT-written adapters", "[cli]") {
  fs::path d = scratch();
  for (const char* c : {"mlp_list", "mlp_patterns", "mlp_rslora", "mlp_regex", "mlp_dora", "mlp_lora_bias",
                        "mlp_modules_to_save", "mlp_bias_all", "mlp_bias_lora_only", "mlp_inject", "emb", "conv2d",
                        "conv2d_1x1", "conv2d_dora"}) {
    INFO("case " << c);
    const std::string out = (d / (std::string(c) + ".safetensors")).string();
    Result r = run_cli({"merge", "--base", case_dir(c) + "/base_model.safetensors", "--adapter", case_dir(c), "--out", out});
    INFO(r.out);
    REQUIRE(r.code == 0);
    io::SafetensorsFile f = io::SafetensorsFile::open(out);
    CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
    NamedTensors got = io::load_file(out);
    if (std::string(c) == "mlp_inject") continue;  // no PeftModel prefix: checked by recomputation below
    NamedTensors want = reference_merge(c);
    for (const auto& [name, w] : want) {
      INFO(name);
      const Tensor& g = io::find_tensor(got, name);
      REQUIRE(g.shape() == w.shape());
      std::vector<double> gv = g.to_vector<double>(), wv = w.to_vector<double>();
      for (size_t i = 0; i < gv.size(); ++i) REQUIRE(gv[i] == Approx(wv[i]).margin(1e-5).epsilon(1e-5));
    }
    CHECK(got.size() == io::load_file(case_dir(c) + "/base_model.safetensors").size());
  }

  // inject_adapter_in_model's file (keys without "base_model.model."): W + s·B·A, lin1 replaced.
  {
    NamedTensors got = io::load_file((d / "mlp_inject.safetensors").string());
    NamedTensors base = io::load_file(case_dir("mlp_inject") + "/base_model.safetensors");
    NamedTensors ad = io::load_file(case_dir("mlp_inject") + "/adapter_model.safetensors");
    const double s = LoraConfig::from_pretrained(case_dir("mlp_inject")).settings_for("lin0").scaling();
    Tensor want0 = io::find_tensor(base, "lin0.weight") +
                   matmul(io::find_tensor(ad, "lin0.lora_B.weight"), io::find_tensor(ad, "lin0.lora_A.weight")) * s;
    std::vector<double> gv = io::find_tensor(got, "lin0.weight").to_vector<double>(), wv = want0.to_vector<double>();
    for (size_t i = 0; i < gv.size(); ++i) REQUIRE(gv[i] == Approx(wv[i]).margin(1e-6));
    CHECK(io::find_tensor(got, "lin1.weight").to_vector<float>() == io::find_tensor(ad, "lin1.weight").to_vector<float>());
    CHECK(io::find_tensor(got, "lin0.bias").to_vector<float>() == io::find_tensor(base, "lin0.bias").to_vector<float>());
  }

  // The second adapter of a save_pretrained directory, by name.
  const std::string out = (d / "other.safetensors").string();
  Result r = run_cli({"merge", "--base", case_dir("mlp_two_adapters") + "/base_model.safetensors", "--adapter",
                      case_dir("mlp_two_adapters"), "--adapter-name", "other", "--out", out});
  REQUIRE(r.code == 0);
  NamedTensors want = reference_merge("mlp_two_adapters", "other");
  NamedTensors got = io::load_file(out);
  for (const auto& [name, w] : want) {
    std::vector<double> gv = io::find_tensor(got, name).to_vector<double>(), wv = w.to_vector<double>();
    for (size_t i = 0; i < gv.size(); ++i) REQUIRE(gv[i] == Approx(wv[i]).margin(1e-5).epsilon(1e-5));
  }
  fs::remove_all(d);
}

TEST_CASE("peft merge refuses what it cannot merge, with a clear message and exit 1", "[cli]") {
  fs::path d = scratch();
  const std::string base = case_dir("mlp_list") + "/base_model.safetensors";
  const std::string out = (d / "merged.safetensors").string();

  Result groups = run_cli({"merge", "--base", case_dir("conv2d_groups") + "/base_model.safetensors", "--adapter",
                           case_dir("conv2d_groups"), "--out", out});
  CHECK(groups.code == 1);
  CHECK(contains(groups.out, "groups > 1"));

  Result no_dir = run_cli({"merge", "--base", base, "--adapter", (d / "nope").string(), "--out", out});
  CHECK(no_dir.code == 1);
  CHECK(contains(no_dir.out, "does not exist"));

  // A target missing from the base: the conv2d adapter on the MLP's weights.
  Result missing = run_cli({"merge", "--base", base, "--adapter", case_dir("conv2d"), "--out", out});
  CHECK(missing.code == 1);
  CHECK(contains(missing.out, "conv2d.weight"));
  CHECK(contains(missing.out, "missing from the base"));

  // Shape mismatch: the MLP adapter on a base whose lin0 has other sizes.
  io::save_file({{"lin0.weight", Tensor::zeros({7, 10})}, {"lin0.bias", Tensor::zeros({7})},
                 {"lin1.weight", Tensor::zeros({2, 20})}, {"lin1.bias", Tensor::zeros({2})}},
                (d / "small.safetensors").string());
  Result shape = run_cli({"merge", "--base", (d / "small.safetensors").string(), "--adapter", case_dir("mlp_list"), "--out", out});
  CHECK(shape.code == 1);
  CHECK(contains(shape.out, "shape mismatch"));

  // lora_bias with a base that has no bias.
  io::save_file({{"lin0.weight", Tensor::zeros({20, 10})}, {"lin1.weight", Tensor::zeros({2, 20})}},
                (d / "nobias.safetensors").string());
  Result nobias = run_cli({"merge", "--base", (d / "nobias.safetensors").string(), "--adapter", case_dir("mlp_lora_bias"),
                           "--out", out});
  CHECK(nobias.code == 1);
  CHECK(contains(nobias.out, "no 'lin0.bias'"));
  CHECK_FALSE(fs::exists(out));

  // --out equal to an input is refused and the input is left as it was.
  fs::copy_file(base, d / "base.safetensors");
  const auto before = fs::file_size(d / "base.safetensors");
  Result self = run_cli({"merge", "--base", (d / "base.safetensors").string(), "--adapter", case_dir("mlp_list"), "--out",
                         (d / "." / "base.safetensors").string()});
  CHECK(self.code == 1);
  CHECK(contains(self.out, "input"));
  CHECK(fs::file_size(d / "base.safetensors") == before);
  CHECK(run_cli({"diff", base, (d / "base.safetensors").string()}).code == 0);

  // A truncated base is reported as such.
  std::ifstream in(base, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream((d / "trunc.safetensors").string(), std::ios::binary) << bytes.substr(0, bytes.size() - 8);
  Result trunc = run_cli({"merge", "--base", (d / "trunc.safetensors").string(), "--adapter", case_dir("mlp_list"),
                          "--out", out});
  CHECK(trunc.code == 1);
  CHECK(contains(trunc.out, "[MetadataIncompleteBuffer]"));

  // An adapter with a PEFT option that changes the math and is not implemented (layer replication).
  fs::create_directories(d / "replicated");
  fs::copy_file(case_dir("mlp_list") + "/adapter_model.safetensors", d / "replicated" / "adapter_model.safetensors");
  std::ifstream cfg_in(case_dir("mlp_list") + "/adapter_config.json");
  nlohmann::json cfg = nlohmann::json::parse(cfg_in);
  cfg["layer_replication"] = {{0, 1}};
  std::ofstream((d / "replicated" / "adapter_config.json").string()) << cfg.dump(2);
  Result repl = run_cli({"merge", "--base", base, "--adapter", (d / "replicated").string(), "--out", out});
  CHECK(repl.code == 1);
  CHECK(contains(repl.out, "'layer_replication'"));
  CHECK_FALSE(fs::exists(out));
  fs::remove_all(d);
}

TEST_CASE("peft merge handles fan_in_fan_out and DoRA on an Embedding like PEFT", "[cli]") {
  fs::path d = scratch();
  Generator gen(7);
  // A Conv1D-style weight (in=6, out=4) with fan_in_fan_out, and an Embedding (10, 3) with DoRA.
  Tensor W = Tensor::randn({6, 4}, DType::F32, &gen), A = Tensor::randn({2, 6}, DType::F32, &gen),
         B = Tensor::randn({4, 2}, DType::F32, &gen);
  Tensor E = Tensor::randn({10, 3}, DType::F32, &gen), EA = Tensor::randn({2, 10}, DType::F32, &gen),
         EB = Tensor::randn({3, 2}, DType::F32, &gen), m = Tensor::rand({3}, DType::F32, &gen, 0.5, 1.5);
  io::save_file({{"proj.weight", W}, {"emb.weight", E}}, (d / "base.safetensors").string());

  LoraConfig cfg;
  cfg.r = 2;
  cfg.lora_alpha = 3;
  cfg.fan_in_fan_out = true;
  cfg.target_modules = std::vector<std::string>{"proj"};
  fs::create_directories(d / "fifo");
  cfg.save((d / "fifo").string());
  io::save_file({{"base_model.model.proj.lora_A.weight", A}, {"base_model.model.proj.lora_B.weight", B}},
                (d / "fifo" / "adapter_model.safetensors").string(), {{"format", "pt"}});
  Result r = run_cli({"merge", "--base", (d / "base.safetensors").string(), "--adapter", (d / "fifo").string(), "--out",
                      (d / "fifo.safetensors").string()});
  INFO(r.out);
  REQUIRE(r.code == 0);
  Tensor want = W + matmul(B, A).t() * 1.5;
  std::vector<double> gv = io::find_tensor(io::load_file((d / "fifo.safetensors").string()), "proj.weight").to_vector<double>(),
                      wv = want.to_vector<double>();
  for (size_t i = 0; i < gv.size(); ++i) REQUIRE(gv[i] == Approx(wv[i]).margin(1e-5));

  LoraConfig dora;
  dora.r = 2;
  dora.lora_alpha = 4;
  dora.use_dora = true;
  dora.target_modules = std::vector<std::string>{"emb"};
  fs::create_directories(d / "dora");
  dora.save((d / "dora").string());
  io::save_file({{"base_model.model.emb.lora_embedding_A", EA}, {"base_model.model.emb.lora_embedding_B", EB},
                 {"base_model.model.emb.lora_magnitude_vector", m}},
                (d / "dora" / "adapter_model.safetensors").string(), {{"format", "pt"}});
  r = run_cli({"merge", "--base", (d / "base.safetensors").string(), "--adapter", (d / "dora").string(), "--out",
               (d / "dora.safetensors").string()});
  INFO(r.out);
  REQUIRE(r.code == 0);
  // PEFT_FACTS.md: W' = (m / ||Wᵀ + s·B·A|| per row of Wᵀ) viewed (1, -1) times (W + Δ), Δ = s·(B·A)ᵀ.
  std::vector<double> w = (E + matmul(EB, EA).t() * 2.0).to_vector<double>(), mv = m.to_vector<double>();
  std::vector<double> got = io::find_tensor(io::load_file((d / "dora.safetensors").string()), "emb.weight").to_vector<double>();
  for (int64_t c = 0; c < 3; ++c) {
    double n2 = 0;
    for (int64_t row = 0; row < 10; ++row) n2 += w[static_cast<size_t>(row * 3 + c)] * w[static_cast<size_t>(row * 3 + c)];
    for (int64_t row = 0; row < 10; ++row) {
      const size_t i = static_cast<size_t>(row * 3 + c);
      REQUIRE(got[i] == Approx(mv[static_cast<size_t>(c)] / std::sqrt(n2) * w[i]).margin(1e-5));
    }
  }
  fs::remove_all(d);
}
