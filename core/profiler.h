// peft::profiler — where the time goes, as torch.profiler shows it: every op (forward and backward
// nodes) timed on the host and, on CUDA, by CUDA events on the device's stream; aggregated by op
// name, optionally by module path too (key_averages), printed as a table, and written as a Chrome
// trace JSON that Perfetto (ui.perfetto.dev) or chrome://tracing opens.
//
//   peft::profiler::Profile prof;               // starts; stops at scope exit (or prof.stop())
//   ... forward, backward, optimizer step ...
//   prof.stop();
//   std::cout << peft::profiler::key_averages_table();          // by op, sorted by device time
//   std::cout << peft::profiler::key_averages_table(true);      // by op and module path
//   peft::profiler::export_chrome_trace("trace.json");
//
// Times are inclusive ("total") and exclusive of ops nested inside on the same thread ("self"),
// as torch's. Module paths come from the module calls in flight (Sequential's children and
// Module::operator(), the same frames anomaly mode names): "seq.0 (Linear)"; backward nodes carry
// the path of the forward that recorded them. CUDA times need a synchronisation, made once by
// stop(): profiling adds an event pair per op on the GPU and a little host work per op. While no
// profile runs, an op pays one relaxed atomic load. One profile at a time, process-wide; ops on
// any thread are recorded.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"

namespace peft {
class Tensor;
}

namespace peft::profiler {

// One op call, after stop().
struct Event {
  std::string name;
  std::string module;  // "" outside any module
  Device device;       // where its device time (if any) was measured
  int64_t thread = 0;  // a small per-thread number
  int depth = 0;       // nesting depth on its thread (0: outermost)
  double host_start_us = 0, host_us = 0, host_self_us = 0;  // host clock, from the profile's start
  double cuda_start_us = -1, cuda_us = -1, cuda_self_us = -1;  // device clock; -1: a CPU op
};

struct OpStats {
  std::string name, module;  // module "" when not grouped by module
  int64_t calls = 0;
  double host_total_us = 0, host_self_us = 0, cuda_total_us = 0, cuda_self_us = 0;
};

void start();  // throws while a profile runs
void stop();   // throws unless one runs; synchronises the devices it timed
bool is_enabled();

// The name of the innermost op (RecordFunction scope) running on this thread, profiling or not;
// nullptr outside any. Errors name it (an out-of-memory error says which op asked).
const char* current_op();

// The last finished profile (start() clears it).
const std::vector<Event>& events();
// Aggregated per op name (and module path when group_by_module), sorted by sort_by:
// "cuda_total", "cuda_self", "host_total", "host_self" or "calls" (descending).
std::vector<OpStats> key_averages(bool group_by_module = false, const std::string& sort_by = "cuda_total");
std::string key_averages_table(bool group_by_module = false, const std::string& sort_by = "cuda_total",
                               int row_limit = 30);
// Chrome trace: one "X" event per op on a host track per thread and, for CUDA ops, on the
// device's track (nesting depth as its thread); written to path.tmp, then renamed over path.
// Throws on I/O errors, path unchanged.
void export_chrome_trace(const std::string& path);

// RAII: start on construction, stop on destruction unless stopped before.
class Profile {
 public:
  Profile() { start(); }
  ~Profile();
  void stop();
  Profile(const Profile&) = delete;
  Profile& operator=(const Profile&) = delete;

 private:
  bool running_ = true;
};

// RAII: records one op from construction to destruction while a profile runs; `device`: where
// its kernels go (CUDA events on that device's stream), CPU for host-only timing. `name` must
// outlive the scope (a string literal). Always keeps current_op() (a thread-local pointer swap).
class RecordFunction {
 public:
  RecordFunction(const char* name, Device device);
  RecordFunction(const char* name, const Tensor& on);  // on's device (CPU if undefined)
  // A backward node: its name and the module path its forward ran in.
  RecordFunction(const std::string& name, Device device, const std::string& module);
  ~RecordFunction();
  RecordFunction(const RecordFunction&) = delete;
  RecordFunction& operator=(const RecordFunction&) = delete;

 private:
  void begin(const std::string& name, Device device, const std::string* module);
  std::string owned_name_;          // a backward node's name (its string is a temporary)
  const char* prev_op_ = nullptr;   // current_op() outside this scope
  int64_t slot_ = -1;  // index into the running profile's records; -1: not recording
  int64_t gen_ = 0;    // which profile that index belongs to
};

}  // namespace peft::profiler

// First statement of an op: PEFT_PROFILE_OP("linear", x).
#define PEFT_PROFILE_OP(name, tensor) ::peft::profiler::RecordFunction peft_profile_scope_(name, tensor)
