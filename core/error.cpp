#include "core/error.h"

namespace peft {
namespace detail {
void throw_error(const char* file, int line, const std::string& msg) {
  std::string f(file);
  // Keep the path relative to the project so messages read the same everywhere.
  for (const char* top : {"/core/", "/layers/", "/adapters/", "/io/", "/kernels/", "/samples/"}) {
    auto pos = f.rfind(top);
    if (pos != std::string::npos) { f = f.substr(pos + 1); break; }
  }
  throw Error(f + ":" + std::to_string(line) + ": " + msg);
}
}  // namespace detail

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
}  // namespace peft
