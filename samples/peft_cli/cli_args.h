// The `peft` tool's command-line plumbing, shared by its commands: exit codes, usage errors and
// the option parser.
#pragma once
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace peft_cli {

constexpr int kOk = 0, kInvalid = 1, kUsage = 2;

// A usage error: the message, then the command's help and exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;               // given once
  std::map<std::string, std::vector<std::string>> repeated;  // options that may be given several times
  bool help = false;
};

// Splits argv[first..] into positionals and --options (--name value or --name=value). `valued`
// options take a value and may appear once, `repeatable` ones take a value each time, `flags`
// take none.
inline Args parse_args(int argc, char** argv, int first, const std::set<std::string>& valued,
                       const std::set<std::string>& flags, const std::set<std::string>& repeatable = {}) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      a.help = true;
    } else if (s.size() > 2 && s.compare(0, 2, "--") == 0) {
      std::string name = s, value;
      bool has_value = false;
      if (auto eq = s.find('='); eq != std::string::npos) {
        name = s.substr(0, eq);
        value = s.substr(eq + 1);
        has_value = true;
      }
      if (valued.count(name) || repeatable.count(name)) {
        if (!has_value) {
          if (i + 1 >= argc) throw UsageError("option " + name + " needs a value");
          value = argv[++i];
        }
        if (repeatable.count(name)) {
          a.repeated[name].push_back(value);
          continue;
        }
        if (a.options.count(name)) throw UsageError("option " + name + " given twice");
        a.options[name] = value;
      } else if (flags.count(name) && !has_value) {
        a.options[name] = "1";
      } else {
        throw UsageError("unknown option '" + s + "'");
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

}  // namespace peft_cli
