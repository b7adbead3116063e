// bench/gpu_bench.h — what bench_gpu_suite's case files share: the device, CUDA-event timing,
// the JSON line format, per-case error isolation and the checks run before timing. Defined in
// bench/gpu_suite.cpp.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <peft/peft.h>

namespace gpu_bench {

using Json = nlohmann::ordered_json;

extern const peft::Device kGpu;
extern std::string g_device_name;

struct Timing {
  double median_ms = 0, min_ms = 0;
  int repeats = 0;
  size_t alloc_at_start = 0, peak_alloc = 0;
};

// `warmup` untimed runs, then `repeats` runs each between two CUDA events on the engine's stream
// (the stream drained before each); median and min, peak allocated bytes.
Timing time_step(int warmup, int repeats, const std::function<void()>& step);
// Rounded to `unit` (a negative power of ten).
double round_to(double v, double unit);
// The common fields of a result line.
Json line(const std::string& impl, const std::string& name, const std::string& dtype, const Timing& t);
void emit(const Json& j);
// Runs one case; an error becomes its JSON line and the switches go back to their defaults.
void guarded(const std::string& name, const std::function<void()>& body);
// The tensor's elements as host floats (F32 or BF16, any device).
std::vector<float> host_floats(const peft::Tensor& t);
// ‖got − ref‖ / ‖ref‖ in double; NaN when any element of `got` is NaN.
double rel_err(const std::vector<float>& got, const std::vector<float>& ref);
// Frees a NaN-filled block of the size an op's output will ask for next (the caching allocator
// hands it straight back), so an unwritten element shows as NaN.
void poison_next(const peft::Shape& shape, peft::DType dtype);
// Throws "check failed before timing" when err > tol.
void require(double err, double tol, const std::string& what);

// bench/gpu_suite_lora.cpp
void case_lora_linear(int repeats);
void case_lora_sweep(int repeats);
void case_lora_sweep_quick(int repeats);

}  // namespace gpu_bench
