// The adapter-management API against PEFT 0.21.2 (tests/golden/golden_peft_api.py →
// data/peft_api/): get_layer_status / get_model_status JSON through set_requires_grad,
// disable / enable_adapter_layers, merging and hand-made mixed states ("irregular");
// merge_and_unload(adapter_names) and unload() with a modules_to_save module; hotswap_adapter
// (in place, a smaller rank zero-padded, a model padded by prepare_model_for_compiled_hotswap)
// and every refusal with PEFT's text and the model left as it was.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include <peft/peft.h>

using namespace peft;

namespace {

const std::string kDir = std::string(PEFT_GOLDEN_DIR) + "/peft_api/";

class TinyNet : public nn::Module {
 public:
  TinyNet() {
    register_module("lin0", std::make_shared<nn::Linear>(6, 8));
    register_module("lin1", std::make_shared<nn::Linear>(8, 8));
    register_module("head", std::make_shared<nn::Linear>(8, 3));
  }
  std::string type_name() const override { return "TinyNet"; }
  Tensor forward(const Tensor& x) override {
    return child("head")->forward(relu(child("lin1")->forward(relu(child("lin0")->forward(x)))));
  }
};

class ConvNet : public nn::Module {
 public:
  ConvNet() {
    nn::Conv2dConfig pad1;
    pad1.padding = {1, 1};
    nn::Conv2dConfig grouped;
    grouped.groups = 2;
    register_module("conv0", std::make_shared<nn::Conv2d>(4, 8, 3, pad1));
    register_module("conv1", std::make_shared<nn::Conv2d>(8, 8, 1, grouped));
  }
  std::string type_name() const override { return "ConvNet"; }
  Tensor forward(const Tensor& x) override { return child("conv1")->forward(relu(child("conv0")->forward(x))); }
};

const nlohmann::json& api() {
  static const nlohmann::json j = [] {
    std::ifstream f(kDir + "api.json");
    std::stringstream ss;
    ss << f.rdbuf();
    return nlohmann::json::parse(ss.str());
  }();
  return j;
}

const std::map<std::string, Tensor>& io_tensors() {
  static const std::map<std::string, Tensor> m = [] {
    NamedTensors t = io::load_file(kDir + "io.safetensors");
    return std::map<std::string, Tensor>(t.begin(), t.end());
  }();
  return m;
}
const Tensor& golden(const std::string& name) { return io_tensors().at(name); }

nn::ModulePtr base() {
  auto m = std::make_shared<TinyNet>();
  m->load_state_dict(io::load_file(kDir + "base_model.safetensors"));
  m->eval();
  return m;
}

std::shared_ptr<PeftModel> two_adapters() {
  auto pm = PeftModel::from_pretrained(base(), kDir + "one", std::nullopt, "one", /*is_trainable=*/true);
  pm->load_adapter(kDir + "two", "two", /*is_trainable=*/true);
  pm->eval();
  return pm;
}

nn::ModulePtr conv_base() {
  auto m = std::make_shared<ConvNet>();
  m->load_state_dict(io::load_file(kDir + "conv_base_model.safetensors"));
  m->eval();
  return m;
}

std::shared_ptr<PeftModel> hotswap_model(const std::string& dir, bool conv = false) {
  auto pm = PeftModel::from_pretrained(conv ? conv_base() : base(), kDir + dir);
  pm->eval();
  return pm;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return max(abs(sub(a, b))).item();
}

Tensor run(nn::Module& m, const char* input = "x") {
  NoGradGuard g;
  return m.forward(golden(input));
}

nlohmann::json layers_json(PeftModel& pm) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : pm.get_layer_status()) out.push_back(s.to_json());
  return out;
}

std::shared_ptr<LoraLayer> layer(PeftModel& pm, const std::string& name) {
  auto l = std::dynamic_pointer_cast<LoraLayer>(pm.model()->get_submodule(name));
  REQUIRE(l != nullptr);
  return l;
}

// Every tensor of the model, copied, to show a refused call changed nothing.
std::map<std::string, Tensor> snapshot(nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [k, t] : m.state_dict()) out[k] = t.clone().detach();
  return out;
}
// Errors read "<file>:<line>: <text>"; PEFT's text must be all that follows.
Catch::Matchers::StdString::EndsWithMatcher peft_text(const std::string& text) { return Catch::EndsWith(text); }

void check_unchanged(nn::Module& m, const std::map<std::string, Tensor>& before) {
  auto now = m.state_dict();
  REQUIRE(now.size() == before.size());
  for (const auto& [k, t] : now) CHECK(max_abs_diff(t, before.at(k)) == 0);
}

}  // namespace

TEST_CASE("layer and model status match PEFT's through requires_grad, enable / disable and merge", "[peft][api]") {
  auto pm = two_adapters();
  CHECK(max_abs_diff(run(*pm), golden("out_one")) < 1e-5);
  CHECK(layers_json(*pm) == api()["layers_loaded"]);
  CHECK(pm->get_model_status().to_json() == api()["model_loaded"]);

  pm->set_requires_grad({"two"}, true);
  CHECK(pm->get_model_status().to_json() == api()["model_grad_two"]);
  pm->set_requires_grad({"one"}, false);
  CHECK(pm->get_model_status().to_json() == api()["model_grad_not_one"]);
  pm->set_requires_grad({"one"}, true);
  pm->set_requires_grad({"two"}, false);

  pm->disable_adapter_layers();
  CHECK(pm->get_model_status().to_json() == api()["model_disabled"]);
  CHECK(max_abs_diff(run(*pm), golden("out_disabled")) < 1e-5);
  pm->enable_adapter_layers();
  CHECK(pm->get_model_status().to_json() == api()["model_enabled"]);

  pm->merge_adapter(false, {"one"});
  CHECK(layers_json(*pm) == api()["layers_merged_one"]);
  // The head wrapper never merges, so "one" is merged on some layers only: irregular, as PEFT.
  CHECK(pm->get_model_status().to_json() == api()["model_merged_one"]);
  pm->unmerge_adapter();

  // Per-layer changes no model-level call makes, as the golden makes them (flags only).
  auto lin0 = layer(*pm, "lin0"), lin1 = layer(*pm, "lin1");
  lin0->child("lora_A")->child("one")->param("weight").set_requires_grad(false);
  lin1->enable_adapters(false);
  std::vector<std::pair<Tensor, bool>> flags;
  for (auto& kv : lin1->named_parameters()) flags.emplace_back(kv.second, kv.second.requires_grad());
  lin1->set_adapter({"two"});
  for (auto& [t, rg] : flags) t.set_requires_grad(rg);
  const TunerModelStatus irregular = pm->get_model_status();
  CHECK(irregular.to_json() == api()["model_irregular"]);
  CHECK(irregular.enabled == Uniform::Irregular);
  CHECK_FALSE(irregular.active_adapters.has_value());
}

TEST_CASE("status of a model without adapter layers is PEFT's error", "[peft][api]") {
  auto plain = base();
  CHECK_THROWS_WITH(get_layer_status(*plain), peft_text(api()["errors"]["status_no_adapter"].get<std::string>()));
  CHECK_THROWS_WITH(get_model_status(*plain), peft_text(api()["errors"]["status_no_adapter"].get<std::string>()));
}

TEST_CASE("a model adapted in place reports base type \"other\" and no adapter model", "[peft][api]") {
  LoraConfig c;
  c.target_modules = {"lin0"};
  auto m = inject_adapter_in_model(c, base(), "x1");
  const TunerModelStatus s = get_model_status(*m);
  CHECK(s.base_model_type == "other");
  CHECK(s.adapter_model_type == "None");
  CHECK(s.peft_types.empty());
  CHECK(s.num_adapter_layers == 1);
  CHECK(get_layer_status(*m).front().name == "lin0");
}

TEST_CASE("merge_and_unload with adapter_names merges those adapters and keeps the active copy", "[peft][api]") {
  auto pm = two_adapters();
  pm->set_adapter("two");
  nn::ModulePtr merged = pm->merge_and_unload(false, {"one"});
  CHECK(max_abs_diff(run(*merged), golden("out_merged_one")) < 1e-5);
  std::vector<std::string> keys;
  for (const auto& [k, t] : merged->state_dict()) {
    keys.push_back(k);
    CHECK(max_abs_diff(t, golden("merged_one." + k)) < 1e-6);
  }
  CHECK(nlohmann::json(keys) == api()["merged_one_keys"]);
}

TEST_CASE("unload keeps the active adapter's modules_to_save copy, as PEFT", "[peft][api]") {
  auto pm = two_adapters();
  pm->set_adapter("one");
  nn::ModulePtr plain = pm->unload();
  CHECK(max_abs_diff(run(*plain), golden("out_unload")) < 1e-5);
  std::vector<std::string> keys;
  for (const auto& [k, t] : plain->state_dict()) {
    keys.push_back(k);
    CHECK(max_abs_diff(t, golden("unload." + k)) < 1e-6);
  }
  CHECK(nlohmann::json(keys) == api()["unload_keys"]);
  CHECK(plain->get_submodule("head")->type_name() == api()["unload_head_type"].get<std::string>());
}

TEST_CASE("unknown adapter names are refused and the model is unchanged", "[peft][api][errors]") {
  auto pm = two_adapters();
  const auto before = snapshot(*pm);
  const Tensor out = run(*pm);
  CHECK_THROWS_WITH(pm->merge_and_unload(false, {"one", "nope"}), peft_text("Adapter nope not found."));
  CHECK_THROWS_WITH(pm->set_requires_grad({"nope"}), peft_text("Adapter nope not found."));
  CHECK(pm->get_model_status().to_json() == api()["model_loaded"]);
  check_unchanged(*pm, before);
  CHECK(layer(*pm, "lin0")->merged_adapters().empty());
  CHECK(max_abs_diff(run(*pm), out) == 0);
}

TEST_CASE("hotswap replaces the weights in place and takes the new scaling", "[peft][api][hotswap]") {
  auto hs1 = hotswap_model("hs1");
  CHECK(max_abs_diff(run(*hs1), golden("out_hs1")) < 1e-5);

  auto pm = hotswap_model("hs0");
  CHECK(max_abs_diff(run(*pm), golden("out_hs0")) < 1e-5);
  Tensor a = layer(*pm, "lin0")->child("lora_A")->child("default")->param("weight");
  const float* ptr = a.data_ptr<float>();
  hotswap_adapter(*pm, kDir + "hs1", "default");
  CHECK(max_abs_diff(run(*pm), golden("out_hs0_to_hs1")) < 1e-5);
  Tensor a_after = layer(*pm, "lin0")->child("lora_A")->child("default")->param("weight");
  CHECK(a_after.data_ptr<float>() == ptr);  // PEFT: the same tensor object
  CHECK(api()["hotswap_same_tensor"].get<bool>());
  CHECK(layer(*pm, "lin0")->scaling("default") == Approx(api()["hotswap_scaling"].get<double>()));
  CHECK(nlohmann::json(a_after.shape()) == api()["hotswap_shape_A"]);
  // The rows past the new rank are zero.
  CHECK(max(abs(a_after.slice(0, 2, 4))).item() == 0);
}

TEST_CASE("a model padded to a target rank swaps in a smaller rank in place", "[peft][api][hotswap]") {
  auto pm = hotswap_model("hs0");
  prepare_model_for_compiled_hotswap(*pm, 8);
  CHECK(max_abs_diff(run(*pm), golden("out_hs0_padded")) < 1e-5);
  auto lin0 = layer(*pm, "lin0");
  Tensor a = lin0->child("lora_A")->child("default")->param("weight");
  Tensor b = lin0->child("lora_B")->child("default")->param("weight");
  CHECK(nlohmann::json(a.shape()) == api()["padded_shape_A"]);
  CHECK(nlohmann::json(b.shape()) == api()["padded_shape_B"]);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  hotswap_adapter(*pm, kDir + "hs1", "default");
  CHECK(max_abs_diff(run(*pm), golden("out_padded_to_hs1")) < 1e-5);
  CHECK(lin0->child("lora_A")->child("default")->param("weight").data_ptr<float>() == pa);
  CHECK(lin0->child("lora_B")->child("default")->param("weight").data_ptr<float>() == pb);
  CHECK(nlohmann::json(lin0->child("lora_A")->child("default")->param("weight").shape()) ==
        api()["padded_swap_shape_A"]);
  // Swapping back to the rank-4 adapter fits the padded tensors as well.
  hotswap_adapter(*pm, kDir + "hs0", "default");
  CHECK(max_abs_diff(run(*pm), golden("out_hs0")) < 1e-5);
}

TEST_CASE("Conv2d adapters, a grouped one included, pad and swap as PEFT's", "[peft][api][hotswap]") {
  CHECK(max_abs_diff(run(*hotswap_model("hsc1", true), "xc"), golden("out_c1")) < 1e-5);
  auto pm = hotswap_model("hsc0", true);
  CHECK(max_abs_diff(run(*pm, "xc"), golden("out_c0")) < 1e-5);
  hotswap_adapter(*pm, kDir + "hsc1", "default");  // rank 4 → 2 in place, A per group block
  CHECK(max_abs_diff(run(*pm, "xc"), golden("out_c0_to_c1")) < 1e-5);

  pm = hotswap_model("hsc0", true);
  prepare_model_for_compiled_hotswap(*pm, 8);
  CHECK(max_abs_diff(run(*pm, "xc"), golden("out_c0_padded")) < 1e-5);
  auto conv1 = layer(*pm, "conv1");
  CHECK(nlohmann::json(conv1->child("lora_A")->child("default")->param("weight").shape()) ==
        api()["conv_padded_shape_A"]);
  CHECK(nlohmann::json(conv1->child("lora_B")->child("default")->param("weight").shape()) ==
        api()["conv_padded_shape_B"]);
  const float* pa = conv1->child("lora_A")->child("default")->param("weight").data_ptr<float>();
  hotswap_adapter(*pm, kDir + "hsc1", "default");
  CHECK(max_abs_diff(run(*pm, "xc"), golden("out_c_padded_to_c1")) < 1e-5);
  CHECK(conv1->child("lora_A")->child("default")->param("weight").data_ptr<float>() == pa);

  auto other = hotswap_model("hsc0", true);
  const auto before = snapshot(*other);
  CHECK_THROWS_WITH(prepare_model_for_compiled_hotswap(*other, 7),
                    peft_text(api()["errors"]["pad_groups"].get<std::string>()));
  check_unchanged(*other, before);
}

TEST_CASE("hotswap refusals give PEFT's text and leave the model unchanged", "[peft][api][hotswap][errors]") {
  const auto& err = api()["errors"];
  SECTION("padding to a smaller target rank") {
    auto pm = hotswap_model("hs0");
    const auto before = snapshot(*pm);
    CHECK_THROWS_WITH(prepare_model_for_compiled_hotswap(*pm, 2),
                      peft_text(err["pad_smaller_target"].get<std::string>()));
    check_unchanged(*pm, before);
  }
  SECTION("keys the model does not have") {
    auto pm = hotswap_model("hs0");
    const auto before = snapshot(*pm);
    CHECK_THROWS_WITH(hotswap_adapter(*pm, kDir + "hs_extra", "default"),
                      peft_text(err["unexpected_keys"].get<std::string>()));
    check_unchanged(*pm, before);
  }
  SECTION("an incompatible config") {
    auto pm = hotswap_model("hs0");
    const auto before = snapshot(*pm);
    CHECK_THROWS_WITH(hotswap_adapter(*pm, kDir + "hs_dropout", "default"),
                      peft_text(err["config_dropout"].get<std::string>()));
    check_unchanged(*pm, before);
  }
  SECTION("a merged adapter") {
    auto pm = hotswap_model("hs0");
    pm->merge_adapter();
    const auto before = snapshot(*pm);
    CHECK_THROWS_WITH(hotswap_adapter(*pm, kDir + "hs1", "default"), peft_text(err["merged"].get<std::string>()));
    check_unchanged(*pm, before);
  }
  SECTION("a larger rank than the loaded tensors") {
    // PEFT would swap the tensor objects (not in place); refused here.
    auto pm = hotswap_model("hs1");
    const auto before = snapshot(*pm);
    CHECK_THROWS_WITH(hotswap_adapter(*pm, kDir + "hs0", "default"),
                      Catch::Contains(": Incompatible shapes found for LoRA weights "
                                      "base_model.model.lin0.lora_A.default.weight: torch.Size([2, 6]) vs "
                                      "torch.Size([4, 6])."));
    check_unchanged(*pm, before);
  }
  SECTION("a wrong shape outside the rank dimension, a base weight, an unknown adapter") {
    auto pm = hotswap_model("hs0");
    const auto before = snapshot(*pm);
    LoraConfig cfg = pm->peft_config().at("default");
    NamedTensors bad_shape = {{"base_model.model.lin0.lora_A.default.weight", Tensor::zeros({4, 5})}};
    CHECK_THROWS_WITH(hotswap_adapter_from_state_dict(*pm, bad_shape, "default", cfg),
                      Catch::Contains(": Incompatible shapes found for LoRA weights"));
    NamedTensors base_key = {{"base_model.model.lin0.base_layer.weight", Tensor::zeros({8, 6})}};
    CHECK_THROWS_WITH(hotswap_adapter_from_state_dict(*pm, base_key, "default", cfg),
                      Catch::Contains("is not a LoRA tensor of adapter 'default'"));
    CHECK_THROWS_WITH(hotswap_adapter(*pm, kDir + "hs1", "nope"),
                      peft_text("hotswap: the model has no adapter named 'nope'"));
    check_unchanged(*pm, before);
  }
}
