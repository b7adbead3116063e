// PEFT's data-driven LoRA inits (adapters/lora_init.h) against PEFT 0.21.2
// (tests/golden/golden_peft_init.py): the residual base weight, the delta B·A, A and B (OLoRA
// exactly; PiSSA up to the sign of each singular component), model outputs, and PEFT's conversion
// of a trained PiSSA / OLoRA adapter into a plain rank-2r LoRA adapter for the original base model.
// The random inits (pissa_niter_N, orthogonal) are pinned by their properties. Then the refusals.
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

class Tiny : public nn::Module {  // golden_peft_init.py's Tiny
 public:
  Tiny() {
    register_module("lin0", std::make_shared<nn::Linear>(12, 20));
    register_module("lin1", std::make_shared<nn::Linear>(20, 16));
    register_module("lin2", std::make_shared<nn::Linear>(16, 6));
  }
  std::string type_name() const override { return "Tiny"; }
  Tensor forward(const Tensor& x) override {
    return child("lin2")->forward(relu(child("lin1")->forward(relu(child("lin0")->forward(x)))));
  }
};

const std::vector<std::string> kLins = {"lin0", "lin1", "lin2"};

double max_abs_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }
double max_abs(const Tensor& a) { return max(abs(a)).item(); }

std::shared_ptr<Tiny> tiny_from(const golden::Case& c) {
  auto m = std::make_shared<Tiny>();
  m->load_state_dict(c.with_prefix("base."));
  return m;
}

std::string scratch_dir(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("peft_lora_init_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

std::shared_ptr<LoraLayer> layer(PeftModel& pm, const std::string& name) {
  return std::dynamic_pointer_cast<LoraLayer>(pm.model()->get_submodule(name));
}
Tensor lora_weight(PeftModel& pm, const std::string& lin, const char* which) {
  return layer(pm, lin)->child(which)->child("default")->param("weight");
}

// A (r, in) and B (out, r) against PEFT's up to one sign per component: singular vectors are
// defined up to sign, and flipping row i of A with column i of B leaves B·A unchanged.
void check_factors_up_to_sign(const Tensor& A, const Tensor& B, const Tensor& A_ref, const Tensor& B_ref) {
  REQUIRE(A.shape() == A_ref.shape());
  REQUIRE(B.shape() == B_ref.shape());
  for (int64_t i = 0; i < A.size(0); ++i) {
    Tensor a = A.select(0, i), a_ref = A_ref.select(0, i);
    const double sign = sum(mul(a, a_ref)).item() < 0 ? -1.0 : 1.0;
    CHECK(max_abs_diff(mul(a, sign), a_ref) < 1e-4);
    CHECK(max_abs_diff(mul(B.select(1, i), sign), B_ref.select(1, i)) < 1e-4);
  }
}

struct GoldenCase {
  std::string name;
  LoraConfig config;
};

std::vector<GoldenCase> golden_cases() {
  auto base = [](LoraInit init) {
    LoraConfig c;
    c.target_modules = std::vector<std::string>{"lin0", "lin1", "lin2"};
    c.r = 4;
    c.lora_alpha = 8;
    c.init_lora_weights = init;
    return c;
  };
  std::vector<GoldenCase> out;
  out.push_back({"pissa", base(LoraInit::Pissa)});
  out.push_back({"pissa_rslora", base(LoraInit::Pissa)});
  out.back().config.use_rslora = true;
  out.push_back({"pissa_patterns", base(LoraInit::Pissa)});
  out.back().config.rank_pattern = {{"lin1", 2}};
  out.back().config.alpha_pattern = {{"lin2", 3}};
  out.push_back({"pissa_dora", base(LoraInit::Pissa)});
  out.back().config.use_dora = true;
  out.push_back({"pissa_fan_in_fan_out", base(LoraInit::Pissa)});  // PEFT switches it off on nn.Linear
  out.back().config.fan_in_fan_out = true;
  out.back().config.lora_alpha = 4;
  out.push_back({"olora", base(LoraInit::Olora)});
  out.push_back({"olora_rslora", base(LoraInit::Olora)});
  out.back().config.use_rslora = true;
  out.back().config.lora_alpha = 6;
  return out;
}

}  // namespace

TEST_CASE("PiSSA and OLoRA match PEFT: residual base weight, delta, factors and outputs", "[lora][init][golden]") {
  for (const auto& gc : golden_cases()) {
    INFO("case " << gc.name);
    golden::Case c("peft_init/" + gc.name);
    auto pm = get_peft_model(tiny_from(c), gc.config);
    pm->eval();
    const bool olora = gc.config.init_lora_weights == LoraInit::Olora;
    for (const auto& lin : kLins) {
      INFO("layer " << lin);
      auto l = layer(*pm, lin);
      const std::string key = "init.base_model.model." + lin;
      // The base weight PEFT leaves: W - scaling·B·A (float32 LAPACK there, double Eigen here).
      CHECK(max_abs_diff(l->base_layer()->param("weight"), c.get("residual." + lin)) < 2e-5);
      Tensor A = lora_weight(*pm, lin, "lora_A"), B = lora_weight(*pm, lin, "lora_B");
      const Tensor &A_ref = c.get(key + ".lora_A.weight"), &B_ref = c.get(key + ".lora_B.weight");
      CHECK(max_abs_diff(matmul(B, A), matmul(B_ref, A_ref)) < 2e-5);  // sign-free
      if (olora) {  // Householder QR with LAPACK's sign convention: the factors themselves
        CHECK(max_abs_diff(A, A_ref) < 2e-5);
        CHECK(max_abs_diff(B, B_ref) < 2e-5);
      } else {
        check_factors_up_to_sign(A, B, A_ref, B_ref);
      }
      if (gc.config.use_dora)
        CHECK(max_abs_diff(l->child("lora_magnitude_vector")->child("default")->param("weight"),
                           c.get(key + ".lora_magnitude_vector")) < 2e-5);
    }
    NoGradGuard g;
    Tensor x = c.get("x");
    CHECK(max_abs_diff(pm->forward(x), c.get("out_init")) < 2e-5);
    CHECK(max_abs_diff(pm->forward(x), c.get("out_base")) < 2e-5);  // the init keeps the output

    // Save the initial adapter, "train" (PEFT's trained A, B, magnitudes), save converted.
    const std::string dir = scratch_dir(gc.name);
    pm->save_pretrained(dir + "/initial");
    CHECK(read_json(dir + "/initial/adapter_config.json")["init_lora_weights"] ==
          (olora ? "olora" : "pissa"));
    set_peft_model_state_dict(*pm->model(), c.with_prefix("trained."), "default");
    CHECK(max_abs_diff(pm->forward(x), c.get("out_trained")) < 2e-5);
    SaveOptions opt;
    opt.path_initial_model_for_weight_conversion = dir + "/initial";
    pm->save_pretrained(dir + "/converted", {}, opt);

    // The converted adapter: rank 2r, delta = scaling·(B·A - B0·A0) as PEFT's.
    NamedTensors conv = io::load_file(dir + "/converted/adapter_model.safetensors");
    for (const auto& lin : kLins) {
      INFO("converted layer " << lin);
      const std::string k = "base_model.model." + lin;
      const Tensor &A = io::find_tensor(conv, k + ".lora_A.weight"), &B = io::find_tensor(conv, k + ".lora_B.weight");
      const Tensor &A_ref = c.get("converted." + k + ".lora_A.weight"), &B_ref = c.get("converted." + k + ".lora_B.weight");
      CHECK(A.shape() == A_ref.shape());
      CHECK(B.shape() == B_ref.shape());
      CHECK(max_abs_diff(matmul(B, A), matmul(B_ref, A_ref)) < 2e-5);
    }
    const nlohmann::json want = nlohmann::json::parse(c.metadata().at("converted_config"));
    const nlohmann::json got = read_json(dir + "/converted/adapter_config.json");
    for (const char* field : {"r", "init_lora_weights", "rank_pattern", "alpha_pattern", "use_rslora"})
      CHECK(got[field] == want[field]);
    CHECK(got["lora_alpha"].get<double>() == Approx(want["lora_alpha"].get<double>()).epsilon(1e-15));
    // As PEFT, the initial folder now describes a plain LoRA adapter.
    CHECK(read_json(dir + "/initial/adapter_config.json")["init_lora_weights"] == true);

    // Applied to the ORIGINAL base model, the converted adapter reproduces the trained model.
    auto loaded = PeftModel::from_pretrained(tiny_from(c), dir + "/converted");
    Tensor out = loaded->forward(x);
    CHECK(max_abs_diff(out, c.get("out_trained")) < 2e-5);
    // PEFT's own converted DoRA adapter drops the trained magnitude vector (subtract_mutated_init
    // keeps only lora_A / lora_B), so its output differs there; ours keeps it (PEFT_FACTS.md).
    if (!gc.config.use_dora) CHECK(max_abs_diff(out, c.get("out_converted")) < 2e-5);
    fs::remove_all(dir);
  }
}

TEST_CASE("an unconverted PiSSA adapter reloads onto the original base model (the SVD is recomputed)",
          "[lora][init]") {
  golden::Case c("peft_init/pissa");
  auto pm = get_peft_model(tiny_from(c), golden_cases()[0].config);
  set_peft_model_state_dict(*pm->model(), c.with_prefix("trained."), "default");
  const std::string dir = scratch_dir("reload");
  pm->save_pretrained(dir);
  auto loaded = PeftModel::from_pretrained(tiny_from(c), dir);
  NoGradGuard g;
  CHECK(max_abs_diff(loaded->forward(c.get("x")), c.get("out_trained")) < 2e-5);
  fs::remove_all(dir);
}

TEST_CASE("PiSSA on a BF16 base: computed in float32, W_res and the factors rounded to BF16, F32 adapters",
          "[lora][init]") {
  golden::Case c("peft_init/pissa");
  auto m = tiny_from(c);
  m->to(DType::BF16);
  auto pm = get_peft_model(m, golden_cases()[0].config);
  for (const auto& lin : kLins) {
    INFO("layer " << lin);
    Tensor A = lora_weight(*pm, lin, "lora_A"), B = lora_weight(*pm, lin, "lora_B");
    CHECK(A.dtype() == DType::F32);  // autocast_adapter_dtype, as PEFT
    Tensor res = layer(*pm, lin)->base_layer()->param("weight");
    CHECK(res.dtype() == DType::BF16);
    // BF16 keeps 8 bits: W_res + scaling·B·A is W to BF16 rounding of the pieces.
    CHECK(max_abs_diff(add(res.to(DType::F32), mul(matmul(B, A), 2.0)), c.get("base." + lin + ".weight")) < 1e-2);
    CHECK(max_abs_diff(matmul(B, A), matmul(c.get("init.base_model.model." + lin + ".lora_B.weight"),
                                            c.get("init.base_model.model." + lin + ".lora_A.weight"))) < 1e-2);
  }
}

TEST_CASE("a PiSSA adapter that fails to load leaves the rewritten base weights as they were", "[lora][init][errors]") {
  golden::Case c("peft_init/pissa");
  const std::string dir = scratch_dir("badload");
  get_peft_model(tiny_from(c), golden_cases()[0].config)->save_pretrained(dir);
  NamedTensors sd = io::load_file(dir + "/adapter_model.safetensors");
  for (auto& [k, t] : sd)
    if (k == "base_model.model.lin2.lora_A.weight") t = Tensor::zeros({3, 16});  // wrong rank
  io::save_file(sd, dir + "/adapter_model.safetensors");
  auto m = tiny_from(c);
  CHECK_THROWS_WITH(PeftModel::from_pretrained(m, dir), Contains("size mismatch"));
  for (const auto& lin : kLins) {
    INFO("layer " << lin);
    CHECK(m->get_submodule(lin)->type_name() == "Linear");
    CHECK(max_abs_diff(m->get_submodule(lin)->param("weight"), c.get("base." + lin + ".weight")) == 0);
  }
  // load_adapter onto a model that already has an adapter: the same.
  auto pm = get_peft_model(tiny_from(c), golden_cases()[5].config);  // olora "default"
  std::vector<Tensor> before;
  for (const auto& lin : kLins) before.push_back(layer(*pm, lin)->base_layer()->param("weight").clone());
  CHECK_THROWS_WITH(pm->load_adapter(dir, "other"), Contains("size mismatch"));
  for (size_t i = 0; i < kLins.size(); ++i)
    CHECK(max_abs_diff(layer(*pm, kLins[i])->base_layer()->param("weight"), before[i]) == 0);
  fs::remove_all(dir);
}

TEST_CASE("pissa_niter_N: W_res + scaling·B·A = W, orthogonal components, near-optimal rank-r part",
          "[lora][init]") {
  golden::Case c("peft_init/pissa");
  for (int64_t niter : {0, 2, 64}) {
    INFO("niter " << niter);
    LoraConfig cfg = golden_cases()[0].config;
    cfg.init_lora_weights = LoraInit::PissaNiter;
    cfg.pissa_niter = niter;
    manual_seed(7);
    auto pm = get_peft_model(tiny_from(c), cfg);
    for (const auto& lin : kLins) {
      INFO("layer " << lin);
      const Tensor W = c.get("base." + lin + ".weight");
      Tensor A = lora_weight(*pm, lin, "lora_A"), B = lora_weight(*pm, lin, "lora_B");
      Tensor res = layer(*pm, lin)->base_layer()->param("weight");
      CHECK(max_abs_diff(add(res, mul(matmul(B, A), 2.0)), W) < 1e-5);
      // A = diag(√S)·Uh and B = V·diag(√S): A·Aᵀ = BᵀB = diag(S / scaling).
      Tensor aat = matmul(A, A.t()), btb = matmul(B.t(), B);
      CHECK(max_abs_diff(aat, btb) < 1e-4);
      const std::vector<double> v = aat.to_vector<double>();
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 4; ++j)
          if (i != j) CHECK(std::fabs(v[static_cast<size_t>(i * 4 + j)]) < 1e-4);
      // Frobenius error of the rank-r part: never better than the exact SVD's (PEFT's "pissa"
      // residual), and within 0.1% of it after enough subspace iterations.
      const double best = std::sqrt(sum(mul(c.get("residual." + lin), c.get("residual." + lin))).item());
      const double got = std::sqrt(sum(mul(res, res)).item());
      CHECK(got >= best * (1 - 1e-5));
      if (niter == 64) CHECK(got <= best * 1.001);
    }
  }
  LoraConfig cfg;
  cfg.target_modules = std::vector<std::string>{"lin0"};
  cfg.init_lora_weights = LoraInit::PissaNiter;
  cfg.pissa_niter = 16;
  CHECK(cfg.to_json()["init_lora_weights"] == "pissa_niter_16");
  LoraConfig back = LoraConfig::from_json(cfg.to_json());
  CHECK(back.init_lora_weights == LoraInit::PissaNiter);
  CHECK(back.pissa_niter == 16);
}

TEST_CASE("orthogonal init: B·A = 0, the base weight stays, A and B of rank r/2", "[lora][init]") {
  golden::Case c("peft_init/pissa");
  LoraConfig cfg = golden_cases()[0].config;
  cfg.init_lora_weights = LoraInit::Orthogonal;
  auto pm = get_peft_model(tiny_from(c), cfg);
  for (const auto& lin : kLins) {
    INFO("layer " << lin);
    Tensor A = lora_weight(*pm, lin, "lora_A"), B = lora_weight(*pm, lin, "lora_B");
    CHECK(max_abs(matmul(B, A)) < 1e-6);
    CHECK(max_abs(A) > 1e-2);
    CHECK(max_abs(B) > 1e-2);
    CHECK(max_abs_diff(layer(*pm, lin)->base_layer()->param("weight"), c.get("base." + lin + ".weight")) == 0);
  }
  CHECK(cfg.to_json()["init_lora_weights"] == "orthogonal");
  cfg.r = 3;
  auto m = tiny_from(c);
  CHECK_THROWS_WITH(get_peft_model(m, cfg),
                    Contains("Orthogonal initialization requires the LoRA rank to be even, got 3 instead."));
}

TEST_CASE("Embedding takes the Linear-only inits as true; Conv2d refuses them and nothing changes",
          "[lora][init][errors]") {
  class Mixed : public nn::Module {
   public:
    Mixed() {
      register_module("emb", std::make_shared<nn::Embedding>(10, 6));
      register_module("lin", std::make_shared<nn::Linear>(6, 8));
      register_module("conv", std::make_shared<nn::Conv2d>(3, 4, 3));
    }
    std::string type_name() const override { return "Mixed"; }
    Tensor forward(const Tensor& x) override { return x; }
  };
  for (LoraInit init : {LoraInit::Pissa, LoraInit::Olora, LoraInit::Orthogonal, LoraInit::PissaNiter}) {
    LoraConfig cfg;
    cfg.r = 4;
    cfg.init_lora_weights = init;
    cfg.pissa_niter = 2;
    cfg.target_modules = std::vector<std::string>{"emb"};
    auto pm = get_peft_model(std::make_shared<Mixed>(), cfg);
    CHECK(max_abs(layer(*pm, "emb")->child("lora_embedding_A")->param("default")) == 0);
    // lin is adapted (and, for PiSSA / OLoRA, rewritten) before conv refuses: all of it is undone.
    auto m = std::make_shared<Mixed>();
    const Tensor w = m->get_submodule("lin")->param("weight").clone();
    cfg.target_modules = std::vector<std::string>{"lin", "conv"};
    const std::string name = init_lora_weights_name(init, 2);
    CHECK_THROWS_WITH(get_peft_model(m, cfg), Contains("Unknown initialization init_lora_weights='" + name + "'"));
    CHECK(m->get_submodule("lin")->type_name() == "Linear");
    CHECK(max_abs_diff(m->get_submodule("lin")->param("weight"), w) == 0);
  }
}

TEST_CASE("PiSSA / OLoRA refusals: F64 base, r above min(in, out), lora_bias", "[lora][init][errors]") {
  LoraConfig cfg;
  cfg.target_modules = std::vector<std::string>{"lin1"};
  cfg.r = 4;
  auto f64 = std::make_shared<Tiny>();
  f64->to(DType::F64);
  cfg.init_lora_weights = LoraInit::Pissa;
  CHECK_THROWS_WITH(get_peft_model(f64, cfg), Contains("Please initialize PiSSA under float32, float16, or bfloat16."));
  cfg.init_lora_weights = LoraInit::Olora;
  CHECK_THROWS_WITH(get_peft_model(f64, cfg), Contains("Unsupported data type for the base layer. Got torch.float64."));
  cfg.init_lora_weights = LoraInit::Orthogonal;  // PEFT casts its random factors: F64 is fine
  CHECK_NOTHROW(get_peft_model(std::make_shared<Tiny>(), cfg));
  cfg.init_lora_weights = LoraInit::Pissa;
  cfg.r = 17;  // lin1 is 16×20
  CHECK_THROWS_WITH(get_peft_model(std::make_shared<Tiny>(), cfg), Contains("needs r <= min(out_features, in_features)"));
  cfg.r = 4;
  cfg.lora_bias = true;
  CHECK_THROWS_WITH(cfg.validate(), Contains("The argument lora_bias=True is only supported with init_lora_weights=True "
                                             "or False, got init_lora_weights=pissa instead."));
}

TEST_CASE("init_lora_weights in adapter_config.json: the implemented inits round-trip, others are named",
          "[lora][init][errors]") {
  for (const char* s : {"pissa", "olora", "orthogonal", "gaussian", "pissa_niter_3"}) {
    nlohmann::json j = {{"r", 4}, {"target_modules", {"lin0"}}, {"init_lora_weights", s}};
    CHECK(LoraConfig::from_json(j).to_json()["init_lora_weights"] == s);
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"loftq", "init_lora_weights \"loftq\" is not supported (loftq initialisation is not implemented"},
      {"eva", "\"eva\" is not supported"},
      {"corda", "\"corda\" is not supported"},
      {"lora_ga", "\"lora_ga\" is not supported"},
      {"pissa_foo", "init_lora_weights should be 'pissa' or 'pissa_niter_[number of iters]', got pissa_foo instead."},
      {"pissa_niter_x", "invalid literal for int() with base 10: 'x'"},
      {"foo", "Unknown initialization init_lora_weights='foo'"},
  };
  for (const auto& [value, message] : bad) {
    nlohmann::json j = {{"r", 4}, {"target_modules", {"lin0"}}, {"init_lora_weights", value}};
    CHECK_THROWS_WITH(LoraConfig::from_json(j), Contains(message));
  }
}

TEST_CASE("conversion on save refuses rslora with patterns and a foreign initial adapter, writing nothing",
          "[lora][init][errors]") {
  golden::Case c("peft_init/pissa");
  LoraConfig cfg = golden_cases()[0].config;
  const std::string dir = scratch_dir("refusals");
  SaveOptions opt;
  opt.path_initial_model_for_weight_conversion = dir + "/initial";
  {
    LoraConfig rs = cfg;
    rs.use_rslora = true;
    rs.rank_pattern = {{"lin1", 2}};
    auto pm = get_peft_model(tiny_from(c), rs);
    pm->save_pretrained(dir + "/initial");
    CHECK_THROWS_WITH(pm->save_pretrained(dir + "/out", {}, opt),
                      Contains("Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported "
                               "when using `rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`."));
  }
  {
    LoraConfig one = cfg;
    one.target_modules = std::vector<std::string>{"lin0"};
    get_peft_model(tiny_from(c), one)->save_pretrained(dir + "/initial");
    auto pm = get_peft_model(tiny_from(c), cfg);
    CHECK_THROWS_WITH(pm->save_pretrained(dir + "/out", {}, opt),
                      Contains("the initial adapter has no tensor 'base_model.model.lin1.lora_A.weight'"));
    CHECK(read_json(dir + "/initial/adapter_config.json")["init_lora_weights"] == "pissa");  // not rewritten
  }
  CHECK(!fs::exists(dir + "/out"));
  fs::remove_all(dir);
}
