// lora_multi: multi-adapter LoRA for serving (Punica's BGMV), the fast path of PEFT's mixed-batch
// inference for lora.Linear. Each row's adapter is read from a table of weight pointers: no
// gather of rows by adapter, no stacking of weights, one shrink and one expand pass for the whole
// batch (kernels/cpu/lora_multi.h, kernels/cuda/lora_multi.cuh). Inference only.
#include <algorithm>
#include <cstring>

#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "kernels/cpu/lora_multi.h"

namespace peft {

namespace {
int64_t bits_of(const void* p) {
  int64_t v = 0;
  std::memcpy(&v, &p, sizeof(p));
  return v;
}
int64_t bits_of(double d) {
  int64_t v = 0;
  std::memcpy(&v, &d, sizeof(d));
  return v;
}
}  // namespace

bool lora_multi_supported(DType adapters, DType y, Device device) {
  const bool both = (adapters == DType::F32 && (y == DType::F32 || y == DType::F64)) ||
                    (adapters == DType::F64 && y == DType::F64);
  const bool cuda_only = (adapters == DType::F32 || adapters == DType::BF16) && y == DType::BF16;
  return both || (cuda_only && device.is_cuda());
}

Tensor lora_multi(const Tensor& y, const Tensor& x, const std::vector<Tensor>& A, const std::vector<Tensor>& B,
                  const std::vector<double>& scales, const std::vector<int64_t>& row_adapter) {
  PEFT_PROFILE_OP("lora_multi", y);
  PEFT_CHECK(y.defined() && x.defined(), "lora_multi: y and x must be defined");
  PEFT_CHECK(x.dim() == 2 && y.dim() == 2 && x.shape()[0] == y.shape()[0], "lora_multi: expected x (N, in) and y (N, "
             "out) with the same N, got ", shape_str(x.shape()), " and ", shape_str(y.shape()));
  const int64_t N = x.shape()[0], in = x.shape()[1], out = y.shape()[1];
  const Device dev = x.device();
  PEFT_CHECK(y.device() == dev, "lora_multi: expected all tensors on the same device, got ", dev.str(), " (x) and ",
             y.device().str(), " (y)");
  PEFT_CHECK(is_floating(x.dtype()) && is_floating(y.dtype()), "lora_multi: expected floating point x and y, got ",
             dtype_name(x.dtype()), " and ", dtype_name(y.dtype()));
  PEFT_CHECK(A.size() == B.size() && A.size() == scales.size(), "lora_multi: ", A.size(), " lora_A, ", B.size(),
             " lora_B and ", scales.size(), " scales; expected one of each per adapter");
  PEFT_CHECK(static_cast<int64_t>(row_adapter.size()) == N, "lora_multi: ", row_adapter.size(),
             " row adapter ids for ", N, " rows");
  const int64_t n_adapters = static_cast<int64_t>(A.size());
  for (size_t n = 0; n < row_adapter.size(); ++n)
    PEFT_CHECK(row_adapter[n] >= -1 && row_adapter[n] < n_adapters, "lora_multi: row ", n, " has adapter id ",
               row_adapter[n], ", expected -1 (none) or an index below ", n_adapters);
  bool needs_grad = x.requires_grad() || y.requires_grad();
  int64_t r_max = 0;
  std::vector<Tensor> Ac(A.size()), Bc(B.size());
  for (size_t a = 0; a < A.size(); ++a) {
    PEFT_CHECK(A[a].dim() == 2 && A[a].shape()[1] == in && B[a].dim() == 2 && B[a].shape()[0] == out &&
                   B[a].shape()[1] == A[a].shape()[0],
               "lora_multi: adapter ", a, " has lora_A ", shape_str(A[a].shape()), " and lora_B ",
               shape_str(B[a].shape()), "; expected (r, ", in, ") and (", out, ", r)");
    PEFT_CHECK(A[a].dtype() == x.dtype() && B[a].dtype() == x.dtype(), "lora_multi: adapter ", a, " is ",
               dtype_name(A[a].dtype()), " / ", dtype_name(B[a].dtype()), " but x is ", dtype_name(x.dtype()),
               " (cast x to the adapters' dtype)");
    PEFT_CHECK(A[a].device() == dev && B[a].device() == dev, "lora_multi: adapter ", a, " is on ",
               A[a].device().str(), " but x on ", dev.str());
    needs_grad = needs_grad || A[a].requires_grad() || B[a].requires_grad();
    Ac[a] = detail::contiguous_detached(A[a]);
    Bc[a] = detail::contiguous_detached(B[a]);
    r_max = std::max(r_max, A[a].shape()[0]);
  }
  PEFT_CHECK(lora_multi_supported(x.dtype(), y.dtype(), dev), "lora_multi: unsupported dtypes on ", dev.str(),
             ": adapters ", dtype_name(x.dtype()), ", output ", dtype_name(y.dtype()), " (F32/F32, F64/F64, F32/F64; "
             "on CUDA also F32/BF16 and BF16/BF16)");
  PEFT_CHECK(!(needs_grad && GradMode::is_enabled()), "lora_multi: inference only (it records no gradient); run it "
             "under NoGradGuard or with tensors that do not require grad");
  Tensor xc = detail::contiguous_detached(x), yc = detail::contiguous_detached(y);
  Tensor result = Tensor::empty(y.shape(), y.dtype(), dev);
  if (dev.is_cuda()) {
    std::vector<int64_t> words;
    words.reserve(A.size() * 4);
    for (size_t a = 0; a < A.size(); ++a) {
      words.push_back(bits_of(Ac[a].raw_data()));
      words.push_back(bits_of(Bc[a].raw_data()));
      words.push_back(Ac[a].shape()[0]);
      words.push_back(bits_of(scales[a]));
    }
    if (words.empty()) words.push_back(0);  // no adapter: every id is -1, the table is never read
    Tensor table = Tensor::from_vector(words, {static_cast<int64_t>(words.size())}).to(dev);
    Tensor rows = Tensor::from_vector(row_adapter, {N}).to(dev);
    Tensor u = Tensor::empty({N, r_max}, x.dtype() == DType::F64 ? DType::F64 : DType::F32, dev);
    cuda_ops::lora_multi_add(N, in, out, r_max, xc.raw_data(), x.dtype(), yc.raw_data(), result.raw_data(), y.dtype(),
                             rows.data_ptr<int64_t>(), table.raw_data(), u.raw_data(), dev);
    return result;
  }
  std::vector<kernels::cpu::LoraMultiAdapter> table;
  for (size_t a = 0; a < A.size(); ++a)
    table.push_back({Ac[a].raw_data(), Bc[a].raw_data(), Ac[a].shape()[0], scales[a]});
  namespace kc = kernels::cpu;
  if (x.dtype() == DType::F32 && y.dtype() == DType::F32)
    kc::lora_multi_add<float, float>(N, in, out, xc.data_ptr<float>(), yc.data_ptr<float>(), result.data_ptr<float>(),
                                     row_adapter.data(), table.data());
  else if (x.dtype() == DType::F64 && y.dtype() == DType::F64)
    kc::lora_multi_add<double, double>(N, in, out, xc.data_ptr<double>(), yc.data_ptr<double>(),
                                       result.data_ptr<double>(), row_adapter.data(), table.data());
  else  // F32 adapters, F64 output: the last pair lora_multi_supported allows on the CPU
    kc::lora_multi_add<float, double>(N, in, out, xc.data_ptr<float>(), yc.data_ptr<double>(),
                                      result.data_ptr<double>(), row_adapter.data(), table.data());
  return result;
}

}  // namespace peft
