#include "core/log.h"

#include <cstdio>
#include <mutex>

namespace peft {
namespace {
std::mutex& log_mutex() {
  static std::mutex m;
  return m;
}
LogCallback& log_callback() {
  static LogCallback cb;
  return cb;
}
}  // namespace

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warning: return "warning";
    case LogLevel::Error: return "error";
  }
  return "log";
}

void set_log_callback(LogCallback cb) {
  std::lock_guard<std::mutex> lock(log_mutex());
  log_callback() = std::move(cb);
}

void log(LogLevel level, const std::string& message) {
  // Held while the callback runs, so a callback needs no locking of its own; it must not
  // call log() or set_log_callback() itself.
  std::lock_guard<std::mutex> lock(log_mutex());
  if (log_callback()) {
    log_callback()(level, message);
    return;
  }
  std::fprintf(stderr, "%s: %s\n", log_level_name(level), message.c_str());
  std::fflush(stderr);
}

}  // namespace peft
