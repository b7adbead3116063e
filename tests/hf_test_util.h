// Shared by the transformers-model tests (test_hf_models.cpp, test_hf_generate.cpp): the golden
// checkpoints written by tests/golden/golden_hf.py and how their logits are compared.
#pragma once
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "peft.h"

namespace hf_test {

using namespace peft;
namespace fs = std::filesystem;

inline const char* const kCases[] = {"llama_gqa", "llama3_rope_tied", "mistral", "qwen2", "opt", "opt_350m_style"};

inline std::string case_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/hf/" + name; }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

inline Tensor io_tensor(const std::string& name, const std::string& key) {
  return io::find_tensor(io::load_file(case_dir(name) + "/io.safetensors"), key);
}

// |got − want| ≤ 1e-5 + 1e-4·|want| at every (b, t) whose attention_mask is 1 (padded positions
// attend to nothing; their logits mean nothing in either library).
inline void expect_logits(const Tensor& got, const Tensor& want, const Tensor& mask, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  const int64_t B = want.size(0), T = want.size(1), V = want.size(2);
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  const auto m = mask.defined() ? mask.to_vector<int64_t>() : std::vector<int64_t>(static_cast<size_t>(B * T), 1);
  size_t bad = 0;
  double worst = 0;
  for (int64_t bt = 0; bt < B * T; ++bt) {
    if (!m[static_cast<size_t>(bt)]) continue;
    for (int64_t v = 0; v < V; ++v) {
      const size_t i = static_cast<size_t>(bt * V + v);
      const double d = std::abs(g[i] - w[i]);
      worst = std::max(worst, d);
      bad += !(d <= 1e-5 + 1e-4 * std::abs(w[i]));
    }
  }
  INFO("max abs diff " << worst);
  CHECK(bad == 0);
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag)
      : path(fs::temp_directory_path() / ("peft_hf_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

inline LoraConfig golden_lora_config() {
  LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8;
  cfg.task_type = "CAUSAL_LM";
  return cfg;
}


}  // namespace hf_test
