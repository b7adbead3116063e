// `peft combine` (samples/peft_cli/combine.cpp) on the PEFT-written adapters of
// golden_peft_weighted.py: the deterministic combination types write PEFT's own tensors and
// config; DARE is seeded; a combined adapter loads into a model and equals add_weighted_adapter
// there; bad input is refused with exit 1 or 2 and writes nothing.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include <unistd.h>

#include "cli_test_util.h"
#include "peft.h"

namespace fs = std::filesystem;
using namespace peft;
using namespace cli_test;

namespace {

std::string data_dir() { return std::string(PEFT_GOLDEN_DIR) + "/peft_weighted"; }
std::string adapter(const std::string& name) { return data_dir() + "/adapters/" + name; }

struct Scratch {
  fs::path path = fs::temp_directory_path() / ("peft_combine_test_" + std::to_string(getpid()));
  Scratch() { fs::create_directories(path); }
  ~Scratch() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// The CLI's arguments for a golden case.
std::vector<std::string> combine_args(const nlohmann::json& c, const std::string& out) {
  std::vector<std::string> args = {"combine"};
  std::string weights;
  for (const auto& a : c.at("adapters")) args.insert(args.end(), {"--adapter", adapter(a.get<std::string>())});
  for (const auto& w : c.at("weights")) {
    std::ostringstream ss;
    ss.precision(17);
    ss << w.get<double>();
    weights += (weights.empty() ? "" : ",") + ss.str();
  }
  const auto& o = c.at("options");
  args.insert(args.end(), {"--weights", weights, "--combination-type", o.at("combination_type").get<std::string>(),
                           "--out", out});
  if (o.contains("density")) args.insert(args.end(), {"--density", std::to_string(o["density"].get<double>())});
  if (o.contains("majority_sign_method"))
    args.insert(args.end(), {"--majority-sign-method", o["majority_sign_method"].get<std::string>()});
  if (o.contains("svd_rank")) args.insert(args.end(), {"--svd-rank", std::to_string(o["svd_rank"].get<int>())});
  if (o.contains("svd_clamp")) args.insert(args.end(), {"--svd-clamp", std::to_string(o["svd_clamp"].get<double>())});
  if (o.contains("svd_full_matrices") && !o["svd_full_matrices"].get<bool>()) args.push_back("--svd-reduced");
  return args;
}

}  // namespace

TEST_CASE("peft combine writes PEFT's add_weighted_adapter result for every deterministic type", "[cli][weighted]") {
  Scratch tmp;
  const nlohmann::json cases = read_json(data_dir() + "/cases.json").at("cases");
  int checked = 0;
  for (const auto& [name, c] : cases.items()) {
    if (c.at("masks").get<int>() > 0) continue;  // DARE: torch's random masks (test_weighted_adapter_peft)
    INFO(name);
    const std::string out = tmp / name;
    Result r = run_cli(combine_args(c, out));
    INFO(r.out);
    REQUIRE(r.code == 0);
    const io::SafetensorsFile golden = io::SafetensorsFile::open(data_dir() + "/" + name + ".safetensors");
    const NamedTensors ours = io::load_file(out + "/adapter_model.safetensors");
    size_t expected = 0;
    for (const auto& e : golden.entries()) {
      if (e.name.rfind("out.", 0) != 0) continue;
      ++expected;
      Tensor want = io::load_tensor(golden, e.name);
      const Tensor& got = io::find_tensor(ours, e.name.substr(4));
      REQUIRE(got.shape() == want.shape());
      CHECK(max(abs(sub(got, want))).item() <= 2e-5 * std::max(1.0, max(abs(want)).item()));
    }
    CHECK(ours.size() == expected);
    const nlohmann::json cfg = read_json(out + "/adapter_config.json");
    CHECK(cfg.at("r").get<int64_t>() == c.at("r").get<int64_t>());
    CHECK(cfg.at("lora_alpha").get<double>() == c.at("lora_alpha").get<double>());
    auto targets = cfg.at("target_modules").get<std::vector<std::string>>();
    std::sort(targets.begin(), targets.end());
    CHECK(targets == c.at("target_modules").get<std::vector<std::string>>());
    CHECK(cfg.at("rank_pattern").empty());
    ++checked;
  }
  CHECK(checked == 13);
}

TEST_CASE("peft combine's DARE is seeded, and its adapter loads into the model", "[cli][weighted]") {
  Scratch tmp;
  auto args = [&](const std::string& seed, const std::string& out) {
    return std::vector<std::string>{"combine", "--adapter", adapter("one"), "--adapter", adapter("two"), "--weights",
                                    "0.7,-1.3", "--combination-type", "dare_ties_svd", "--density", "0.5",
                                    "--seed", seed, "--out", out};
  };
  REQUIRE(run_cli(args("5", tmp / "s5a")).code == 0);
  REQUIRE(run_cli(args("5", tmp / "s5b")).code == 0);
  REQUIRE(run_cli(args("6", tmp / "s6")).code == 0);
  const NamedTensors a = io::load_file(tmp / "s5a/adapter_model.safetensors");
  const NamedTensors b = io::load_file(tmp / "s5b/adapter_model.safetensors");
  const NamedTensors c = io::load_file(tmp / "s6/adapter_model.safetensors");
  REQUIRE((a.size() == 8 && b.size() == 8 && c.size() == 8));
  double same_seed = 0, other_seed = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    same_seed = std::max(same_seed, max(abs(sub(a[i].second, b[i].second))).item());
    other_seed = std::max(other_seed, max(abs(sub(a[i].second, c[i].second))).item());
  }
  CHECK(same_seed == 0);
  CHECK(other_seed > 0);

  auto model = std::make_shared<nn::ModuleDict>();
  model->insert("lin0", std::make_shared<nn::Linear>(10, 12));
  model->insert("emb", std::make_shared<nn::Embedding>(16, 8));
  model->insert("conv", std::make_shared<nn::Conv2d>(3, 4, 3));
  model->insert("lin1", std::make_shared<nn::Linear>(12, 5));
  std::vector<std::string> warnings;
  auto pm = PeftModel::from_pretrained(model, tmp / "s5a", std::nullopt, "combined", false, &warnings);
  CHECK(warnings.empty());
  CHECK(pm->peft_config().at("combined").r == 4);
  auto lin0 = std::dynamic_pointer_cast<LoraLayer>(pm->model()->get_submodule("lin0"));
  REQUIRE(lin0 != nullptr);
  CHECK(lin0->scaling("combined") == 1.0);
}

TEST_CASE("peft combine refuses bad input and writes nothing", "[cli][weighted][errors]") {
  Scratch tmp;
  const std::string out = tmp / "out";
  auto refused = [&](std::vector<std::string> args, int code, const std::string& message) {
    args.insert(args.begin(), "combine");
    Result r = run_cli(args);
    INFO(r.out);
    CHECK(r.code == code);
    CHECK(contains(r.out, message));
    CHECK_FALSE(fs::exists(out));
  };
  const std::string one = adapter("one"), two = adapter("two"), three = adapter("three");
  refused({"--adapter", one, "--weights", "1", "--out", out}, 2, "combine needs --combination-type");
  refused({"--adapter", one, "--adapter", two, "--weights", "1", "--combination-type", "svd", "--out", out}, 2,
          "--weights has 1 value(s) for 2 adapter(s)");
  refused({"--adapter", one, "--adapter", two, "--weights", "1,x", "--combination-type", "svd", "--out", out}, 2,
          "--weights needs a number, got 'x'");
  refused({"--adapter", one, "--adapter", two, "--weights", "1,1", "--combination-type", "ties", "--out", out}, 2,
          "needs a density");
  refused({"--adapter", one, "--adapter", two, "--weights", "1,1", "--combination-type", "linear", "--density", "0.5",
           "--out", out},
          2, "density applies to ties");
  refused({"--adapter", one, "--adapter", two, "--weights", "1,1", "--combination-type", "svd", "--seed", "3", "--out",
           out},
          2, "--seed applies to the dare_* combination types only");
  refused({"--adapter", one, "--adapter", three, "--weights", "1,1", "--combination-type", "linear", "--out", out}, 1,
          "All adapters must have the same r value");
  refused({"--adapter", one, "--adapter", tmp / "nowhere", "--weights", "1,1", "--combination-type", "cat", "--out",
           out},
          1, "not a directory");
  // A DoRA adapter needs the base weights.
  fs::create_directories(tmp / "dora");
  fs::copy(one + "/adapter_model.safetensors", tmp / "dora/adapter_model.safetensors");
  nlohmann::json cfg = read_json(one + "/adapter_config.json");
  cfg["use_dora"] = true;
  std::ofstream(tmp / "dora/adapter_config.json") << cfg.dump();
  refused({"--adapter", one, "--adapter", tmp / "dora", "--weights", "1,1", "--combination-type", "cat", "--out", out},
          1, "DoRA adapters cannot be combined from files");
  // --out may not be an input.
  Result r = run_cli({"combine", "--adapter", one, "--adapter", two, "--weights", "1,1", "--combination-type", "cat",
                      "--out", two});
  CHECK(r.code == 1);
  CHECK(contains(r.out, "is an input adapter folder"));
}
