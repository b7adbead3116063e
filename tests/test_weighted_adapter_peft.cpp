// add_weighted_adapter against PEFT 0.21.2's own outputs (tests/golden/golden_peft_weighted.py):
// every combination type and option on Linear, Embedding and Conv2d layers, the new adapter's
// saved tensors and config. DARE's random masks are the ones torch drew inside PEFT, replayed
// through WeightedAdapterOptions::random_mask; the default source (our Generator) is checked for
// its statistics.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include <peft/peft.h>

using namespace peft;

namespace {

std::string data_dir() { return std::string(PEFT_GOLDEN_DIR) + "/peft_weighted"; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// golden_peft_weighted.py's model, same names and types.
nn::ModulePtr weighted_net() {
  auto m = std::make_shared<nn::ModuleDict>();
  m->insert("lin0", std::make_shared<nn::Linear>(10, 12));
  m->insert("emb", std::make_shared<nn::Embedding>(16, 8));
  m->insert("conv", std::make_shared<nn::Conv2d>(3, 4, 3));
  m->insert("lin1", std::make_shared<nn::Linear>(12, 5));
  return m;
}

std::shared_ptr<PeftModel> with_adapters() {
  const std::string dir = data_dir() + "/adapters/";
  auto pm = PeftModel::from_pretrained(weighted_net(), dir + "one", std::nullopt, "one");
  pm->load_adapter(dir + "two", "two");
  pm->load_adapter(dir + "three", "three");
  return pm;
}

WeightedAdapterOptions options_of(const nlohmann::json& j) {
  WeightedAdapterOptions o;
  o.combination_type = j.at("combination_type").get<std::string>();
  if (j.contains("density")) o.density = j["density"].get<double>();
  if (j.contains("majority_sign_method")) o.majority_sign_method = j["majority_sign_method"].get<std::string>();
  if (j.contains("svd_rank")) o.svd_rank = j["svd_rank"].get<int64_t>();
  if (j.contains("svd_clamp")) o.svd_clamp = j["svd_clamp"].get<double>();
  if (j.contains("svd_full_matrices")) o.svd_full_matrices = j["svd_full_matrices"].get<bool>();
  return o;
}

}  // namespace

TEST_CASE("add_weighted_adapter reproduces PEFT for every combination type", "[lora][weighted][golden]") {
  const nlohmann::json cases = read_json(data_dir() + "/cases.json").at("cases");
  REQUIRE(cases.size() == 17);
  for (const auto& [name, c] : cases.items()) {
    SECTION(name) {
      auto pm = with_adapters();
      const io::SafetensorsFile golden = io::SafetensorsFile::open(data_dir() + "/" + name + ".safetensors");
      WeightedAdapterOptions o = options_of(c.at("options"));
      // Replay PEFT's masks in order, each checked against the shape we ask for.
      size_t next_mask = 0;
      o.random_mask = [&](const std::vector<int64_t>& shape, double) {
        const std::string key = "mask." + std::to_string(next_mask++);
        REQUIRE(golden.find(key) != nullptr);
        Tensor m = io::load_tensor(golden, key);
        REQUIRE(m.shape() == shape);
        return m.to_vector<double>();
      };
      const std::string new_name = "w_" + name;
      pm->add_weighted_adapter(c.at("adapters").get<std::vector<std::string>>(),
                               c.at("weights").get<std::vector<double>>(), new_name, o);
      CHECK(next_mask == c.at("masks").get<size_t>());

      const LoraConfig& cfg = pm->peft_config().at(new_name);
      CHECK(cfg.r == c.at("r").get<int64_t>());
      CHECK(cfg.lora_alpha == c.at("lora_alpha").get<double>());
      CHECK(cfg.use_rslora == c.at("use_rslora").get<bool>());
      std::vector<std::string> targets = cfg.target_modules.names();
      std::sort(targets.begin(), targets.end());
      CHECK(targets == c.at("target_modules").get<std::vector<std::string>>());

      NamedTensors ours = get_peft_model_state_dict(*pm->model(), cfg, new_name, "base_model.model.");
      size_t expected_count = 0;
      for (const auto& e : golden.entries()) {
        if (e.name.rfind("out.", 0) != 0) continue;
        ++expected_count;
        const std::string key = e.name.substr(4);
        auto it = std::find_if(ours.begin(), ours.end(), [&](const auto& kv) { return kv.first == key; });
        INFO(name << ": " << key);
        REQUIRE(it != ours.end());
        Tensor want = io::load_tensor(golden, e.name);
        REQUIRE(it->second.shape() == want.shape());
        // PEFT computes in float32, we in double: a few ulps of |values| up to ~10.
        const double scale = std::max(1.0, max(abs(want)).item());
        CHECK(max(abs(sub(it->second, want))).item() <= 2e-5 * scale);
      }
      CHECK(ours.size() == expected_count);
    }
  }
}

TEST_CASE("DARE's default masks come from the Generator: seeded, density-distributed, rescaled",
          "[lora][weighted]") {
  auto run = [](uint64_t seed, const std::string& name) {
    auto pm = with_adapters();
    Generator g(seed);
    WeightedAdapterOptions o;
    o.combination_type = "dare_linear";
    o.density = 0.25;
    o.generator = &g;
    pm->add_weighted_adapter({"one", "two"}, {1.0, 1.0}, name, o);
    return pm->model()->get_submodule("lin0")->child("lora_A")->child(name)->param("weight").clone();
  };
  Tensor a = run(7, "d1"), b = run(7, "d2"), c = run(8, "d3");
  CHECK(max(abs(sub(a, b))).item() == 0);  // same seed, same masks
  CHECK(max(abs(sub(a, c))).item() > 0);

  // One adapter at weight 1 through dare_linear's A merge: kept values are A·√s / density.
  const merging::RandomMask mask = [](const std::vector<int64_t>& shape, double density) {
    static Generator g(11);
    return merging::generator_mask(g)(shape, density);
  };
  std::vector<double> ones(40000, 1.0);
  std::vector<double> out = merging::merge_tasks(merging::Method::DareLinear, {{ones, {40000}}}, {1.0}, 0.25,
                                                 merging::SignMethod::Total, mask);
  size_t kept = 0, other = 0;
  for (double v : out) {
    kept += v == 4.0;
    other += v != 0.0 && v != 4.0;
  }
  CHECK(other == 0);
  CHECK(std::abs(static_cast<double>(kept) / 40000.0 - 0.25) < 0.01);  // 4.6 sigma
}
