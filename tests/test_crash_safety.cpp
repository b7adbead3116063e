// Crash safety of the writers: a forked child saves an adapter (PeftModel::save_pretrained) and
// a merged state dict (io::save_file) over and over into a directory that already holds a good
// version, and is SIGKILLed at random moments. Every file left must be complete, load, and be
// byte-identical to the old version or to one of the new ones; a save that finishes leaves no
// temporary file behind. Plus the fuzzers' regression inputs (tests/fuzz/regressions/), each of
// which must parse or throw a clean peft::Error.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/mlp.h"
#include "peft.h"

namespace fs = std::filesystem;
using namespace peft;

namespace {

// One directory per test process, removed when the process ends.
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("peft_crash_" + std::to_string(::getpid()));
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Version v of what gets saved: the same base MLP(64), a LoRA adapter whose weights and alpha
// depend on v (so both files change from version to version, the shapes never do), and that
// adapter merged into the base.
struct Version {
  std::shared_ptr<PeftModel> adapter;
  NamedTensors merged;
};

LoraConfig config_for(int v) {
  LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8 + v;
  cfg.target_modules = {"seq.0", "seq.2"};
  cfg.init_lora_weights = LoraInit::Random;
  return cfg;
}

std::shared_ptr<PeftModel> make_adapter(int v) {
  manual_seed(1234);
  auto base = std::make_shared<samples::MLP>(64);
  manual_seed(static_cast<uint64_t>(v) + 1);
  return get_peft_model(base, config_for(v));
}

Version make_version(int v) {
  Version out;
  out.adapter = make_adapter(v);
  out.merged = make_adapter(v)->merge_and_unload()->state_dict();
  return out;
}

const char* const kFiles[] = {"adapter_model.safetensors", "adapter_config.json", "merged.safetensors"};

void save_version(const Version& ver, const fs::path& dir) {
  ver.adapter->save_pretrained(dir.string());
  io::save_file(ver.merged, (dir / "merged.safetensors").string());
}

std::vector<fs::path> temp_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 1 && n[0] == '.' && n.find(".tmp.") != std::string::npos) out.push_back(e.path());
  }
  return out;
}

// Which version each file of `dir` holds (-1: matches none). Also loads everything the way a
// user would, which must not throw.
std::map<std::string, int> check_dir(const fs::path& dir, const std::vector<std::map<std::string, std::string>>& refs) {
  std::map<std::string, int> which;
  for (const char* f : kFiles) {
    const fs::path p = dir / f;
    REQUIRE(fs::exists(p));
    const std::string bytes = read_bytes(p);
    which[f] = -1;
    for (size_t v = 0; v < refs.size(); ++v)
      if (refs[v].at(f) == bytes) which[f] = static_cast<int>(v);
  }
  REQUIRE_NOTHROW(io::SafetensorsFile::open((dir / "adapter_model.safetensors").string()));
  REQUIRE_NOTHROW(io::SafetensorsFile::open((dir / "merged.safetensors").string()));
  REQUIRE_NOTHROW(LoraConfig::from_pretrained(dir.string()));
  manual_seed(1234);
  auto base = std::make_shared<samples::MLP>(64);
  std::vector<std::string> warnings;
  REQUIRE_NOTHROW(PeftModel::from_pretrained(base, dir.string(), std::nullopt, "default", false, &warnings));
  CHECK(warnings.empty());
  REQUIRE_NOTHROW(samples::MLP(64).load_state_dict(io::load_file((dir / "merged.safetensors").string())));
  return which;
}

// Child: saves versions 1..n-1 in turn, forever, writing one byte to `ready_fd` after each
// complete save. Never returns.
[[noreturn]] void child_loop(const std::vector<Version>& versions, const fs::path& dir, int ready_fd) {
  try {
    for (size_t i = 0;; ++i) {
      save_version(versions[1 + i % (versions.size() - 1)], dir);
      const char c = 1;
      if (::write(ready_fd, &c, 1) != 1) ::_exit(3);
    }
  } catch (...) {
    ::_exit(2);
  }
}

}  // namespace

TEST_CASE("SIGKILL during save_pretrained / save_file leaves the old or a new complete version", "[crash]") {
  Scratch scratch;
  const fs::path dir = scratch.dir / "model";
  constexpr int kVersions = 4;
  std::vector<Version> versions;
  std::vector<std::map<std::string, std::string>> refs;
  for (int v = 0; v < kVersions; ++v) {
    versions.push_back(make_version(v));
    const fs::path ref = scratch.dir / ("ref" + std::to_string(v));
    save_version(versions.back(), ref);
    std::map<std::string, std::string> files;
    for (const char* f : kFiles) files[f] = read_bytes(ref / f);
    refs.push_back(files);
  }
  for (int v = 1; v < kVersions; ++v)
    for (const char* f : kFiles) REQUIRE(refs[v][f] != refs[0][f]);  // each file really changes

  save_version(versions[0], dir);  // the good previous version
  REQUIRE(check_dir(dir, refs) == (std::map<std::string, int>{{kFiles[0], 0}, {kFiles[1], 0}, {kFiles[2], 0}}));

  std::mt19937_64 rng(20261122);
  std::uniform_real_distribution<double> log_us(std::log(20.0), std::log(30000.0));  // 20 µs .. 30 ms
  constexpr int kRounds = 60;
  int saw_new = 0, saw_old = 0, saw_temp = 0;
  for (int round = 0; round < kRounds; ++round) {
    // Even rounds kill at a random moment from the start (often before the first rename);
    // odd rounds first wait for one complete save, so version 0 must be gone everywhere.
    const bool after_save = round % 2 == 1;
    const auto delay = std::chrono::microseconds(static_cast<int64_t>(std::exp(log_us(rng))));
    int pipe_fd[2];
    REQUIRE(::pipe(pipe_fd) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(pipe_fd[0]);
      child_loop(versions, dir, pipe_fd[1]);
    }
    ::close(pipe_fd[1]);
    if (after_save) {
      pollfd p{pipe_fd[0], POLLIN, 0};
      REQUIRE(::poll(&p, 1, 20000) == 1);  // a save takes milliseconds; 20 s means a hung child
      char c = 0;
      REQUIRE(::read(pipe_fd[0], &c, 1) == 1);
    }
    std::this_thread::sleep_for(delay);
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    ::close(pipe_fd[0]);
    INFO("round " << round << ", killed after " << delay.count() << " us" << (after_save ? " past one save" : ""));
    // Killed, not exited: an exit status would mean the child's save threw.
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);

    const auto which = check_dir(dir, refs);
    for (const auto& [file, v] : which) {
      INFO(file);
      CHECK(v >= 0);  // byte-identical to some version
      if (after_save) CHECK(v != 0);
      (v == 0 ? saw_old : saw_new)++;
    }
    // A killed writer may leave its temporary file (nothing can remove it); never the target.
    for (const auto& t : temp_files(dir)) {
      ++saw_temp;
      fs::remove(t);
    }
  }
  CHECK(saw_new > 0);
  INFO("files seen: " << saw_old << " old, " << saw_new << " new; stale temporaries removed: " << saw_temp);
  SUCCEED();
}

TEST_CASE("a save that completes leaves no temporary file", "[crash]") {
  Scratch scratch;
  const fs::path dir = scratch.dir / "model";
  const Version v0 = make_version(0), v1 = make_version(1);
  save_version(v0, dir);
  CHECK(temp_files(dir).empty());
  save_version(v1, dir);  // over an existing version
  CHECK(temp_files(dir).empty());

  // The same from a child process that exits normally.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    try {
      save_version(v0, dir);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(temp_files(dir).empty());
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors", "merged.safetensors"});
}

// ---- fuzz regressions: every input .ci/fuzz ever crashed on, replayed in the normal suite.

namespace {

std::vector<fs::path> fuzz_inputs(const std::string& kind, const std::string& target) {
  std::vector<fs::path> out;
  const fs::path d = fs::path(PEFT_SOURCE_DIR) / "tests" / "fuzz" / kind / target;
  if (fs::is_directory(d))
    for (const auto& e : fs::directory_iterator(d))
      if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// true: opened; false: refused with peft::Error. Anything else (another exception, a crash,
// a sanitizer report) fails the test.
bool open_safetensors(const fs::path& p) {
  try {
    const auto f = io::SafetensorsFile::open(p.string());
    for (const auto& e : f.entries()) {
      REQUIRE(e.begin <= e.end);
      REQUIRE(e.end <= f.file_size() - 8 - f.header_size());
    }
    return true;
  } catch (const Error&) {
    return false;
  }
}

bool parse_adapter_config(const fs::path& p) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_bytes(p));
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  try {
    LoraConfig cfg = LoraConfig::from_json(j);
    cfg.validate();
    (void)LoraConfig::from_json(cfg.to_json());
    return true;
  } catch (const Error&) {
    return false;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace

TEST_CASE("fuzz seeds parse and fuzz regressions parse or throw peft::Error", "[crash][fuzz]") {
  const auto seeds_st = fuzz_inputs("corpus", "safetensors_header");
  const auto seeds_cfg = fuzz_inputs("corpus", "adapter_config");
  REQUIRE(!seeds_st.empty());
  REQUIRE(!seeds_cfg.empty());
  for (const auto& p : seeds_st) {
    INFO(p.string());
    CHECK(open_safetensors(p));
  }
  for (const auto& p : seeds_cfg) {
    INFO(p.string());
    CHECK(parse_adapter_config(p));
  }
  for (const auto& p : fuzz_inputs("regressions", "safetensors_header")) {
    INFO(p.string());
    (void)open_safetensors(p);
  }
  for (const auto& p : fuzz_inputs("regressions", "adapter_config")) {
    INFO(p.string());
    (void)parse_adapter_config(p);
  }
}
