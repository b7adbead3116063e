// PEFT's custom-model checks (tests/test_custom_models.py, spec "PEFT's own custom-model tests")
// on its MLP: Linear(10, 20) → ReLU → Dropout(0.5) → Linear(20, 2) → LogSoftmax, input
// arange(90).view(9, 10) as float; plus the model-level operations of a PeftModel.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <unistd.h>

#include "models/mlp.h"
#include "peft.h"

namespace fs = std::filesystem;
using namespace peft;

namespace {

class MLP : public nn::Module {
 public:
  explicit MLP(bool bias = true) {
    register_module("lin0", std::make_shared<nn::Linear>(10, 20, bias));
    register_module("relu", std::make_shared<nn::ReLU>());
    register_module("drop", std::make_shared<nn::Dropout>(0.5));
    register_module("lin1", std::make_shared<nn::Linear>(20, 2, bias));
    register_module("sm", std::make_shared<nn::LogSoftmax>(-1));
  }
  std::string type_name() const override { return "MLP"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (const char* n : {"lin0", "relu", "drop", "lin1", "sm"}) h = child(n)->forward(h);
    return h;
  }
};

// The same base weights for every call with the same seed.
std::shared_ptr<MLP> mlp(uint64_t seed = 0) {
  manual_seed(seed);
  return std::make_shared<MLP>();
}

Tensor X() { return Tensor::arange(90).reshape({9, 10}); }

Tensor eval_out_of(nn::Module& m, const Tensor& x) {
  m.eval();
  NoGradGuard g;
  return m.forward(x);
}

Tensor eval_out(nn::Module& m) { return eval_out_of(m, X()); }

bool allclose(const Tensor& a, const Tensor& b, double atol, double rtol) {
  if (a.shape() != b.shape()) return false;
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i)
    if (!(std::abs(va[i] - vb[i]) <= atol + rtol * std::abs(vb[i]))) return false;
  return true;
}

// PEFT's MLP configurations ("Vanilla MLP 1..6 LoRA").
std::vector<std::pair<std::string, LoraConfig>> mlp_configs(LoraInit init) {
  std::vector<std::pair<std::string, LoraConfig>> out;
  auto add = [&](const std::string& name, LoraConfig c) {
    c.init_lora_weights = init;
    out.emplace_back(name, c);
  };
  LoraConfig c;
  c.target_modules = Regex{"lin0"};
  add("regex lin0", c);
  c.target_modules = {"lin0"};
  add("[lin0]", c);
  c.target_modules = {"lin1"};
  add("[lin1]", c);
  c.target_modules = {"lin0", "lin1"};
  add("[lin0, lin1]", c);
  c.target_modules = {"lin0"};
  c.modules_to_save = std::vector<std::string>{"lin1"};
  add("[lin0] + modules_to_save [lin1]", c);
  c.modules_to_save.reset();
  c.lora_alpha = 4;
  c.lora_dropout = 0.1;
  add("[lin0] alpha 4 dropout 0.1", c);
  return out;
}

bool is_adapter_param(const std::string& name) {
  return name.find("lora_") != std::string::npos || name.find("modules_to_save") != std::string::npos;
}

std::map<std::string, Tensor> snapshot(const nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (auto& [n, p] : m.named_parameters()) out[n] = p.detach().clone();
  return out;
}

void sgd_steps(PeftModel& pm, double lr, int steps, bool nll) {
  optim::SGDOptions o;
  o.lr = lr;
  optim::SGD opt(pm.trainable_parameters(), o);
  pm.train();
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < 9; ++i) labels.push_back(i % 2);
  for (int i = 0; i < steps; ++i) {
    Tensor out = pm.forward(X());
    Tensor loss = nll ? nll_loss(out, Tensor::from_vector(labels, {9})) : sum(out);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  pm.eval();
}

std::string scratch_dir(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("peft_lora_model_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

bool has_tuner_layers(nn::Module& m) {
  for (auto& [n, c] : m.named_modules())
    if (dynamic_cast<LoraLayer*>(c.get()) || dynamic_cast<ModulesToSaveWrapper*>(c.get())) return true;
  return false;
}

}  // namespace

TEST_CASE("default init leaves the MLP's output unchanged", "[lora]") {
  for (auto& [name, cfg] : mlp_configs(LoraInit::Default)) {
    DYNAMIC_SECTION(name) {
      auto base = mlp();
      Tensor before = eval_out(*base);
      auto pm = get_peft_model(base, cfg);
      CHECK(allclose(eval_out(*pm), before, 1e-8, 1e-5));
    }
  }
}

TEST_CASE("merge_adapter, unmerge_adapter and merge_and_unload reproduce the adapter output", "[lora]") {
  for (auto& [name, cfg] : mlp_configs(LoraInit::Random)) {
    DYNAMIC_SECTION(name) {
      auto base = mlp();
      Tensor base_out = eval_out(*base);
      auto pm = get_peft_model(base, cfg);
      Tensor logits = eval_out(*pm);
      CHECK_FALSE(allclose(logits, base_out, 1e-10, 1e-10));  // init false changes the output
      pm->merge_adapter();
      CHECK(allclose(eval_out(*pm), logits, 1e-4, 1e-4));
      pm->merge_adapter();  // merging again changes nothing
      CHECK(allclose(eval_out(*pm), logits, 1e-4, 1e-4));
      pm->unmerge_adapter();
      CHECK(allclose(eval_out(*pm), logits, 1e-4, 1e-4));
      nn::ModulePtr merged = pm->merge_and_unload();
      CHECK(merged == base);
      CHECK_FALSE(has_tuner_layers(*merged));
      Tensor merged_out = eval_out(*merged);
      CHECK(allclose(merged_out, logits, 1e-4, 1e-4));
      CHECK_FALSE(allclose(merged_out, base_out, 1e-10, 1e-10));
    }
  }
}

TEST_CASE("save_pretrained then from_pretrained gives the same output and state", "[lora]") {
  for (auto& [name, cfg] : mlp_configs(LoraInit::Random)) {
    DYNAMIC_SECTION(name) {
      auto pm = get_peft_model(mlp(), cfg);
      Tensor out = eval_out(*pm);
      const std::string dir = scratch_dir("roundtrip");
      pm->save_pretrained(dir);
      CHECK(fs::exists(dir + "/adapter_model.safetensors"));
      CHECK(fs::exists(dir + "/adapter_config.json"));
      auto fresh = mlp();  // same base weights
      manual_seed(54321);    // and other LoRA initial values than `pm` had
      std::vector<std::string> warnings;
      auto loaded = PeftModel::from_pretrained(fresh, dir, std::nullopt, "default", false, &warnings);
      CHECK(warnings.empty());
      CHECK(allclose(eval_out(*loaded), out, 1e-5, 1e-5));
      auto a = pm->state_dict(), b = loaded->state_dict();
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].first == b[i].first);
        CHECK(a[i].second.to_vector<double>() == b[i].second.to_vector<double>());
      }
      fs::remove_all(dir);
    }
  }
}

TEST_CASE("3 SGD steps change only the lora_ and modules_to_save parameters", "[lora]") {
  for (auto& [name, cfg] : mlp_configs(LoraInit::Default)) {
    DYNAMIC_SECTION(name) {
      auto pm = get_peft_model(mlp(), cfg);
      auto before = snapshot(*pm);
      sgd_steps(*pm, 0.5, 3, /*nll=*/false);
      for (auto& [n, p] : pm->named_parameters()) {
        INFO(n);
        if (is_adapter_param(n) && p.requires_grad()) CHECK_FALSE(allclose(p, before[n], 1e-4, 1e-4));
        else CHECK(p.to_vector<double>() == before[n].to_vector<double>());
      }
    }
  }
}

TEST_CASE("inside disable_adapter() the output is the untrained model's", "[lora]") {
  for (auto& [name, cfg] : mlp_configs(LoraInit::Default)) {
    DYNAMIC_SECTION(name) {
      auto base = mlp();
      Tensor untrained = eval_out(*base);
      auto pm = get_peft_model(base, cfg);
      CHECK(allclose(eval_out(*pm), untrained, 1e-8, 1e-5));
      sgd_steps(*pm, 0.01, 3, /*nll=*/true);
      Tensor trained = eval_out(*pm);
      CHECK_FALSE(allclose(trained, untrained, 1e-8, 1e-8));
      {
        auto off = pm->disable_adapter();
        CHECK(allclose(eval_out(*pm), untrained, 1e-8, 1e-5));
      }
      CHECK(allclose(eval_out(*pm), trained, 1e-8, 1e-5));
    }
  }
}

TEST_CASE("only adapter parameters require grad and receive gradients", "[lora]") {
  for (auto& [name, cfg] : mlp_configs(LoraInit::Random)) {
    DYNAMIC_SECTION(name) {
      auto pm = get_peft_model(mlp(), cfg);
      std::set<std::string> trainable;
      for (auto& [n, p] : pm->named_parameters())
        if (p.requires_grad()) trainable.insert(n);
      CHECK_FALSE(trainable.empty());
      for (const auto& n : trainable) CHECK(is_adapter_param(n));
      pm->train();
      sum(pm->forward(X())).backward();
      for (auto& [n, p] : pm->named_parameters()) {
        INFO(n);
        CHECK(p.grad().defined() == (trainable.count(n) == 1));
        if (name.find("modules_to_save") != std::string::npos && n.find("original_module") != std::string::npos)
          CHECK_FALSE(p.requires_grad());
      }
    }
  }
}

TEST_CASE("print_trainable_parameters of the seed MLP prints PEFT's line", "[lora]") {
  LoraConfig cfg;
  cfg.target_modules = {"seq.0", "seq.2"};
  cfg.modules_to_save = std::vector<std::string>{"seq.4"};
  auto pm = get_peft_model(std::make_shared<samples::MLP>(), cfg);
  std::ostringstream os;
  pm->print_trainable_parameters(os);
  CHECK(os.str() == "trainable params: 52,162 || all params: 4,100,164 || trainable%: 1.2722\n");
  CHECK(pm->get_nb_trainable_parameters() == std::pair<int64_t, int64_t>{52162, 4100164});
  CHECK(pm->targeted_module_names() == std::vector<std::string>{"seq.0", "seq.2"});
}

TEST_CASE("targeted_module_names lists adapted modules in model order, once", "[lora]") {
  LoraConfig cfg;
  cfg.target_modules = {"lin1", "lin0"};
  auto pm = get_peft_model(mlp(), cfg);
  CHECK(pm->targeted_module_names() == std::vector<std::string>{"lin0", "lin1"});
  LoraConfig other;
  other.target_modules = {"lin1"};
  pm->add_adapter("other", other);
  CHECK(pm->targeted_module_names() == std::vector<std::string>{"lin0", "lin1"});
  LoraConfig re;
  re.target_modules = Regex{R"(lin\d)"};
  CHECK(get_peft_model(mlp(), re)->targeted_module_names() == std::vector<std::string>{"lin0", "lin1"});
}

TEST_CASE("add_adapter, set_adapter, active_adapters and delete_adapter", "[lora]") {
  LoraConfig cfg;
  cfg.target_modules = {"lin0"};
  cfg.init_lora_weights = LoraInit::Random;
  auto pm = get_peft_model(mlp(), cfg);
  Tensor out_default = eval_out(*pm);
  CHECK(pm->active_adapters() == std::vector<std::string>{"default"});
  LoraConfig other = cfg;
  other.target_modules = {"lin0", "lin1"};
  pm->add_adapter("other", other);
  CHECK(pm->active_adapters() == std::vector<std::string>{"default"});  // a new adapter is not active
  CHECK(allclose(eval_out(*pm), out_default, 0, 0));
  for (auto& [n, p] : pm->named_parameters())
    if (n.find(".other.") != std::string::npos) CHECK_FALSE(p.requires_grad());

  pm->set_adapter("other");
  CHECK(pm->active_adapters() == std::vector<std::string>{"other"});
  CHECK(pm->active_adapter() == "other");
  Tensor out_other = eval_out(*pm);
  CHECK_FALSE(allclose(out_other, out_default, 1e-6, 1e-6));
  for (auto& [n, p] : pm->named_parameters()) {
    INFO(n);
    if (n.find(".other.") != std::string::npos) CHECK(p.requires_grad());
    if (n.find(".default.") != std::string::npos) CHECK_FALSE(p.requires_grad());
  }
  pm->set_adapter(std::vector<std::string>{"default", "other"});
  CHECK(pm->active_adapters() == std::vector<std::string>{"default", "other"});

  pm->delete_adapter("other");  // active: the remaining active one stays
  CHECK(pm->active_adapters() == std::vector<std::string>{"default"});
  CHECK(pm->peft_config().count("other") == 0);
  for (auto& [n, p] : pm->named_parameters()) CHECK(n.find("other") == std::string::npos);
  CHECK(allclose(eval_out(*pm), out_default, 0, 0));
}

TEST_CASE("several active adapters add their LoRA outputs", "[lora]") {
  manual_seed(3);
  auto model = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Linear>(10, 6)});
  LoraConfig a;
  a.target_modules = {"0"};
  a.init_lora_weights = LoraInit::Random;
  LoraConfig b = a;
  b.r = 4;
  b.lora_alpha = 16;
  auto pm = get_peft_model(model, a, "a");
  pm->add_adapter("b", b);
  Tensor x = Tensor::randn({5, 10});
  pm->eval();
  NoGradGuard g;
  Tensor base;
  {
    auto off = pm->disable_adapter();
    base = pm->forward(x);
  }
  pm->set_adapter("a");
  Tensor ya = pm->forward(x);
  pm->set_adapter("b");
  Tensor yb = pm->forward(x);
  pm->set_adapter(std::vector<std::string>{"a", "b"});
  Tensor yab = pm->forward(x);
  CHECK(allclose(sub(yab, base), add(sub(ya, base), sub(yb, base)), 1e-5, 1e-5));
  CHECK_FALSE(allclose(ya, base, 1e-6, 1e-6));
}

TEST_CASE("bias modes: which parameters train and which are saved (PEFT's lists)", "[lora]") {
  struct Mode {
    std::string bias;
    std::set<std::string> trainable, saved;
  };
  const std::string p = "base_model.model.";
  const std::vector<Mode> modes = {
      {"none", {p + "lin0.lora_A.default.weight", p + "lin0.lora_B.default.weight"},
       {p + "lin0.lora_A.weight", p + "lin0.lora_B.weight"}},
      {"all",
       {p + "lin0.base_layer.bias", p + "lin0.lora_A.default.weight", p + "lin0.lora_B.default.weight", p + "lin1.bias"},
       {p + "lin0.lora_A.weight", p + "lin0.lora_B.weight", p + "lin0.base_layer.bias", p + "lin1.bias"}},
      {"lora_only", {p + "lin0.base_layer.bias", p + "lin0.lora_A.default.weight", p + "lin0.lora_B.default.weight"},
       {p + "lin0.lora_A.weight", p + "lin0.lora_B.weight", p + "lin0.base_layer.bias"}},
  };
  for (const auto& m : modes) {
    DYNAMIC_SECTION("bias " << m.bias) {
      LoraConfig cfg;
      cfg.target_modules = {"lin0"};
      cfg.bias = m.bias;
      auto pm = get_peft_model(mlp(), cfg);
      std::set<std::string> trainable, saved;
      for (auto& [n, t] : pm->named_parameters())
        if (t.requires_grad()) trainable.insert(n);
      for (auto& [k, t] : get_peft_model_state_dict(*pm->model(), cfg, "default", p)) saved.insert(k);
      CHECK(trainable == m.trainable);
      CHECK(saved == m.saved);
      // A trained bias travels with the adapter.
      sgd_steps(*pm, 0.5, 1, /*nll=*/false);
      Tensor out = eval_out(*pm);
      const std::string dir = scratch_dir("bias_" + m.bias);
      pm->save_pretrained(dir);
      auto loaded = PeftModel::from_pretrained(mlp(), dir);
      CHECK(allclose(eval_out(*loaded), out, 1e-6, 1e-6));
      fs::remove_all(dir);
    }
  }
}

TEST_CASE("inject_adapter_in_model adapts the model in place and saves keys without the prefix", "[lora]") {
  LoraConfig cfg;
  cfg.target_modules = {"lin0"};
  cfg.modules_to_save = std::vector<std::string>{"lin1"};
  cfg.init_lora_weights = LoraInit::Random;
  auto model = mlp();
  nn::ModulePtr same = inject_adapter_in_model(cfg, model);
  CHECK(same == model);
  CHECK(dynamic_cast<LoraLayer*>(model->child("lin0").get()) != nullptr);
  CHECK(dynamic_cast<ModulesToSaveWrapper*>(model->child("lin1").get()) != nullptr);
  for (auto& [n, t] : model->named_parameters()) CHECK(t.requires_grad() == is_adapter_param(n));
  Tensor out = eval_out(*model);

  NamedTensors sd = get_peft_model_state_dict(*model, cfg, "default", "");
  std::set<std::string> keys;
  for (auto& [k, t] : sd) keys.insert(k);
  CHECK(keys == std::set<std::string>{"lin0.lora_A.weight", "lin0.lora_B.weight", "lin1.weight", "lin1.bias"});

  // Loading accepts the keys without and with the "base_model.model." prefix.
  NamedTensors prefixed;
  for (auto& [k, t] : sd) prefixed.emplace_back("base_model.model." + k, t);
  for (const NamedTensors* state : {&sd, &prefixed}) {
    auto fresh_base = mlp();  // the same base weights as `model`
    manual_seed(99);          // other LoRA initial values
    auto fresh = inject_adapter_in_model(cfg, fresh_base);
    CHECK_FALSE(allclose(eval_out(*fresh), out, 1e-6, 1e-6));
    AdapterLoadResult r = set_peft_model_state_dict(*fresh, *state, "default");
    CHECK(r.missing_keys.empty());
    CHECK(r.unexpected_keys.empty());
    CHECK(allclose(eval_out(*fresh), out, 1e-6, 1e-6));
  }
}

TEST_CASE("every built-in LoRA layer type adapts a module of that type", "[lora]") {
  for (const auto& entry : builtin_lora_layers()) {
    DYNAMIC_SECTION(entry.base_type) {
      nn::ModulePtr layer;
      Tensor x;
      manual_seed(11);
      if (entry.base_type == "Linear") {
        layer = std::make_shared<nn::Linear>(10, 20);
        x = Tensor::randn({9, 10});
      } else if (entry.base_type == "Embedding") {
        layer = std::make_shared<nn::Embedding>(100, 5);
        x = Tensor::arange(90, DType::I64).reshape({9, 10});
      } else if (entry.base_type == "Conv2d") {
        layer = std::make_shared<nn::Conv2d>(5, 10, 3);
        x = Tensor::randn({2, 5, 3, 3});
      } else {
        WARN("no test instance for built-in LoRA type " << entry.base_type);
        continue;
      }
      CHECK(entry.matches(*layer));
      auto model = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{layer});
      Tensor base_out = eval_out_of(*model, x);
      LoraConfig cfg;
      cfg.target_modules = {"0"};
      cfg.init_lora_weights = LoraInit::Random;
      auto pm = get_peft_model(model, cfg);
      auto lora = std::dynamic_pointer_cast<LoraLayer>(model->child("0"));
      REQUIRE(lora != nullptr);
      CHECK(lora->base_layer() == layer);
      CHECK(pm->targeted_module_names() == std::vector<std::string>{"0"});
      Tensor adapted = eval_out_of(*pm, x);
      CHECK_FALSE(allclose(adapted, base_out, 1e-6, 1e-6));
      CHECK(allclose(eval_out_of(*pm->merge_and_unload(), x), adapted, 1e-4, 1e-4));
    }
  }
  std::set<std::string> types;
  for (const auto& e : builtin_lora_layers()) types.insert(e.base_type);
  for (const char* t : {"Linear", "Embedding", "Conv2d"})
    if (!types.count(t)) WARN("built-in LoRA type " << t << " is not registered yet");
}
