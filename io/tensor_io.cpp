#include "io/tensor_io.h"

#include <cstring>

namespace peft::io {

Tensor load_tensor(const SafetensorsFile& file, const std::string& name) {
  const SafetensorsEntry& e = file.at(name);
  DType dt;
  try {
    dt = dtype_from_name(e.dtype);
  } catch (const Error&) {
    PEFT_ERROR("safetensors '", file.path(), "': tensor '", name, "' has unsupported dtype ", e.dtype,
               " (supported: F32, F64, I64, BF16, F16)");
  }
  Tensor t = Tensor::empty(e.shape, dt, Device::cpu());
  if (t.nbytes() > 0) std::memcpy(t.raw_data(), file.data(e), t.nbytes());
  return t;
}

NamedTensors load_file(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  NamedTensors out;
  for (const auto& e : f.entries()) out.emplace_back(e.name, load_tensor(f, e.name));
  return out;
}

void save_file(const NamedTensors& tensors, const std::string& path, const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> keep;  // contiguous copies must outlive the write
  std::vector<SafetensorsTensorRef> refs;
  keep.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    PEFT_CHECK(t.defined(), "save_file: tensor '", name, "' is undefined");
    PEFT_CHECK(t.device().is_cpu(), "save_file: tensor '", name, "' is on ", t.device().str(), "; move it to the CPU first");
    NoGradGuard g;
    keep.push_back(t.detach().contiguous());
    const Tensor& c = keep.back();
    refs.push_back({name, dtype_name(c.dtype()), c.shape(), c.raw_data(), c.nbytes()});
  }
  write_safetensors(path, refs, metadata);
}

const Tensor& find_tensor(const NamedTensors& tensors, const std::string& name) {
  for (const auto& kv : tensors)
    if (kv.first == name) return kv.second;
  PEFT_ERROR("no tensor named '", name, "'");
}

}  // namespace peft::io
