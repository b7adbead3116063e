// LoRA on transformers' Conv1D (GPT-2's projections; adapters/lora_conv1d.h) against PEFT 0.21.2
// (tests/golden/golden_peft_conv1d_mha.py): PEFT's adapter files loaded with
// PeftModel::from_pretrained onto a tiny GPT-2-like block give PEFT's outputs with the adapter on,
// off and merged, PEFT's merged (in, out) weights and PEFT's LoRA gradients; get_peft_model flips
// fan_in_fan_out per layer with PEFT's warnings and saves PEFT's value; PiSSA works on Wᵀ; then the
// refusals, which leave the model as it was.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <peft/peft.h>

#include "golden_util.h"

using namespace peft;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// golden_peft_conv1d_mha.py's TinyGPT, with the same module names.
class TinyGPT : public nn::Module {
 public:
  TinyGPT() {
    auto attn = std::make_shared<nn::ModuleDict>();
    attn->insert("c_attn", std::make_shared<nn::Conv1D>(24, 8));
    attn->insert("c_proj", std::make_shared<nn::Conv1D>(8, 8));
    auto mlp = std::make_shared<nn::ModuleDict>();
    mlp->insert("c_fc", std::make_shared<nn::Conv1D>(16, 8));
    mlp->insert("c_proj", std::make_shared<nn::Conv1D>(8, 16));
    register_module("attn", attn);
    register_module("mlp", mlp);
    register_module("head", std::make_shared<nn::Linear>(8, 4));
  }
  std::string type_name() const override { return "TinyGPT"; }
  Tensor forward(const Tensor& x) override {
    std::vector<Tensor> qkv = split(get_submodule("attn.c_attn")->forward(x), 8, -1);
    Tensor h = add(x, get_submodule("attn.c_proj")->forward(add(mul(qkv[0], sigmoid(qkv[1])), qkv[2])));
    h = add(h, get_submodule("mlp.c_proj")->forward(gelu(get_submodule("mlp.c_fc")->forward(h), "tanh")));
    return child("head")->forward(h);
  }
};

const std::vector<std::string> kConv1Ds = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};

std::string case_name(const std::string& c) { return "peft_conv1d_mha/" + c; }
std::string adapter_dir(const std::string& c) { return std::string(PEFT_GOLDEN_DIR) + "/peft_conv1d_mha/" + c; }

std::shared_ptr<TinyGPT> tiny_from(const golden::Case& c) {
  auto m = std::make_shared<TinyGPT>();
  m->load_state_dict(c.with_prefix("base."));
  return m;
}

double max_abs_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }

// Every warning the library logs while alive.
struct WarningCapture {
  std::vector<std::string> messages;
  WarningCapture() {
    set_log_callback([this](LogLevel l, const std::string& m) {
      if (l == LogLevel::Warning) messages.push_back(m);
    });
  }
  ~WarningCapture() { set_log_callback(nullptr); }
};

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

std::string scratch_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("peft_conv1d_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

LoraConfig config_of(const golden::Case& c) { return LoraConfig::from_pretrained(adapter_dir(c.name().substr(16))); }

}  // namespace

TEST_CASE("Conv1D computes x·W + b with W (in, out) and backpropagates as transformers' Conv1D", "[layers][conv1d]") {
  golden::Case c(case_name("lora"));
  auto m = tiny_from(c);
  CHECK(m->get_submodule("attn.c_attn")->repr() == "Conv1D(nf=24, nx=8)");
  CHECK(m->get_submodule("attn.c_attn")->param("weight").shape() == Shape{8, 24});
  Tensor x = c.leaf("x");
  Tensor out = m->forward(x);
  CHECK(max_abs_diff(out, c.get("out_base")) < 1e-5);
  sum(mul(out, c.get("g"))).backward();
  CHECK(max_abs_diff(x.grad(), c.get("grad_base.x")) < 1e-5);
  for (auto& [name, p] : m->named_parameters()) {
    INFO("parameter " << name);
    CHECK(max_abs_diff(p.grad(), c.get("grad_base." + name)) < 1e-5);
  }
  CHECK_THROWS_WITH(m->get_submodule("attn.c_attn")->forward(Tensor::zeros({2, 7})),
                    Contains("Conv1D: input has 7 features"));
}

TEST_CASE("PEFT's Conv1D adapters load and match PEFT on, off, merged and in the backward", "[lora][conv1d][golden]") {
  for (const std::string name : {"lora", "mixed", "dora"}) {
    DYNAMIC_SECTION(name) {
      golden::Case c(case_name(name));
      const Tensor x = c.get("x");
      auto pm = PeftModel::from_pretrained(tiny_from(c), adapter_dir(name), std::nullopt, "default", true);
      pm->eval();
      const LoraConfig& cfg = pm->peft_config().at("default");
      CHECK(cfg.fan_in_fan_out == read_json(adapter_dir(name) + "/adapter_config.json")["fan_in_fan_out"].get<bool>());
      for (const auto& n : kConv1Ds) {
        auto l = pm->model()->get_submodule(n);
        if (auto lora = std::dynamic_pointer_cast<LoraConv1D>(l)) {
          CHECK(lora->type_name() == "lora.Linear");
          CHECK(lora->base_layer()->type_name() == "Conv1D");
        }
      }
      Tensor out = pm->forward(x);
      CHECK(max_abs_diff(out, c.get("out_lora")) < 2e-5);
      sum(mul(out, c.get("g"))).backward();
      int grads = 0;
      for (auto& [pname, p] : pm->named_parameters()) {
        if (!p.requires_grad()) continue;
        INFO("gradient of " << pname);
        REQUIRE(c.has("grad." + pname));
        CHECK(max_abs_diff(p.grad(), c.get("grad." + pname)) < 2e-5);
        ++grads;
      }
      CHECK(grads == static_cast<int>(c.with_prefix("grad.").size()));
      {
        NoGradGuard g;
        {
          auto off = pm->disable_adapter();
          CHECK(max_abs_diff(pm->forward(x), c.get("out_disabled")) < 1e-6);
        }
        pm->merge_adapter();
        CHECK(max_abs_diff(pm->forward(x), c.get("out_merged")) < 2e-5);
        for (const auto& [k, w] : c.with_prefix("merged.")) {
          INFO("merged " << k);
          const std::string mod = k.substr(0, k.rfind('.'));
          auto l = std::dynamic_pointer_cast<LoraLayer>(pm->model()->get_submodule(mod));
          const Tensor& have = l ? l->base_layer()->param(k.substr(k.rfind('.') + 1))
                                 : pm->model()->get_submodule(mod)->param(k.substr(k.rfind('.') + 1));
          CHECK(max_abs_diff(have, w) < 2e-5);
        }
        pm->unmerge_adapter();
        for (const auto& [k, w] : c.with_prefix("base.")) {
          const std::string mod = k.substr(0, k.rfind('.'));
          auto l = std::dynamic_pointer_cast<LoraLayer>(pm->model()->get_submodule(mod));
          if (!l) continue;
          INFO("unmerged " << k);
          CHECK(max_abs_diff(l->base_layer()->param(k.substr(k.rfind('.') + 1)), w) < 2e-5);
        }
        CHECK(max_abs_diff(pm->forward(x), c.get("out_lora")) < 2e-5);
      }
      // Saved again, the adapter file has PEFT's keys and shapes, and the config PEFT's switch.
      const std::string dir = scratch_dir(name);
      pm->save_pretrained(dir);
      NamedTensors mine = io::load_file(dir + "/adapter_model.safetensors");
      NamedTensors theirs = io::load_file(adapter_dir(name) + "/adapter_model.safetensors");
      REQUIRE(mine.size() == theirs.size());
      for (const auto& [k, t] : theirs) {
        INFO("adapter key " << k);
        CHECK(io::find_tensor(mine, k).shape() == t.shape());
        CHECK(max_abs_diff(io::find_tensor(mine, k), t) == 0.0);
      }
      CHECK(read_json(dir + "/adapter_config.json")["fan_in_fan_out"] ==
            read_json(adapter_dir(name) + "/adapter_config.json")["fan_in_fan_out"]);
      fs::remove_all(dir);
    }
  }
}

TEST_CASE("get_peft_model switches fan_in_fan_out per Linear / Conv1D layer with PEFT's warnings", "[lora][conv1d]") {
  for (const std::string name : {"lora", "mixed", "dora", "pissa"}) {
    DYNAMIC_SECTION(name) {
      golden::Case c(case_name(name));
      LoraConfig cfg = config_of(c);
      // The config PEFT started from: the golden script's fan_in_fan_out before the dispatch ran.
      cfg.fan_in_fan_out = name != "lora";
      WarningCapture warnings;
      auto pm = get_peft_model(tiny_from(c), cfg);
      const nlohmann::json want = nlohmann::json::parse(c.metadata().at("warnings"));
      std::vector<std::string> got;
      for (const auto& m : warnings.messages)
        if (m.find("fan_in_fan_out") != std::string::npos) got.push_back(m);
      CHECK(got == want.get<std::vector<std::string>>());
      CHECK(pm->peft_config().at("default").fan_in_fan_out ==
            read_json(adapter_dir(name) + "/adapter_config.json")["fan_in_fan_out"].get<bool>());
    }
  }
}

TEST_CASE("PiSSA on Conv1D factors Wᵀ and leaves PEFT's residual in the (in, out) layout", "[lora][conv1d][golden]") {
  golden::Case c(case_name("pissa"));
  LoraConfig cfg = config_of(c);
  REQUIRE(cfg.init_lora_weights == LoraInit::Pissa);
  auto pm = get_peft_model(tiny_from(c), cfg);
  for (const std::string n : {"attn.c_attn", "mlp.c_fc"}) {
    INFO("layer " << n);
    auto l = std::dynamic_pointer_cast<LoraConv1D>(pm->model()->get_submodule(n));
    REQUIRE(l);
    CHECK(max_abs_diff(l->base_layer()->param("weight"), c.get("residual." + n + ".weight")) < 2e-5);
    const std::string k = "init.base_model.model." + n;
    Tensor BA = matmul(l->child("lora_B")->child("default")->param("weight"),
                       l->child("lora_A")->child("default")->param("weight"));
    CHECK(max_abs_diff(BA, matmul(c.get(k + ".lora_B.default.weight"), c.get(k + ".lora_A.default.weight"))) < 2e-5);
  }
  CHECK(max_abs_diff(pm->forward(c.get("x")), c.get("out_base")) < 2e-5);  // W = residual + s·(B·A)ᵀ
}

TEST_CASE("all-linear takes Conv1D layers as PEFT does", "[lora][conv1d][targeting]") {
  LoraConfig cfg;
  cfg.target_modules = ModuleSelector::all_linear();
  auto pm = get_peft_model(std::make_shared<TinyGPT>(), cfg);
  for (const auto& n : kConv1Ds) CHECK(pm->model()->get_submodule(n)->type_name() == "lora.Linear");
}

TEST_CASE("Conv1D refusals leave the model as it was", "[lora][conv1d][errors]") {
  golden::Case c(case_name("lora"));
  auto m = tiny_from(c);
  const Tensor before = m->get_submodule("attn.c_attn")->param("weight").clone();
  LoraConfig olora;
  olora.target_modules = {"c_fc", "c_attn"};
  olora.init_lora_weights = LoraInit::Olora;
  CHECK_THROWS_WITH(get_peft_model(m, olora), Contains("init_lora_weights=\"olora\" is not supported on a Conv1D"));
  CHECK(m->get_submodule("attn.c_attn")->type_name() == "Conv1D");
  CHECK(max_abs_diff(m->get_submodule("attn.c_attn")->param("weight"), before) == 0.0);
  // A PEFT file for other shapes: named with both shapes, nothing adapted.
  auto small = std::make_shared<TinyGPT>();
  small->get_submodule("attn")->set_submodule("c_attn", std::make_shared<nn::Conv1D>(24, 6));
  CHECK_THROWS(PeftModel::from_pretrained(small, adapter_dir("lora")));
  CHECK(small->get_submodule("attn.c_attn")->type_name() == "Conv1D");
  CHECK(small->get_submodule("mlp.c_fc")->type_name() == "Conv1D");
}
