// The samples: their model definitions against timm and PEFT (golden files written by
// tests/golden/golden_poolformer.py with timm 1.0.31 / peft 0.21.2), the custom LoRA LSTM and
// the injected DummyModel through the headers the samples include, and the sample programs
// themselves (printed numbers, `infer` on PyTorch-made files). The programs are looked up in
// ../samples next to this test's own binary (build/tests → build/samples); a program that is not
// built is reported with a warning and its checks are skipped.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "program_runner.h"
#include "custom_lstm/my_lora_lstm.h"
#include "inject_dummy/dummy_model.h"
#include "poolformer_lora/poolformer_lora.h"

using namespace peft;
namespace fs = std::filesystem;
using peft::testing::run;
using peft::testing::RunResult;
using peft::testing::sample_binary;

namespace {

const std::string kGolden = std::string(PEFT_GOLDEN_DIR) + "/samples";

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return max(abs(sub(a, b))).item();
}

nlohmann::json m36_golden() {
  std::ifstream f(kGolden + "/poolformer_m36_modules.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

// A fresh empty directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("peft-test-samples-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream is(text);
  for (std::string l; std::getline(is, l);)
    if (l == line) return true;
  return false;
}

// A 2-layer LSTM regressor like the custom_lstm sample's.
class SeqModel : public nn::Module {
 public:
  SeqModel() {
    register_module("lstm", std::make_shared<nn::LSTM>(3, 5, 2, true, true));
    register_module("head", std::make_shared<nn::Linear>(5, 1));
  }
  std::string type_name() const override { return "SeqModel"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = child("lstm")->forward(x);
    return child("head")->forward(h.select(1, h.size(1) - 1));
  }
};

LoraConfig lstm_config() {
  LoraConfig c;
  c.r = 2;
  c.lora_alpha = 4;
  c.target_modules = {"lstm"};
  return c;
}

}  // namespace

// ---------------------------------------------------------------- PoolFormer vs timm

TEST_CASE("PoolFormer-M36 has timm's module names, types and state_dict keys in timm's order",
          "[samples][poolformer]") {
  const nlohmann::json g = m36_golden();
  auto model = samples::poolformer_m36(3);
  auto mods = model->named_modules();
  const auto& want = g["named_modules"];
  REQUIRE(mods.size() == want.size());
  for (size_t i = 0; i < mods.size(); ++i) {
    const std::string name = want[i][0], type = want[i][1];
    INFO("module " << i << ": " << name);
    CHECK(mods[i].first == name);
    // head.drop: Identity in the seed's timm (PoolFormer v1 has no MLP head), Dropout(p=0.0) in
    // timm 1.0.31; both compute the identity and hold no parameters.
    if (name == "head.drop") CHECK((type == "Identity" || type == "Dropout"));
    else CHECK(mods[i].second->type_name() == type);
  }
  auto sd = model->state_dict();
  const auto& want_sd = g["state_dict"];
  REQUIRE(sd.size() == want_sd.size());
  int64_t n = 0;
  for (size_t i = 0; i < sd.size(); ++i) {
    INFO("state_dict key " << i);
    CHECK(sd[i].first == want_sd[i][0].get<std::string>());
    CHECK(sd[i].second.shape() == want_sd[i][1].get<Shape>());
  }
  for (const auto& p : model->parameters()) n += p.numel();
  CHECK(n == g["num_parameters"].get<int64_t>());
  CHECK(n == 55405827);
}

TEST_CASE("PoolFormer-M36 with the seed's LoraConfig counts and targets as PEFT does", "[samples][poolformer]") {
  const nlohmann::json g = m36_golden();
  auto pm = get_peft_model(samples::poolformer_m36(3), samples::poolformer_lora_config());
  std::ostringstream os;
  pm->print_trainable_parameters(os);
  CHECK(os.str() == g["peft"]["print_trainable_parameters"].get<std::string>() + "\n");
  CHECK(os.str() == "trainable params: 1,062,147 || all params: 56,467,974 || trainable%: 1.8810\n");
  CHECK(pm->targeted_module_names() == g["peft"]["targeted_module_names"].get<std::vector<std::string>>());
}

TEST_CASE("a timm PoolFormer state dict loads by name and computes timm's output", "[samples][poolformer]") {
  const auto io = io::load_file(kGolden + "/poolformer_tiny_io.safetensors");
  const Tensor& x = io::find_tensor(io, "x");
  auto model = samples::load_poolformer(kGolden + "/poolformer_tiny.safetensors");
  const samples::PoolFormerConfig& c = model->config();
  CHECK(c.depths == std::vector<int64_t>{1, 1, 2, 1});
  CHECK(c.dims == std::vector<int64_t>{8, 16, 24, 32});
  CHECK(c.num_classes == 3);
  model->eval();
  NoGradGuard g;
  CHECK(max_abs_diff(model->forward(x), io::find_tensor(io, "y")) < 1e-5);
}

TEST_CASE("a PEFT-written LoRA adapter for PoolFormer gives PEFT's output", "[samples][poolformer][peft]") {
  const auto io = io::load_file(kGolden + "/poolformer_tiny_io.safetensors");
  Tensor y = samples::poolformer_infer(kGolden + "/poolformer_tiny.safetensors", kGolden + "/poolformer_tiny_adapter",
                                       io::find_tensor(io, "x"));
  CHECK(max_abs_diff(y, io::find_tensor(io, "y_lora")) < 1e-5);
  CHECK(max_abs_diff(y, io::find_tensor(io, "y")) > 0.1);  // the adapter really changes the output
}

// ---------------------------------------------------------------- inject_dummy

TEST_CASE("inject_adapter_in_model adapts the README's DummyModel in place", "[samples][inject]") {
  manual_seed(0);
  auto model = std::make_shared<samples::DummyModel>();
  Tensor ids = samples::dummy_inputs();
  Tensor before;
  {
    NoGradGuard g;
    before = model->forward(ids);
  }
  nn::ModulePtr adapted = inject_adapter_in_model(samples::dummy_lora_config(), model);
  CHECK(adapted.get() == model.get());  // no wrapper
  CHECK(model->child("linear")->type_name() == "lora.Linear");
  std::set<std::string> trainable;
  for (auto& [n, p] : model->named_parameters())
    if (p.requires_grad()) trainable.insert(n);
  CHECK(trainable == std::set<std::string>{"linear.lora_A.default.weight", "linear.lora_B.default.weight"});
  CHECK(model->get_submodule("linear.lora_A.default")->param("weight").shape() == Shape{64, 10});
  model->eval();
  NoGradGuard g;
  Tensor out = model->forward(ids);
  CHECK(out.shape() == Shape{1, 8, 10});
  CHECK(max_abs_diff(out, before) == 0.0);  // lora_B starts at zero
}

// ---------------------------------------------------------------- custom LoRA LSTM

TEST_CASE("an LSTM target needs a registered LoRA layer; the error names the supported types", "[samples][lstm]") {
  auto model = std::make_shared<SeqModel>();
  try {
    get_peft_model(model, lstm_config());
    FAIL("an LSTM target was accepted without a registration");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("Target module LSTM(3, 5, num_layers=2, batch_first=True) is not supported") != std::string::npos);
    CHECK(msg.find("`Linear`") != std::string::npos);
  }
  CHECK(model->child("lstm")->type_name() == "LSTM");
  for (auto& p : model->parameters()) CHECK(p.requires_grad());
}

TEST_CASE("MyLoraLSTM: base output at init, gradients only on lora_*, merge equals forward", "[samples][lstm]") {
  manual_seed(3);
  auto model = std::make_shared<SeqModel>();
  Generator gen(5);
  Tensor x = Tensor::randn({4, 6, 3}, DType::F32, &gen);
  Tensor base_out = model->forward(x).detach();
  LoraConfig cfg = lstm_config();
  cfg.register_custom_module<nn::LSTM, samples::MyLoraLSTM>();
  auto pm = get_peft_model(model, cfg);
  CHECK(pm->targeted_module_names() == std::vector<std::string>{"lstm"});
  CHECK(max_abs_diff(pm->forward(x), base_out) < 1e-7);  // B = 0

  // Trainable: lora_A and lora_B for weight_ih / weight_hh of both layers.
  std::set<std::string> trainable;
  for (auto& [n, p] : pm->named_parameters())
    if (p.requires_grad()) trainable.insert(n);
  CHECK(trainable.size() == 8);
  CHECK(trainable.count("base_model.model.lstm.lora_A.default.weight_ih_l0") == 1);
  CHECK(trainable.count("base_model.model.lstm.lora_B.default.weight_hh_l1") == 1);

  // A few SGD steps move only the adapter.
  optim::SGD opt(pm->trainable_parameters(), {0.5});
  Tensor target = Tensor::randn({4, 1}, DType::F32, &gen);
  std::vector<std::pair<std::string, Tensor>> before;
  for (auto& [k, t] : pm->state_dict()) before.emplace_back(k, t.detach().clone());
  for (int i = 0; i < 3; ++i) {
    Tensor loss = mse_loss(pm->forward(x), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  auto after = pm->state_dict();
  for (size_t i = 0; i < before.size(); ++i) {
    const bool changed = max_abs_diff(before[i].second, after[i].second) > 0;
    INFO(before[i].first);
    CHECK(changed == (before[i].first.find("lora_B") != std::string::npos ||
                      before[i].first.find("lora_A") != std::string::npos));
  }

  pm->eval();
  NoGradGuard g;
  Tensor adapted = pm->forward(x);
  CHECK(max_abs_diff(adapted, base_out) > 1e-4);
  {
    auto off = pm->disable_adapter();
    CHECK(max_abs_diff(pm->forward(x), base_out) < 1e-7);
  }
  pm->merge_adapter();
  auto lora = std::dynamic_pointer_cast<samples::MyLoraLSTM>(pm->model()->child("lstm"));
  REQUIRE(lora);
  CHECK(lora->merged_adapters() == std::vector<std::string>{"default"});
  CHECK(lora->merged());
  CHECK(max_abs_diff(pm->forward(x), adapted) < 1e-5);
  pm->unmerge_adapter();
  CHECK(max_abs_diff(pm->forward(x), adapted) < 1e-5);
  nn::ModulePtr plain = pm->merge_and_unload();
  CHECK(plain->child("lstm")->type_name() == "LSTM");
  CHECK(max_abs_diff(plain->forward(x), adapted) < 1e-5);
}

TEST_CASE("MyLoraLSTM adapters save and load with the registration repeated on the loaded config", "[samples][lstm]") {
  TempDir dir("lstm");
  manual_seed(4);
  auto base = std::make_shared<SeqModel>();
  auto base_sd = base->state_dict();
  std::vector<std::pair<std::string, Tensor>> base_copy;
  for (auto& [k, t] : base_sd) base_copy.emplace_back(k, t.clone().detach());
  LoraConfig cfg = lstm_config();
  cfg.init_lora_weights = LoraInit::Random;  // a non-trivial adapter without training
  cfg.register_custom_module<nn::LSTM, samples::MyLoraLSTM>();
  auto pm = get_peft_model(base, cfg);
  pm->save_pretrained(dir.path.string());

  const auto saved = io::load_file(dir / "adapter_model.safetensors");
  std::set<std::string> keys;
  for (auto& [k, t] : saved) keys.insert(k);
  CHECK(keys.count("base_model.model.lstm.lora_A.weight_ih_l0") == 1);
  CHECK(keys.count("base_model.model.lstm.lora_B.weight_hh_l1") == 1);
  CHECK(keys.size() == 8);

  auto fresh = std::make_shared<SeqModel>();
  fresh->load_state_dict(base_copy);
  LoraConfig loaded = LoraConfig::from_pretrained(dir.path.string());
  CHECK(loaded.custom_modules().empty());  // registrations are not saved
  loaded.register_custom_module<nn::LSTM, samples::MyLoraLSTM>();
  auto reloaded = PeftModel::from_pretrained(fresh, dir.path.string(), loaded);
  Tensor x = Tensor::randn({2, 7, 3});
  pm->eval();
  NoGradGuard g;
  CHECK(max_abs_diff(reloaded->forward(x), pm->forward(x)) < 1e-6);
}

// ---------------------------------------------------------------- the programs

TEST_CASE("mlp_lora prints PEFT's parameter count and infers from PyTorch / PEFT files", "[samples][mlp]") {
  const std::string bin = sample_binary("mlp_lora");
  if (bin.empty()) return;
  TempDir dir("mlp");
  RunResult r = run(bin + " --epochs 1 --out " + dir.path.string());
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(has_line(r.output, "trainable params: 52,162 || all params: 4,100,164 || trainable%: 1.2722"));

  const std::string golden = PEFT_GOLDEN_DIR;
  r = run(bin + " infer --weights " + golden + "/mlp_state_dict.safetensors --input " + golden +
          "/mlp_state_dict_io.safetensors --out " + (dir / "y.safetensors"));
  REQUIRE(r.status == 0);
  CHECK(max_abs_diff(io::find_tensor(io::load_file(dir / "y.safetensors"), "y"),
                     io::find_tensor(io::load_file(golden + "/mlp_state_dict_io.safetensors"), "out")) < 1e-5);

  r = run(bin + " infer --weights " + golden + "/mlp_state_dict.safetensors --adapter " + kGolden +
          "/mlp_adapter --input " + kGolden + "/mlp_adapter_io.safetensors --out " + (dir / "y_lora.safetensors"));
  REQUIRE(r.status == 0);
  CHECK(max_abs_diff(io::find_tensor(io::load_file(dir / "y_lora.safetensors"), "y"),
                     io::find_tensor(io::load_file(kGolden + "/mlp_adapter_io.safetensors"), "y")) < 1e-5);

  r = run(bin + " infer --weights " + golden + "/mlp_state_dict.safetensors");
  CHECK(r.status == 2);  // usage
}

TEST_CASE("poolformer_lora prints the seed's modules and PEFT's count, trains, and infers", "[samples][poolformer]") {
  const std::string bin = sample_binary("poolformer_lora");
  if (bin.empty()) return;
  RunResult r = run(bin + " --image-size 32");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(has_line(r.output, "[('', MetaFormer),"));
  CHECK(has_line(r.output, " ('stages.0.blocks.0.mlp.fc1', Conv2d),"));
  CHECK(has_line(r.output, " ('head.fc', Linear)]"));
  CHECK(has_line(r.output, "trainable params: 1,062,147 || all params: 56,467,974 || trainable%: 1.8810"));
  CHECK(r.output.find("['stages.0.blocks.0.mlp.fc1', 'stages.0.blocks.0.mlp.fc2', ") != std::string::npos);
  CHECK(r.output.find("loss ") != std::string::npos);

  TempDir dir("poolformer");
  const std::string io_file = kGolden + "/poolformer_tiny_io.safetensors";
  const auto io = io::load_file(io_file);
  r = run(bin + " infer --weights " + kGolden + "/poolformer_tiny.safetensors --adapter " + kGolden +
          "/poolformer_tiny_adapter --input " + io_file + " --out " + (dir / "y.safetensors"));
  REQUIRE(r.status == 0);
  CHECK(max_abs_diff(io::find_tensor(io::load_file(dir / "y.safetensors"), "y"), io::find_tensor(io, "y_lora")) < 1e-5);
}

TEST_CASE("the samples' --device and --profile flags: a profiled epoch / step, a clear error for a missing GPU",
          "[samples][profiler]") {
  const std::string mlp = sample_binary("mlp_lora"), pool = sample_binary("poolformer_lora");
  if (mlp.empty() || pool.empty()) return;
  TempDir dir("flags");
  RunResult r = run(mlp + " --epochs 2 --device cpu --out " + dir.path.string() + " --profile " + (dir / "mlp.json"));
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("ms/step on cpu") != std::string::npos);
  CHECK(r.output.find("lora_linear") != std::string::npos);  // the op table
  CHECK(r.output.find("profile of epoch 1: Chrome trace written to") != std::string::npos);
  CHECK(std::filesystem::file_size(dir / "mlp.json") > 100);
  r = run(pool + " --image-size 32 --steps 2 --profile " + (dir / "pool.json"));
  CHECK(r.status == 0);
  CHECK(r.output.find("profile of step 1") != std::string::npos);
  CHECK(r.output.find("group_norm") != std::string::npos);
  CHECK(std::filesystem::exists(dir / "pool.json"));
  if (cuda_device_count() == 0) {  // no GPU here: refused up front, with the reason
    r = run(mlp + " --epochs 1 --device cuda --out " + dir.path.string());
    CHECK(r.status == 1);
    CHECK(r.output.find("--device cuda:0: this machine has 0 CUDA device(s)") != std::string::npos);
    r = run(pool + " --device cuda:1");
    CHECK(r.status == 1);
    CHECK(r.output.find("--device cuda:1") != std::string::npos);
  }
  r = run(pool + " --steps 0");
  CHECK(r.status == 1);
  CHECK(r.output.find("--steps must be >= 1") != std::string::npos);
}

TEST_CASE("inject_dummy and custom_lstm run to completion", "[samples][inject][lstm]") {
  const std::string inject = sample_binary("inject_dummy");
  if (!inject.empty()) {
    RunResult r = run(inject);
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(has_line(r.output, "  (linear): lora.Linear("));
    CHECK(has_line(r.output, "dummy_outputs.shape = [1, 8, 10]"));
  }
  const std::string lstm = sample_binary("custom_lstm");
  if (!lstm.empty()) {
    TempDir dir("custom-lstm");
    RunResult r = run(lstm + " --steps 5 --out " + dir.path.string());
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(r.output.find("is not supported. Currently, only the following modules are supported:") != std::string::npos);
    CHECK(has_line(r.output, "trainable params: 1,249 || all params: 4,850 || trainable%: 25.7526"));
    CHECK(has_line(r.output, "outputs equal"));
  }
}
