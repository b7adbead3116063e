// Runs the `peft` command-line tool from a test: the binary is found next to the test's build
// directory (<build>/tests/<test> → <build>/samples/peft), its stdout and stderr are captured.
#pragma once
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/wait.h>

namespace cli_test {

namespace fs = std::filesystem;

inline fs::path cli_path() {
  fs::path self = fs::read_symlink("/proc/self/exe");
  for (const fs::path& p : {self.parent_path().parent_path() / "samples" / "peft",
                            self.parent_path().parent_path() / "samples" / "peft_cli" / "peft",
                            self.parent_path().parent_path() / "bin" / "peft"})
    if (fs::exists(p)) return p;
  FAIL("the peft binary was not found next to " << self.string() << " (build target peft_cli_bin)");
  return {};
}

struct Result {
  int code = -1;
  std::string out;  // stdout and stderr together
};

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline Result run_cli(const std::vector<std::string>& args) {
  std::string cmd = quote(cli_path().string());
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " 2>&1";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace cli_test
