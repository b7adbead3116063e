// Running the sample programs from a test (test_samples.cpp, test_hf_models.cpp): where the build
// put them, and their exit status with stdout and stderr together.
#pragma once
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace peft::testing {

// The sample program `name` built beside this test binary, or "" (with a warning) if absent.
inline std::string sample_binary(const std::string& name) {
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  const std::filesystem::path bin = self.parent_path().parent_path() / "samples" / name;
  if (!std::filesystem::exists(bin)) {
    WARN("sample program " << bin.string() << " is not built; its checks are skipped");
    return "";
  }
  return bin.string();
}

struct RunResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

inline RunResult run(const std::string& command) {
  RunResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace peft::testing
