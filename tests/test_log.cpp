// The library's log callback: library warnings reach the callback and nothing else; nullptr
// restores the default, which writes "warning: ..." lines to stderr.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

#include "peft.h"

namespace fs = std::filesystem;
using namespace peft;
using Catch::Matchers::Contains;

namespace {

class MLP : public nn::Module {
 public:
  MLP() {
    register_module("lin0", std::make_shared<nn::Linear>(10, 20));
    register_module("lin1", std::make_shared<nn::Linear>(20, 2));
  }
  std::string type_name() const override { return "MLP"; }
  Tensor forward(const Tensor& x) override { return child("lin1")->forward(child("lin0")->forward(x)); }
};

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Redirects the stderr file descriptor into a file for its lifetime; text() reads what came.
class CaptureStderr {
 public:
  CaptureStderr() : path_((fs::temp_directory_path() / ("peft_log_stderr_" + std::to_string(::getpid()))).string()) {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    std::FILE* f = std::fopen(path_.c_str(), "w");
    ::dup2(::fileno(f), STDERR_FILENO);
    std::fclose(f);
  }
  ~CaptureStderr() {
    restore();
    fs::remove(path_);
  }
  std::string text() {
    restore();
    return read_text(path_);
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  std::string path_;
  int saved_ = -1;
};

// Restores the default callback even when a check fails.
struct ResetLogCallback {
  ~ResetLogCallback() { set_log_callback(nullptr); }
};

}  // namespace

TEST_CASE("a log callback receives the unknown-config-key warning and nothing reaches stderr", "[log]") {
  ResetLogCallback reset;
  const fs::path dir = fs::temp_directory_path() / ("peft_log_unknown_keys_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  manual_seed(0);
  LoraConfig cfg;
  cfg.target_modules = {"lin0"};
  get_peft_model(std::make_shared<MLP>(), cfg)->save_pretrained(dir.string());
  const std::string cfg_path = (dir / "adapter_config.json").string();
  std::string json = read_text(cfg_path);
  {
    std::ofstream f(cfg_path, std::ios::binary | std::ios::trunc);
    f << "{\n  \"foo_new\": 1," << json.substr(1);
  }

  std::vector<std::pair<LogLevel, std::string>> got;
  set_log_callback([&](LogLevel level, const std::string& msg) { got.emplace_back(level, msg); });
  std::string err;
  {
    CaptureStderr capture;
    CHECK_NOTHROW(PeftModel::from_pretrained(std::make_shared<MLP>(), dir.string()));
    err = capture.text();
  }
  REQUIRE(got.size() == 1);
  CHECK(got[0].first == LogLevel::Warning);
  CHECK_THAT(got[0].second, Contains("Unexpected keyword arguments ['foo_new'] for class LoraConfig"));
  CHECK(err.empty());

  // With a warnings list the caller gets the warning and the callback does not.
  got.clear();
  std::vector<std::string> warnings;
  PeftModel::from_pretrained(std::make_shared<MLP>(), dir.string(), std::nullopt, "default", false, &warnings);
  CHECK(warnings.size() == 1);
  CHECK(got.empty());
  fs::remove_all(dir);
}

TEST_CASE("set_log_callback(nullptr) restores the default stderr lines", "[log]") {
  ResetLogCallback reset;
  int calls = 0;
  set_log_callback([&](LogLevel, const std::string&) { ++calls; });
  log_warning("to the callback");
  CHECK(calls == 1);
  set_log_callback(nullptr);
  std::string err;
  {
    CaptureStderr capture;
    log_warning("to stderr");
    log(LogLevel::Error, "an error line");
    err = capture.text();
  }
  CHECK(calls == 1);
  CHECK(err == "warning: to stderr\nerror: an error line\n");
}
