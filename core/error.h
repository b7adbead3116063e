// peft::Error and the check macros every public entry point uses. Messages carry
// file:line and the offending names/shapes (DESIGN.md decision 5); nothing calls exit.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace peft {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void stream_all(std::ostringstream&) {}
template <class T, class... Rest>
void stream_all(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  stream_all(os, rest...);
}
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  stream_all(os, args...);
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace detail

// "[2, 3]" for shapes in messages.
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace peft

#define PEFT_ERROR(...) ::peft::detail::throw_error(__FILE__, __LINE__, ::peft::detail::concat(__VA_ARGS__))
#define PEFT_CHECK(cond, ...)  \
  do {                         \
    if (!(cond)) PEFT_ERROR(__VA_ARGS__); \
  } while (0)
