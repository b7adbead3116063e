// `peft`: the command-line tool installed with the library, built only on the public API.
//   peft inspect FILE.safetensors [--json]
//   peft validate FILE.safetensors
//   peft merge --base BASE.safetensors --adapter DIR --out OUT.safetensors [--adapter-name NAME]
//   peft diff A.safetensors B.safetensors [--atol X]
//   peft combine --adapter DIR --adapter DIR [...] --weights W1,W2[,...] --combination-type TYPE --out DIR
// Exit codes: 0 success, 1 invalid input (a bad file, an adapter that cannot be merged, files
// that differ), 2 usage. Merging works on tensors only (no model is built): the adapter keys
// PEFT's save_pretrained writes are mapped onto the base state dict's "<module>.weight" keys and
// the delta is PEFT's get_delta_weight (adapters/PEFT_FACTS.md §3), computed in double.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "peft.h"
#include "cli_args.h"
#include "combine.h"

namespace fs = std::filesystem;
using namespace peft;
using namespace peft_cli;

namespace {

const char* kMainHelp =
    "usage: peft <command> [options]\n"
    "\n"
    "commands:\n"
    "  inspect FILE.safetensors [--json]     list every tensor (name, dtype, shape, bytes) and the metadata\n"
    "  validate FILE.safetensors             full validation; exit 0, or exit 1 with the reason\n"
    "  merge --base BASE --adapter DIR --out OUT [--adapter-name NAME]\n"
    "                                        merge a PEFT LoRA adapter into a base state dict\n"
    "  diff A.safetensors B.safetensors [--atol X]\n"
    "                                        compare two files; exit 1 when they differ beyond atol\n"
    "  combine --adapter DIR --adapter DIR [...] --weights W1,W2[,...] --combination-type TYPE --out DIR\n"
    "                                        a new adapter from weighted adapters (add_weighted_adapter)\n"
    "\n"
    "Run 'peft <command> --help' for a command's options. Exit codes: 0 ok, 1 invalid input, 2 usage.\n";

const char* kInspectHelp =
    "usage: peft inspect FILE.safetensors [--json]\n"
    "Prints every tensor's name, dtype, shape and size in bytes, in file order, and the metadata.\n"
    "  --json   print one JSON object instead of a table\n";
const char* kValidateHelp =
    "usage: peft validate FILE.safetensors\n"
    "Validates the whole file (header, dtypes, shapes, offsets, size). Exit 0 when it is good;\n"
    "exit 1 with the reason (the reference's error name in brackets) otherwise.\n";
const char* kMergeHelp =
    "usage: peft merge --base BASE.safetensors --adapter ADAPTER_DIR --out MERGED.safetensors [--adapter-name NAME]\n"
    "Applies a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) to a base state dict and\n"
    "writes the merged state dict atomically. Linear, Conv1d / Conv2d / Conv3d, Embedding, DoRA, lora_bias, rslora,\n"
    "rank/alpha patterns, fan_in_fan_out and modules_to_save are supported; grouped convolutions are refused.\n"
    "  --base FILE          the base model's state dict (\"<module>.weight\" keys)\n"
    "  --adapter DIR        the directory save_pretrained wrote\n"
    "  --out FILE           the merged state dict (must not be one of the inputs)\n"
    "  --adapter-name NAME  read DIR/NAME/ when it exists (save_pretrained's layout for non-default adapters)\n";
const char* kDiffHelp =
    "usage: peft diff A.safetensors B.safetensors [--atol X]\n"
    "Lists keys only in A / only in B, shape or dtype differences and the max abs difference per tensor.\n"
    "Exit 1 when the files differ beyond atol (default 0).\n"
    "  --atol X   tolerance on the max abs difference\n";

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---------------------------------------------------------------- inspect / validate

int cmd_inspect(const Args& a) {
  if (a.positional.size() != 1) throw UsageError("inspect takes exactly one FILE");
  io::SafetensorsFile f = io::SafetensorsFile::open(a.positional[0]);
  uint64_t total = 0;
  for (const auto& e : f.entries()) total += e.end - e.begin;
  if (a.options.count("--json")) {
    nlohmann::ordered_json j;
    j["file"] = f.path();
    j["file_size"] = f.file_size();
    j["header_size"] = f.header_size();
    j["metadata"] = f.metadata();
    nlohmann::ordered_json ts = nlohmann::ordered_json::array();
    for (const auto& e : f.entries())
      ts.push_back({{"name", e.name}, {"dtype", e.dtype}, {"shape", e.shape}, {"bytes", e.end - e.begin},
                    {"data_offsets", {e.begin, e.end}}});
    j["tensors"] = ts;
    j["total_bytes"] = total;
    std::cout << j.dump(2) << "\n";
    return kOk;
  }
  std::cout << f.path() << ": " << f.entries().size() << " tensors, " << total << " bytes of data, header "
            << f.header_size() << " bytes\n";
  for (const auto& e : f.entries())
    std::cout << "  " << e.name << "  " << e.dtype << "  " << shape_text(e.shape) << "  " << (e.end - e.begin)
              << " bytes\n";
  std::cout << "metadata:" << (f.metadata().empty() ? " (none)" : "") << "\n";
  for (const auto& [k, v] : f.metadata()) std::cout << "  " << k << ": " << v << "\n";
  return kOk;
}

int cmd_validate(const Args& a) {
  if (a.positional.size() != 1) throw UsageError("validate takes exactly one FILE");
  io::SafetensorsFile f = io::SafetensorsFile::open(a.positional[0]);
  std::cout << "OK: " << a.positional[0] << ": " << f.entries().size() << " tensors, " << f.file_size()
            << " bytes\n";
  return kOk;
}

// ---------------------------------------------------------------- diff

// Every element as double, or nullopt for dtypes the tensor loader does not read.
std::optional<std::vector<double>> values_of(const io::SafetensorsFile& f, const io::SafetensorsEntry& e) {
  static const std::set<std::string> readable = {"F32", "F64", "I64", "BF16", "F16"};
  if (!readable.count(e.dtype)) return std::nullopt;
  return io::load_tensor(f, e.name).to_vector<double>();
}

int cmd_diff(const Args& a) {
  if (a.positional.size() != 2) throw UsageError("diff takes exactly two files, A and B");
  double atol = 0;
  if (auto it = a.options.find("--atol"); it != a.options.end()) {
    try {
      size_t used = 0;
      atol = std::stod(it->second, &used);
      if (used != it->second.size() || !(atol >= 0)) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw UsageError("--atol needs a non-negative number, got '" + it->second + "'");
    }
  }
  io::SafetensorsFile fa = io::SafetensorsFile::open(a.positional[0]);
  io::SafetensorsFile fb = io::SafetensorsFile::open(a.positional[1]);
  bool differ = false;
  for (const auto& e : fa.entries())
    if (!fb.find(e.name)) {
      std::cout << "only in A: " << e.name << "\n";
      differ = true;
    }
  for (const auto& e : fb.entries())
    if (!fa.find(e.name)) {
      std::cout << "only in B: " << e.name << "\n";
      differ = true;
    }
  for (const auto& ea : fa.entries()) {
    const io::SafetensorsEntry* eb = fb.find(ea.name);
    if (!eb) continue;
    if (ea.shape != eb->shape) {
      std::cout << "shape differs: " << ea.name << ": " << shape_text(ea.shape) << " vs " << shape_text(eb->shape)
                << "\n";
      differ = true;
      continue;
    }
    if (ea.dtype != eb->dtype) {
      std::cout << "dtype differs: " << ea.name << ": " << ea.dtype << " vs " << eb->dtype << "\n";
      differ = true;
    }
    double maxdiff = 0;
    size_t na = ea.end - ea.begin;
    if (ea.dtype == eb->dtype && std::memcmp(fa.data(ea), fb.data(*eb), na) == 0) {
      maxdiff = 0;
    } else {
      auto va = values_of(fa, ea), vb = values_of(fb, *eb);
      if (!va || !vb) {
        maxdiff = std::numeric_limits<double>::infinity();  // bytes differ in a dtype we do not read
      } else {
        for (size_t i = 0; i < va->size(); ++i) {
          double x = (*va)[i], y = (*vb)[i];
          double d = (std::isnan(x) || std::isnan(y)) ? (std::isnan(x) && std::isnan(y) ? 0 : INFINITY)
                     : (x == y)                       ? 0
                                                      : std::fabs(x - y);
          if (std::isnan(d)) d = INFINITY;  // inf - inf of the same sign is caught by x == y
          maxdiff = std::max(maxdiff, d);
        }
      }
    }
    bool bad = maxdiff > atol;
    differ = differ || bad;
    std::cout << (bad ? "DIFF " : "same ") << ea.name << "  max_abs_diff " << maxdiff << "\n";
  }
  std::cout << (differ ? "files differ" : "files match") << " (atol " << atol << ")\n";
  return differ ? kInvalid : kOk;
}

// ---------------------------------------------------------------- merge

// The adapter tensors of one module, keyed by role.
struct ModuleAdapter {
  std::optional<Tensor> A, B, B_bias, magnitude;
  bool embedding = false;
};

// A row-major (rows, cols) matrix of doubles.
struct Mat {
  int64_t rows = 0, cols = 0;
  std::vector<double> v;
  double& at(int64_t r, int64_t c) { return v[static_cast<size_t>(r * cols + c)]; }
  Mat transposed() const {
    Mat t{cols, rows, std::vector<double>(v.size())};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) t.v[static_cast<size_t>(c * rows + r)] = v[static_cast<size_t>(r * cols + c)];
    return t;
  }
};

// t viewed as (size(0), rest).
Mat as_mat(const Tensor& t) {
  Mat m;
  m.rows = t.dim() == 0 ? 1 : t.size(0);
  m.cols = m.rows == 0 ? 0 : t.numel() / m.rows;
  m.v = t.to_vector<double>();
  return m;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec)) return true;
  return fs::weakly_canonical(fs::absolute(a), ec) == fs::weakly_canonical(fs::absolute(b), ec);
}

Tensor as_base_dtype(const Mat& m, const Shape& shape, DType dtype) {
  return Tensor::from_vector(m.v, shape).to(dtype).contiguous();
}

int cmd_merge(const Args& a) {
  if (!a.positional.empty()) throw UsageError("merge takes no positional arguments (got '" + a.positional[0] + "')");
  for (const char* req : {"--base", "--adapter", "--out"})
    if (!a.options.count(req)) throw UsageError(std::string("merge needs ") + req);
  const std::string base_path = a.options.at("--base"), out_path = a.options.at("--out");
  std::string dir = a.options.at("--adapter");
  const std::string prefix = "merge: ";

  PEFT_CHECK(fs::is_directory(dir), prefix, "adapter directory '", dir, "' does not exist or is not a directory");
  if (auto it = a.options.find("--adapter-name"); it != a.options.end() && it->second != "default") {
    PEFT_CHECK(!it->second.empty(), prefix, "--adapter-name is empty");
    if (fs::is_directory(fs::path(dir) / it->second)) dir = (fs::path(dir) / it->second).string();
  }
  const std::string config_path = (fs::path(dir) / "adapter_config.json").string();
  const std::string weights_path = (fs::path(dir) / "adapter_model.safetensors").string();
  PEFT_CHECK(fs::exists(config_path), prefix, "'", config_path, "' not found");
  PEFT_CHECK(fs::exists(weights_path), prefix, "'", weights_path, "' not found",
             fs::exists(fs::path(dir) / "adapter_model.bin") ? " (adapter_model.bin, pickle, is not read: save with safe_serialization=True)" : "");
  for (const std::string& in : {base_path, config_path, weights_path})
    PEFT_CHECK(!same_file(out_path, in), prefix, "--out '", out_path, "' is an input file ('", in,
               "'); refusing to overwrite an input");

  std::vector<std::string> warnings;
  LoraConfig cfg = LoraConfig::from_pretrained(dir, &warnings);
  for (const auto& w : warnings) std::cerr << "peft merge: warning: " << w << "\n";
  cfg.validate();

  io::SafetensorsFile base = io::SafetensorsFile::open(base_path);
  io::SafetensorsFile adapter = io::SafetensorsFile::open(weights_path);

  // Adapter keys → (module, role) or replacements of base tensors (modules_to_save, bias).
  std::map<std::string, ModuleAdapter> modules;
  std::map<std::string, std::string> replacements;  // base key → adapter key
  const std::string model_prefix = "base_model.model.";
  for (const auto& e : adapter.entries()) {
    std::string key = e.name.compare(0, model_prefix.size(), model_prefix) == 0 ? e.name.substr(model_prefix.size()) : e.name;
    auto role = [&](const std::string& suffix) -> std::optional<std::string> {
      if (ends_with(key, suffix)) return key.substr(0, key.size() - suffix.size());
      return std::nullopt;
    };
    auto load = [&] { return io::load_tensor(adapter, e.name); };
    if (auto m = role(".lora_A.weight")) modules[*m].A = load();
    else if (auto m2 = role(".lora_B.weight")) modules[*m2].B = load();
    else if (auto m3 = role(".lora_B.bias")) modules[*m3].B_bias = load();
    else if (auto m4 = role(".lora_embedding_A")) { modules[*m4].A = load(); modules[*m4].embedding = true; }
    else if (auto m5 = role(".lora_embedding_B")) { modules[*m5].B = load(); modules[*m5].embedding = true; }
    else if (auto m6 = role(".lora_magnitude_vector")) modules[*m6].magnitude = load();
    else if (auto m7 = role(".lora_magnitude_vector.weight")) modules[*m7].magnitude = load();
    else {
      PEFT_CHECK(key.find("lora_") == std::string::npos, prefix, "adapter key '", e.name,
                 "' is not a LoRA tensor this tool knows how to merge");
      // modules_to_save ("<m>.weight") and trained biases ("<m>.bias", "<m>.base_layer.bias").
      std::string target = key;
      if (auto pos = target.find(".base_layer."); pos != std::string::npos) target.erase(pos, std::strlen(".base_layer"));
      const io::SafetensorsEntry* b = base.find(target);
      PEFT_CHECK(b != nullptr, prefix, "adapter tensor '", e.name, "' replaces '", target,
                 "', which the base file does not have");
      PEFT_CHECK(b->shape == e.shape, prefix, "shape mismatch: adapter tensor '", e.name, "' has shape ",
                 shape_text(e.shape), " but base tensor '", target, "' has shape ", shape_text(b->shape));
      replacements[target] = e.name;
    }
  }

  std::map<std::string, Tensor> merged;  // base key → new value (base dtype)
  for (auto& [mod, ad] : modules) {
    const std::string wkey = mod + ".weight";
    PEFT_CHECK(ad.A && ad.B, prefix, "module '", mod, "': the adapter has ", ad.A ? "lora_A" : "lora_B",
               " but not ", ad.A ? "lora_B" : "lora_A");
    const io::SafetensorsEntry* we = base.find(wkey);
    PEFT_CHECK(we != nullptr, prefix, "target '", wkey, "' (module '", mod, "' of the adapter) is missing from the base file '",
               base_path, "'");
    PEFT_CHECK(!replacements.count(wkey), prefix, "module '", mod, "' is both a LoRA target and in modules_to_save");
    Tensor W = io::load_tensor(base, wkey);
    PEFT_CHECK(W.dtype() != DType::I64, prefix, "target '", wkey, "' is an integer tensor");
    const LoraLayerSettings s = cfg.settings_for(mod);
    const double scaling = s.scaling();
    const Tensor& A = *ad.A;
    const Tensor& B = *ad.B;
    const std::string ws = shape_text(W.shape()), as = shape_text(A.shape()), bs = shape_text(B.shape());
    PEFT_CHECK(A.dim() >= 2 && B.dim() >= 2, prefix, "module '", mod, "': lora_A ", as, " / lora_B ", bs,
               " are not matrices");
    PEFT_CHECK(A.size(0) == s.r, prefix, "module '", mod, "': lora_A has rank ", A.size(0),
               " but adapter_config.json gives r=", s.r, " for it");

    // Work on M (rows = output channels/features, the rows DoRA normalises) with Δ = s·B·A.
    bool transposed = false;  // M = Wᵀ
    Mat Wm;
    if (ad.embedding) {
      PEFT_CHECK(W.dim() == 2 && A.dim() == 2 && B.dim() == 2 && A.size(1) == W.size(0) && B.size(0) == W.size(1) &&
                     B.size(1) == A.size(0),
                 prefix, "shape mismatch for embedding '", mod, "': base ", ws, ", lora_embedding_A ", as,
                 ", lora_embedding_B ", bs, " (expected A (r, ", W.size(0), "), B (", W.dim() == 2 ? W.size(1) : -1, ", r))");
      Wm = as_mat(W).transposed();
      transposed = true;
    } else if (W.dim() >= 3 && W.dim() <= 5) {  // Conv1d / Conv2d / Conv3d: (out, in, *kernel)
      const std::string conv = "Conv" + std::to_string(W.dim() - 2) + "d";
      bool b_unit = B.dim() == W.dim(), a_kernel = A.dim() == W.dim();
      for (int64_t d = 2; d < W.dim(); ++d) {
        b_unit = b_unit && B.size(d) == 1;
        a_kernel = a_kernel && A.size(d) == W.size(d);
      }
      PEFT_CHECK(A.dim() == W.dim() && b_unit, prefix, "module '", mod, "': base is a ", conv, " weight ", ws,
                 " but lora_A ", as, " / lora_B ", bs, " are not ", conv, " LoRA weights");
      PEFT_CHECK(A.size(1) == W.size(1) && B.size(1) == A.size(0), prefix, "module '", mod,
                 "': grouped convolution (base weight ", ws, ", lora_A ", as, ", lora_B ", bs,
                 "): merging is not supported for ", conv, " layers with groups > 1");
      PEFT_CHECK(a_kernel && B.size(0) == W.size(0), prefix, "shape mismatch for conv '", mod, "': base ", ws,
                 ", lora_A ", as, ", lora_B ", bs);
      Wm = as_mat(W);
    } else {
      PEFT_CHECK(W.dim() == 2 && A.dim() == 2 && B.dim() == 2 && B.size(1) == A.size(0), prefix,
                 "shape mismatch for '", mod, "': base ", ws, ", lora_A ", as, ", lora_B ", bs);
      Wm = as_mat(W);
      if (cfg.fan_in_fan_out) {
        Wm = Wm.transposed();
        transposed = true;
      }
      PEFT_CHECK(B.size(0) == Wm.rows && A.size(1) == Wm.cols, prefix, "shape mismatch for '", mod, "': base ", ws,
                 cfg.fan_in_fan_out ? " (fan_in_fan_out: (in, out))" : "", " but lora_B·lora_A gives (", B.size(0),
                 ", ", A.size(1), ")");
    }
    Mat Am = as_mat(A), Bm = as_mat(B);
    for (int64_t o = 0; o < Wm.rows; ++o)
      for (int64_t j = 0; j < Bm.cols; ++j) {
        const double b = scaling * Bm.at(o, j);
        if (b == 0) continue;
        for (int64_t i = 0; i < Wm.cols; ++i) Wm.at(o, i) += b * Am.at(j, i);
      }
    if (ad.magnitude) {
      PEFT_CHECK(s.use_dora, prefix, "module '", mod, "': the adapter has lora_magnitude_vector but use_dora is false");
      std::vector<double> m = ad.magnitude->to_vector<double>();
      PEFT_CHECK(static_cast<int64_t>(m.size()) == Wm.rows, prefix, "module '", mod, "': lora_magnitude_vector has ",
                 m.size(), " values, expected ", Wm.rows);
      for (int64_t o = 0; o < Wm.rows; ++o) {
        double n2 = 0;
        for (int64_t i = 0; i < Wm.cols; ++i) n2 += Wm.at(o, i) * Wm.at(o, i);
        const double f = m[static_cast<size_t>(o)] / std::sqrt(n2);
        for (int64_t i = 0; i < Wm.cols; ++i) Wm.at(o, i) *= f;
      }
    } else {
      PEFT_CHECK(!s.use_dora, prefix, "module '", mod, "': use_dora is set but the adapter has no lora_magnitude_vector");
    }
    if (transposed) Wm = Wm.transposed();
    for (double x : Wm.v) PEFT_CHECK(std::isfinite(x), prefix, "non-finite values in the merged '", wkey, "'; the adapter seems to be broken");
    merged[wkey] = as_base_dtype(Wm, W.shape(), W.dtype());

    if (ad.B_bias) {
      const std::string bkey = mod + ".bias";
      const io::SafetensorsEntry* be = base.find(bkey);
      PEFT_CHECK(be != nullptr, prefix, "module '", mod, "' has lora_B.bias (lora_bias=True) but the base has no '",
                 bkey, "' to merge it into");
      Tensor bias = replacements.count(bkey) ? io::load_tensor(adapter, replacements.at(bkey)) : io::load_tensor(base, bkey);
      std::vector<double> bv = bias.to_vector<double>(), lb = ad.B_bias->to_vector<double>();
      PEFT_CHECK(bv.size() == lb.size(), prefix, "shape mismatch: lora_B.bias of '", mod, "' has ", lb.size(),
                 " values, base '", bkey, "' has ", bv.size());
      for (size_t i = 0; i < bv.size(); ++i) bv[i] += scaling * lb[i];
      merged[bkey] = Tensor::from_vector(bv, bias.shape()).to(bias.dtype()).contiguous();
      replacements.erase(bkey);
    }
  }
  // Replacements keep the base dtype.
  for (const auto& [bkey, akey] : replacements) {
    const io::SafetensorsEntry& be = base.at(bkey);
    const io::SafetensorsEntry& ae = adapter.at(akey);
    if (be.dtype == ae.dtype) {
      merged[bkey] = io::load_tensor(adapter, akey);
    } else {
      merged[bkey] = io::load_tensor(adapter, akey).to(dtype_from_name(be.dtype)).contiguous();
    }
  }

  std::vector<io::SafetensorsTensorRef> out;
  for (const auto& e : base.entries()) {
    io::SafetensorsTensorRef r{e.name, e.dtype, e.shape, base.data(e), e.end - e.begin};
    if (auto it = merged.find(e.name); it != merged.end()) {
      r.data = it->second.raw_data();
      r.nbytes = it->second.nbytes();
    }
    out.push_back(std::move(r));
  }
  io::write_safetensors(out_path, out, {{"format", "pt"}});
  std::cout << "merged " << modules.size() << " LoRA module(s) and " << replacements.size()
            << " replaced tensor(s) into " << out_path << " (" << out.size() << " tensors)\n";
  return kOk;
}

int run(int argc, char** argv) {
  if (argc < 2) throw UsageError("no command given");
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kMainHelp;
    return kOk;
  }
  struct Command {
    const char* help;
    std::set<std::string> valued, flags;
    int (*fn)(const Args&);
    std::set<std::string> repeatable = {};
  };
  static const std::map<std::string, Command> commands = {
      {"inspect", {kInspectHelp, {}, {"--json"}, cmd_inspect}},
      {"validate", {kValidateHelp, {}, {}, cmd_validate}},
      {"merge", {kMergeHelp, {"--base", "--adapter", "--out", "--adapter-name"}, {}, cmd_merge}},
      {"diff", {kDiffHelp, {"--atol"}, {}, cmd_diff}},
      {"combine", {kCombineHelp, {"--weights", "--combination-type", "--density", "--majority-sign-method", "--svd-rank",
                                  "--svd-clamp", "--seed", "--out"},
                   {"--svd-reduced"}, cmd_combine, {"--adapter"}}},
  };
  auto it = commands.find(cmd);
  if (it == commands.end()) throw UsageError("unknown command '" + cmd + "'");
  // --help wins over anything else on the line (even where it would be an option's value).
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::cout << it->second.help;
      return kOk;
    }
  Args a = parse_args(argc, argv, 2, it->second.valued, it->second.flags, it->second.repeatable);
  try {
    return it->second.fn(a);
  } catch (const UsageError& e) {
    std::cerr << "peft " << cmd << ": " << e.what() << "\n" << it->second.help;
    return kUsage;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "peft: " << e.what() << "\n" << kMainHelp;
    return kUsage;
  } catch (const std::exception& e) {
    // peft::Error messages start with the throwing source's "file.cpp:123: ", noise for a user.
    std::string msg = e.what();
    static const std::regex source_prefix(R"(^[A-Za-z0-9_./+-]+\.(cpp|h|cu):[0-9]+: )");
    msg = std::regex_replace(msg, source_prefix, "", std::regex_constants::format_first_only);
    std::cerr << "peft: error: " << msg << "\n";
    return kInvalid;
  }
}
