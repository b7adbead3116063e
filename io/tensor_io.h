// Tensors ↔ safetensors files. A state dict written by PyTorch
// (`safetensors.torch.save_file(model.state_dict(), path)`) loads by name:
//   model->load_state_dict(peft::io::load_file(path));
//   peft::io::save_file(model->state_dict(), path);
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace peft::io {

// Every tensor of the file, in file order, copied into CPU tensors (the file is not kept
// open). F32, F64, I64, BF16 and F16 load as themselves; other dtypes are refused naming the key.
NamedTensors load_file(const std::string& path);
// One tensor of an open file (copied).
Tensor load_tensor(const SafetensorsFile& file, const std::string& name);
// Writes atomically (see write_safetensors). Names must be unique; tensors may be views.
void save_file(const NamedTensors& tensors, const std::string& path,
               const std::map<std::string, std::string>& metadata = {});
// The value of `name` in a NamedTensors list, or throws naming it.
const Tensor& find_tensor(const NamedTensors& tensors, const std::string& name);

}  // namespace peft::io
