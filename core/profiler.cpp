// peft::profiler (core/profiler.h): records kept in one vector under a mutex while a profile runs;
// CUDA events turned into times once, at stop().
#include "core/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/autograd.h"
#include "core/cuda_api.h"
#include "core/error.h"
#include "core/tensor.h"

namespace peft::profiler {

namespace {

struct Record {
  std::string name, module;
  Device device;
  int64_t thread = 0, parent = -1;
  int depth = 0;
  int64_t t0_ns = 0, t1_ns = -1;
  void* ev0 = nullptr;
  void* ev1 = nullptr;
};

std::atomic<bool> g_enabled{false};
std::mutex g_mutex;
std::vector<Record> g_records;                   // the running profile
std::map<int, void*> g_ref_events;               // per CUDA device: the event device times count from
std::map<int, int64_t> g_ref_host_ns;            // host time at which that event was recorded
std::chrono::steady_clock::time_point g_t0;
std::vector<Event> g_events;                     // the last finished profile
std::atomic<int64_t> g_next_thread{0};
int64_t g_generation = 0;                        // profiles started so far (under g_mutex)
thread_local std::vector<int64_t> t_stack;       // open records of this thread
thread_local int64_t t_thread = -1;
thread_local const char* t_current_op = nullptr;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - g_t0).count();
}

void release_events(std::vector<Record>& rs) {
  for (Record& r : rs) {
    if (r.ev0) cuda::event_destroy(r.ev0);
    if (r.ev1) cuda::event_destroy(r.ev1);
    r.ev0 = r.ev1 = nullptr;
  }
}

}  // namespace

bool is_enabled() { return g_enabled.load(std::memory_order_relaxed); }

void start() {
  std::lock_guard<std::mutex> lock(g_mutex);
  PEFT_CHECK(!g_enabled.load(), "profiler::start: a profile is already running (stop() it first)");
  g_records.clear();
  g_events.clear();
  ++g_generation;
  g_t0 = std::chrono::steady_clock::now();
  g_enabled.store(true);
}

void stop() {
  std::vector<Record> rs;
  std::map<int, void*> refs;
  std::map<int, int64_t> ref_host;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    PEFT_CHECK(g_enabled.load(), "profiler::stop: no profile is running");
    g_enabled.store(false);
    rs.swap(g_records);
    refs.swap(g_ref_events);
    ref_host.swap(g_ref_host_ns);
  }
  std::vector<Event> out(rs.size());
  std::vector<double> child_host(rs.size(), 0), child_cuda(rs.size(), 0);
  for (size_t i = 0; i < rs.size(); ++i) {
    const Record& r = rs[i];
    Event& e = out[i];
    e.name = r.name;
    e.module = r.module;
    e.device = r.device;
    e.thread = r.thread;
    e.depth = r.depth;
    const int64_t t1 = r.t1_ns >= 0 ? r.t1_ns : r.t0_ns;  // still open at stop: zero length
    e.host_start_us = static_cast<double>(r.t0_ns) / 1e3;
    e.host_us = static_cast<double>(t1 - r.t0_ns) / 1e3;
    if (r.ev0 && r.ev1) {
      void* ref = refs.at(r.device.index);
      e.cuda_start_us = static_cast<double>(cuda::event_elapsed_ms(ref, r.ev0)) * 1e3 +
                        static_cast<double>(ref_host.at(r.device.index)) / 1e3;
      e.cuda_us = static_cast<double>(cuda::event_elapsed_ms(r.ev0, r.ev1)) * 1e3;
    }
  }
  for (size_t i = 0; i < rs.size(); ++i) {
    if (rs[i].parent < 0) continue;
    const size_t p = static_cast<size_t>(rs[i].parent);
    child_host[p] += out[i].host_us;
    if (out[i].cuda_us >= 0) child_cuda[p] += out[i].cuda_us;
  }
  for (size_t i = 0; i < rs.size(); ++i) {
    out[i].host_self_us = std::max(0.0, out[i].host_us - child_host[i]);
    if (out[i].cuda_us >= 0) out[i].cuda_self_us = std::max(0.0, out[i].cuda_us - child_cuda[i]);
  }
  release_events(rs);
  for (auto& [d, e] : refs) cuda::event_destroy(e);
  std::lock_guard<std::mutex> lock(g_mutex);
  g_events = std::move(out);
}

const std::vector<Event>& events() { return g_events; }

Profile::~Profile() {
  if (running_ && is_enabled()) {
    try {
      profiler::stop();
    } catch (...) {  // a destructor must not throw; the profile is dropped
    }
  }
}

void Profile::stop() {
  PEFT_CHECK(running_, "profiler::Profile::stop: already stopped");
  running_ = false;
  profiler::stop();
}

// ---------------------------------------------------------------------------- recording

const char* current_op() { return t_current_op; }

RecordFunction::RecordFunction(const char* name, Device device) : prev_op_(t_current_op) {
  t_current_op = name;
  if (is_enabled()) begin(name, device, nullptr);
}

RecordFunction::RecordFunction(const char* name, const Tensor& on) : prev_op_(t_current_op) {
  t_current_op = name;
  if (is_enabled()) begin(name, on.defined() ? on.device() : Device::cpu(), nullptr);
}

RecordFunction::RecordFunction(const std::string& name, Device device, const std::string& module)
    : owned_name_(name), prev_op_(t_current_op) {
  t_current_op = owned_name_.c_str();
  if (is_enabled()) begin(name, device, &module);
}

void RecordFunction::begin(const std::string& name, Device device, const std::string* module) {
  if (t_thread < 0) t_thread = g_next_thread.fetch_add(1);
  Record r;
  r.name = name;
  r.module = module ? *module : autograd::current_module_path();
  r.device = device;
  r.thread = t_thread;
  r.depth = static_cast<int>(t_stack.size());
  r.parent = t_stack.empty() ? -1 : t_stack.back();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_enabled.load()) return;  // stopped meanwhile
  if (device.is_cuda()) {
    if (!g_ref_events.count(device.index)) {
      g_ref_host_ns[device.index] = now_ns();
      g_ref_events[device.index] = cuda::event_record(device);
    }
    r.ev0 = cuda::event_record(device);
  }
  r.t0_ns = now_ns();
  gen_ = g_generation;
  slot_ = static_cast<int64_t>(g_records.size());
  g_records.push_back(std::move(r));
  t_stack.push_back(slot_);
}

RecordFunction::~RecordFunction() {
  t_current_op = prev_op_;
  if (slot_ < 0) return;
  if (!t_stack.empty() && t_stack.back() == slot_) t_stack.pop_back();
  std::lock_guard<std::mutex> lock(g_mutex);
  // A profile stopped (and maybe restarted) since begin(): this record is gone with it.
  if (!g_enabled.load() || gen_ != g_generation || static_cast<size_t>(slot_) >= g_records.size()) return;
  Record& r = g_records[static_cast<size_t>(slot_)];
  r.t1_ns = now_ns();
  if (r.device.is_cuda()) {
    try {
      r.ev1 = cuda::event_record(r.device);
    } catch (...) {  // the op is unwinding from a CUDA error: its device time stays unknown
    }
  }
}

// ---------------------------------------------------------------------------- reports

std::vector<OpStats> key_averages(bool group_by_module, const std::string& sort_by) {
  PEFT_CHECK(sort_by == "cuda_total" || sort_by == "cuda_self" || sort_by == "host_total" || sort_by == "host_self" ||
                 sort_by == "calls",
             "profiler::key_averages: sort_by must be cuda_total, cuda_self, host_total, host_self or calls, got '",
             sort_by, "'");
  std::map<std::pair<std::string, std::string>, OpStats> by;
  for (const Event& e : g_events) {
    OpStats& s = by[{e.name, group_by_module ? e.module : std::string()}];
    s.name = e.name;
    s.module = group_by_module ? e.module : "";
    s.calls += 1;
    s.host_total_us += e.host_us;
    s.host_self_us += e.host_self_us;
    if (e.cuda_us >= 0) {
      s.cuda_total_us += e.cuda_us;
      s.cuda_self_us += e.cuda_self_us;
    }
  }
  std::vector<OpStats> out;
  for (auto& kv : by) out.push_back(kv.second);
  auto key = [&](const OpStats& s) {
    if (sort_by == "cuda_total") return s.cuda_total_us;
    if (sort_by == "cuda_self") return s.cuda_self_us;
    if (sort_by == "host_total") return s.host_total_us;
    if (sort_by == "host_self") return s.host_self_us;
    return static_cast<double>(s.calls);
  };
  std::stable_sort(out.begin(), out.end(), [&](const OpStats& a, const OpStats& b) {
    if (key(a) != key(b)) return key(a) > key(b);
    return a.host_total_us > b.host_total_us;
  });
  return out;
}

std::string key_averages_table(bool group_by_module, const std::string& sort_by, int row_limit) {
  const std::vector<OpStats> rows = key_averages(group_by_module, sort_by);
  double host_self_sum = 0, cuda_self_sum = 0;
  for (const OpStats& s : rows) {
    host_self_sum += s.host_self_us;
    cuda_self_sum += s.cuda_self_us;
  }
  std::ostringstream os;
  char line[512];
  std::snprintf(line, sizeof line, "%-28s %-32s %7s %12s %12s %12s %12s %8s\n", "Name", group_by_module ? "Module" : "",
                "Calls", "Host total", "Host self", "CUDA total", "CUDA self", "CUDA %");
  os << line << std::string(132, '-') << "\n";
  int n = 0;
  for (const OpStats& s : rows) {
    if (row_limit >= 0 && n++ >= row_limit) break;
    auto ms = [](double us) { return us / 1e3; };
    std::snprintf(line, sizeof line, "%-28.28s %-32.32s %7lld %9.3f ms %9.3f ms %9.3f ms %9.3f ms %7.1f%%\n",
                  s.name.c_str(), s.module.c_str(), static_cast<long long>(s.calls), ms(s.host_total_us),
                  ms(s.host_self_us), ms(s.cuda_total_us), ms(s.cuda_self_us),
                  cuda_self_sum > 0 ? 100.0 * s.cuda_self_us / cuda_self_sum : 0.0);
    os << line;
  }
  std::snprintf(line, sizeof line, "Self time totals: host %.3f ms, CUDA %.3f ms (%zu ops, %zu calls)\n",
                host_self_sum / 1e3, cuda_self_sum / 1e3, rows.size(), g_events.size());
  os << std::string(132, '-') << "\n" << line;
  return os.str();
}

void export_chrome_trace(const std::string& path) {
  nlohmann::json evs = nlohmann::json::array();
  std::map<std::string, int> device_pid;  // "cuda:0" -> its pid (the host is pid 0)
  for (const Event& e : g_events) {
    nlohmann::json args = {{"module", e.module}, {"device", e.device.str()}, {"depth", e.depth}};
    evs.push_back({{"name", e.name}, {"cat", "cpu_op"}, {"ph", "X"}, {"ts", e.host_start_us}, {"dur", e.host_us},
                   {"pid", 0}, {"tid", e.thread}, {"args", args}});
    if (e.cuda_us >= 0) {
      auto it = device_pid.emplace(e.device.str(), static_cast<int>(device_pid.size()) + 1).first;
      evs.push_back({{"name", e.name}, {"cat", "cuda"}, {"ph", "X"}, {"ts", e.cuda_start_us}, {"dur", e.cuda_us},
                     {"pid", it->second}, {"tid", e.depth}, {"args", args}});
    }
  }
  evs.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", 0}, {"args", {{"name", "host"}}}});
  for (const auto& [dev, pid] : device_pid)
    evs.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"args", {{"name", dev + " (CUDA events)"}}}});
  const nlohmann::json doc = {{"traceEvents", evs}, {"displayTimeUnit", "ms"}};
  // Beside the target, then renamed over it: a failed write leaves the old file as it was.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    PEFT_CHECK(f.good(), "profiler::export_chrome_trace: cannot open '", tmp, "' for writing");
    f << doc.dump();
    f.flush();
    if (!f.good()) {
      f.close();
      std::remove(tmp.c_str());
      PEFT_ERROR("profiler::export_chrome_trace: writing '", tmp, "' failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    PEFT_ERROR("profiler::export_chrome_trace: cannot rename '", tmp, "' to '", path, "'");
  }
}

}  // namespace peft::profiler
