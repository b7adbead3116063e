// Shared by the step benchmarks (bench_mlp_step, bench_hf_lora_step): warm-up, then the
// wall-clock time of each timed call of `step` (which must finish its work, e.g. read a loss
// back from the device, before returning); and the OpenMP thread count they report.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace peft::bench {

struct StepTiming {
  double median_ms = 0, min_ms = 0;
};

inline StepTiming time_steps(int warmup, int repeats, const std::function<void()>& step) {
  for (int w = 0; w < warmup; ++w) step();
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace peft::bench
