// Library logging: every message the library emits (warnings about configs, adapters, layers)
// goes through one settable callback, so an embedding program decides where it lands. The
// default writes "warning: ..." (or "error: ", "info: ", "debug: ") lines to stderr. Nothing
// else in the library prints.
#pragma once
#include <functional>
#include <string>

namespace peft {

enum class LogLevel { Debug, Info, Warning, Error };
using LogCallback = std::function<void(LogLevel, const std::string&)>;

// Replaces the callback for all threads; nullptr restores the default (stderr). Thread-safe:
// calls to log() are serialised with each other and with set_log_callback().
void set_log_callback(LogCallback cb);
void log(LogLevel level, const std::string& message);
inline void log_warning(const std::string& message) { log(LogLevel::Warning, message); }

// "warning", "error", ... as the default callback prefixes its lines.
const char* log_level_name(LogLevel level);

}  // namespace peft
