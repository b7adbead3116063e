// peft::profiler (core/profiler.h): ops and backward nodes are recorded with their module paths,
// aggregated like torch.profiler's key_averages (calls, inclusive and self host times), printed as
// a table and exported as a Chrome trace that parses; nothing is recorded outside a profile;
// misuse (stop without start, a second start, an unknown sort key) throws. The CUDA times are
// checked on a GPU (skipped without one).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cuda_kernel_util.h"
#include "models/mlp.h"
#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

// One forward + backward of the seed MLP (hidden 16) with LoRA on seq.0 and seq.2, batch 8.
void mlp_step(Device dev = Device::cpu()) {
  manual_seed(1);
  auto mlp = std::make_shared<samples::MLP>(16);
  mlp->to(dev);
  LoraConfig cfg;
  cfg.r = 2;
  cfg.target_modules = ModuleSelector{"seq.0", "seq.2"};
  auto pm = get_peft_model(mlp, cfg);
  Tensor x = Tensor::rand({8, 20}).to(dev);
  Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 1, 0, 1, 1, 0, 1, 0}, {8}).to(dev);
  nll_loss(pm->forward(x), y).backward();
}

const profiler::OpStats* find(const std::vector<profiler::OpStats>& v, const std::string& name,
                              const std::string& module = "") {
  for (const auto& s : v)
    if (s.name == name && (module.empty() || s.module == module)) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE("the profiler records ops and backward nodes with module paths", "[profiler]") {
  {
    profiler::Profile prof;
    mlp_step();
  }
  const auto ops = profiler::key_averages();
  // lora_linear for the two adapted layers, linear for seq.4; their backward nodes.
  const auto* ll = find(ops, "lora_linear");
  REQUIRE(ll != nullptr);
  CHECK(ll->calls == 2);
  const auto* lin = find(ops, "linear");
  REQUIRE(lin != nullptr);
  CHECK(lin->calls == 1);
  REQUIRE(find(ops, "LoraLinearBackward") != nullptr);
  CHECK(find(ops, "LoraLinearBackward")->calls == 2);
  REQUIRE(find(ops, "nll_loss") != nullptr);
  for (const auto& s : ops) {
    INFO(s.name);
    CHECK(s.host_self_us <= s.host_total_us + 1e-9);
    CHECK(s.host_total_us >= 0);
    CHECK(s.cuda_total_us == 0);  // CPU only
  }
  // By module: each adapted layer's path, forward and backward alike.
  const auto by_module = profiler::key_averages(true);
  CHECK(find(by_module, "lora_linear", "seq.0 (lora.Linear)") != nullptr);
  CHECK(find(by_module, "lora_linear", "seq.2 (lora.Linear)") != nullptr);
  CHECK(find(by_module, "LoraLinearBackward", "seq.2 (lora.Linear)") != nullptr);
  CHECK(find(by_module, "linear", "seq.4 (Linear)") != nullptr);
  // Sorted by the key asked for.
  const auto by_calls = profiler::key_averages(false, "calls");
  for (size_t i = 1; i < by_calls.size(); ++i) CHECK(by_calls[i - 1].calls >= by_calls[i].calls);
  const std::string table = profiler::key_averages_table(true, "host_total", 10);
  CHECK_THAT(table, Contains("Host total") && Contains("lora_linear") && Contains("Self time totals"));
}

TEST_CASE("self time excludes nested ops; events nest by depth", "[profiler]") {
  profiler::Profile prof;
  {
    profiler::RecordFunction outer("outer_op", Device::cpu());
    Tensor a = Tensor::rand({64, 64});
    for (int i = 0; i < 3; ++i) a = matmul(a, a);  // nested "matmul" records
  }
  prof.stop();
  const auto& evs = profiler::events();
  const profiler::Event* outer = nullptr;
  double nested = 0;
  int inner_calls = 0;
  for (const auto& e : evs) {
    if (e.name == "outer_op") outer = &e;
    if (e.name == "matmul") {
      CHECK(e.depth == 1);
      nested += e.host_us;
      ++inner_calls;
    }
  }
  REQUIRE(outer != nullptr);
  CHECK(outer->depth == 0);
  CHECK(inner_calls == 3);
  CHECK(outer->host_self_us == Approx(outer->host_us - nested).margin(1e-6));
}

TEST_CASE("the Chrome trace parses and holds one complete event per op", "[profiler]") {
  {
    profiler::Profile prof;
    mlp_step();
  }
  const auto dir = std::filesystem::temp_directory_path() / "peft_profiler_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "trace.json").string();
  profiler::export_chrome_trace(path);
  std::ifstream f(path);
  const nlohmann::json doc = nlohmann::json::parse(f);
  REQUIRE(doc.contains("traceEvents"));
  size_t complete = 0;
  std::map<std::string, int> names;
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] != "X") continue;
    ++complete;
    CHECK(e["dur"].get<double>() >= 0);
    CHECK(e["ts"].get<double>() >= 0);
    names[e["name"].get<std::string>()]++;
  }
  CHECK(complete == profiler::events().size());
  CHECK(names["lora_linear"] == 2);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  // A directory that does not exist: an error, nothing written.
  CHECK_THROWS_WITH(profiler::export_chrome_trace((dir / "no_such_dir" / "t.json").string()),
                    Contains("cannot open"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("nothing is recorded outside a profile; misuse throws", "[profiler]") {
  { profiler::Profile prof; }
  CHECK(profiler::events().empty());
  CHECK_FALSE(profiler::is_enabled());
  mlp_step();  // not profiled
  CHECK(profiler::events().empty());
  CHECK_THROWS_WITH(profiler::stop(), Contains("no profile is running"));
  profiler::start();
  CHECK_THROWS_WITH(profiler::start(), Contains("already running"));
  profiler::stop();
  CHECK_THROWS_WITH(profiler::key_averages(false, "speed"), Contains("sort_by"));
}

TEST_CASE("on CUDA every op gets a device time from CUDA events", "[profiler][cuda][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  {
    profiler::Profile prof;
    mlp_step(Device::cuda(0));
  }
  const auto ops = profiler::key_averages();
  const auto* ll = find(ops, "lora_linear");
  REQUIRE(ll != nullptr);
  CHECK(ll->cuda_total_us > 0);
  CHECK(ll->cuda_self_us <= ll->cuda_total_us + 1e-9);
  REQUIRE(find(ops, "LoraLinearBackward") != nullptr);
  CHECK(find(ops, "LoraLinearBackward")->cuda_total_us > 0);
  for (const auto& e : profiler::events())
    if (e.device.is_cuda()) CHECK(e.cuda_start_us >= 0);
}
