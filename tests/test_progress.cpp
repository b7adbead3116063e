// samples/models/progress.h: plain lines every N steps and at epoch end off a terminal; one line
// rewritten in place with '\r' (and erased at epoch end) on a terminal.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <string>

#include "models/progress.h"

using peft::samples::ProgressLine;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  return s;
}
int count(const std::string& s, char c) { return static_cast<int>(std::count(s.begin(), s.end(), c)); }
}  // namespace

TEST_CASE("progress degrades to plain lines every N steps and at epoch end", "[samples][progress]") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  ProgressLine p(2, 13, 5, f, /*interactive=*/false);
  for (int ep = 0; ep < 2; ++ep) {
    p.start_epoch(ep);
    for (int s = 1; s <= 13; ++s) p.step(s, 0.5, 64);
    p.end_epoch();
  }
  std::string out = contents(f);
  std::fclose(f);
  CHECK(count(out, '\n') == 6);  // steps 5, 10, 13 in each epoch
  CHECK(count(out, '\r') == 0);
  CHECK_THAT(out, StartsWith("epoch 1/2  step 5/13  loss 0.5000  samples/s "));
  CHECK_THAT(out, Contains("epoch 2/2  step 13/13  loss 0.5000"));
  CHECK_THAT(out, Contains("ETA 00:00\n"));
}

TEST_CASE("progress rewrites one line in place on a terminal", "[samples][progress]") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  ProgressLine p(1, 3, 5, f, /*interactive=*/true);
  p.start_epoch(0);
  for (int s = 1; s <= 3; ++s) p.step(s, 1.25, 8);
  p.end_epoch();
  std::string out = contents(f);
  std::fclose(f);
  CHECK(count(out, '\n') == 0);
  CHECK(count(out, '\r') == 5);  // one per step, two for the erase
  CHECK_THAT(out, Contains("\repoch 1/1  step 3/3  loss 1.2500"));
}
