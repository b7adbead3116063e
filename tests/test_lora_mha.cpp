// nn::MultiheadAttention and PEFT's lora.MultiheadAttention (adapters/lora_mha.h) against PEFT 0.21.2
// (tests/golden/golden_peft_conv1d_mha.py, case "mha"): PEFT's adapter file loaded with
// PeftModel::from_pretrained gives PEFT's outputs on, off, merged and after merge_and_unload,
// PEFT's merged weights (out_proj's delta twice, as PEFT) and PEFT's LoRA gradients; then the
// refusals, which leave the model as it was.
#include <catch2/catch.hpp>

#include <peft/peft.h>

#include "golden_util.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

class TinyAttn : public nn::Module {  // golden_peft_conv1d_mha.py's TinyAttn
 public:
  TinyAttn() {
    register_module("mha", std::make_shared<nn::MultiheadAttention>(8, 2, 0.0, true, false, false, 0, 0, true));
    register_module("head", std::make_shared<nn::Linear>(8, 4));
  }
  std::string type_name() const override { return "TinyAttn"; }
  Tensor forward(const Tensor& x) override { return child("head")->forward(child("mha")->forward(x)); }
};

const char* kDir = PEFT_GOLDEN_DIR "/peft_conv1d_mha/mha";

std::shared_ptr<TinyAttn> tiny_from(const golden::Case& c) {
  auto m = std::make_shared<TinyAttn>();
  m->load_state_dict(c.with_prefix("base."));
  return m;
}

double max_abs_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }

}  // namespace

TEST_CASE("MultiheadAttention has torch's parameters and computes torch's self-attention", "[layers][mha]") {
  golden::Case c("peft_conv1d_mha/mha");
  auto m = tiny_from(c);
  std::vector<std::string> names;
  for (const auto& [n, p] : m->named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"mha.in_proj_weight", "mha.in_proj_bias", "mha.out_proj.weight",
                                          "mha.out_proj.bias", "head.weight", "head.bias"});
  CHECK(m->get_submodule("mha.out_proj")->type_name() == "NonDynamicallyQuantizableLinear");
  CHECK(max_abs_diff(m->forward(c.get("x")), c.get("out_base")) < 1e-5);
  // Sequence-first (torch's default) is the same attention on the transposed input.
  auto seq_first = std::make_shared<nn::MultiheadAttention>(8, 2);
  seq_first->load_state_dict(m->get_submodule("mha")->state_dict());
  Tensor y = seq_first->forward(c.get("x").transpose(0, 1));
  CHECK(max_abs_diff(y.transpose(0, 1), m->get_submodule("mha")->forward(c.get("x"))) < 1e-6);
  CHECK_THROWS_WITH(nn::MultiheadAttention(8, 2, 0.0, true, true), Contains("add_bias_kv"));
  CHECK_THROWS_WITH(nn::MultiheadAttention(8, 2, 0.0, true, false, false, 4, 4), Contains("kdim / vdim"));
}

TEST_CASE("PEFT's MultiheadAttention adapter loads and matches PEFT on, off, merged and in the backward",
          "[lora][mha][golden]") {
  golden::Case c("peft_conv1d_mha/mha");
  const Tensor x = c.get("x");
  auto pm = PeftModel::from_pretrained(tiny_from(c), kDir, std::nullopt, "default", true);
  pm->eval();
  CHECK(pm->model()->get_submodule("mha")->type_name() == "lora.MultiheadAttention");
  CHECK(pm->model()->get_submodule("mha.base_layer.out_proj")->type_name() == "lora.Linear");
  Tensor out = pm->forward(x);
  CHECK(max_abs_diff(out, c.get("out_lora")) < 2e-5);
  sum(mul(out, c.get("g"))).backward();
  int grads = 0;
  for (auto& [name, p] : pm->named_parameters()) {
    if (!p.requires_grad()) continue;
    INFO("gradient of " << name);
    REQUIRE(c.has("grad." + name));
    CHECK(max_abs_diff(p.grad(), c.get("grad." + name)) < 2e-5);
    ++grads;
  }
  CHECK(grads == 4);
  NoGradGuard g;
  {
    auto off = pm->disable_adapter();
    CHECK(max_abs_diff(pm->forward(x), c.get("out_disabled")) < 1e-6);
  }
  const Tensor w_in = pm->model()->get_submodule("mha.base_layer")->param("in_proj_weight").clone();
  const Tensor w_out = pm->model()->get_submodule("mha.base_layer.out_proj.base_layer")->param("weight").clone();
  pm->merge_adapter();
  CHECK(max_abs_diff(pm->forward(x), c.get("out_merged")) < 2e-5);
  CHECK(max_abs_diff(pm->model()->get_submodule("mha.base_layer")->param("in_proj_weight"),
                     c.get("merged.mha.in_proj_weight")) < 2e-5);
  CHECK(max_abs_diff(pm->model()->get_submodule("mha.base_layer.out_proj.base_layer")->param("weight"),
                     c.get("merged.mha.out_proj.weight")) < 2e-5);
  pm->unmerge_adapter();
  CHECK(max_abs_diff(pm->model()->get_submodule("mha.base_layer")->param("in_proj_weight"), w_in) < 1e-6);
  CHECK(max_abs_diff(pm->model()->get_submodule("mha.base_layer.out_proj.base_layer")->param("weight"), w_out) <
        1e-6);
  CHECK(max_abs_diff(pm->forward(x), c.get("out_lora")) < 2e-5);
  nn::ModulePtr plain = pm->merge_and_unload();
  CHECK(plain->get_submodule("mha")->type_name() == "MultiheadAttention");
  CHECK(plain->get_submodule("mha.out_proj")->type_name() == "NonDynamicallyQuantizableLinear");
  CHECK(max_abs_diff(plain->forward(x), c.get("out_unloaded")) < 2e-5);
}

TEST_CASE("lora.MultiheadAttention refusals leave the model as it was", "[lora][mha][errors]") {
  golden::Case c("peft_conv1d_mha/mha");
  auto m = tiny_from(c);
  for (int which = 0; which < 2; ++which) {
    LoraConfig cfg;
    cfg.target_modules = {"mha"};
    if (which == 0) cfg.use_dora = true;
    else cfg.lora_bias = true;
    CHECK_THROWS_WITH(get_peft_model(m, cfg), Contains(which == 0 ? "does not support DoRA" : "lora_bias"));
    CHECK(m->get_submodule("mha")->type_name() == "MultiheadAttention");
    CHECK(m->get_submodule("mha.out_proj")->type_name() == "NonDynamicallyQuantizableLinear");
  }
  CHECK(max_abs_diff(m->forward(c.get("x")), c.get("out_base")) < 1e-5);
}
