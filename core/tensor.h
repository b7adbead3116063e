// Tensor: a cheap handle (shared_ptr) on a TensorImpl that views shared Storage through
// shape, strides and an element offset. Views (reshape, transpose, slice, expand, ...)
// share storage and take part in autograd. Math lives in core/ops.h.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/storage.h"

namespace peft {

using Shape = std::vector<int64_t>;
class Tensor;
// Name → tensor pairs in a meaningful order (a state dict, the tensors of a file).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
namespace autograd { class Node; }
class Generator;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape, strides;  // strides in elements
  int64_t offset = 0;    // in elements
  DType dtype = DType::F32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;              // accumulated gradient (leaves)
  std::shared_ptr<autograd::Node> grad_fn;       // producer (non-leaves)
  uint32_t output_nr = 0;                        // which output of grad_fn
  std::weak_ptr<autograd::Node> grad_accumulator;  // leaves: cached AccumulateGrad node
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (dtype defaults to F32; empty/zeros/ones/full take any device, the rest
  // build on the CPU)
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = default_device());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = default_device());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = default_device());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = default_device());
  static Tensor arange(double start, double end, double step = 1, DType dtype = DType::F32);
  static Tensor arange(int64_t end, DType dtype = DType::F32) { return arange(0, static_cast<double>(end), 1, dtype); }
  // U(low, high) and N(mean, std) from the global generator or the one given.
  static Tensor rand(const Shape& shape, DType dtype = DType::F32, Generator* gen = nullptr, double low = 0, double high = 1);
  static Tensor randn(const Shape& shape, DType dtype = DType::F32, Generator* gen = nullptr, double mean = 0, double std = 1);
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape);
  static Tensor scalar(double v, DType dtype = DType::F32) { return full({}, v, dtype); }
  // Wraps existing memory (no copy); keepalive owns it.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keepalive);

  // ---- metadata
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& sizes() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // Pointer to the first element (offset applied), in the tensor's device memory: CPU code
  // must not dereference it for a CUDA tensor (ops refuse those through detail::check_cpu).
  // Checks the dtype.
  template <class T> T* data_ptr() const;
  void* raw_data() const;
  // Value of a one-element tensor as double (device tensors are copied to the host first, as
  // in to_vector and to_string).
  double item() const;
  template <class T> T item() const { return static_cast<T>(item()); }
  // Copies out as a flat vector (any layout), converting to T.
  template <class T> std::vector<T> to_vector() const;

  // ---- autograd
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool r);          // leaves only, floating dtypes only
  Tensor& requires_grad_(bool r = true) { return set_requires_grad(r); }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;                        // undefined if none
  void set_grad(const Tensor& g);
  void zero_grad();                           // drops the gradient
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  // Backpropagates from this tensor. A scalar needs no seed; otherwise pass grad_output.
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;                      // shares storage, no history

  // ---- views (share storage; autograd-aware)
  Tensor view(const Shape& shape) const;      // needs compatible strides (contiguous)
  Tensor reshape(const Shape& shape) const;   // view when possible, else a copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  // torch.t: transposes a 2-D tensor; 0-D and 1-D tensors are returned as is.
  Tensor t() const {
    PEFT_CHECK(dim() <= 2, "t: expects a tensor with <= 2 dimensions, but got shape ", shape_str(shape()));
    return dim() < 2 ? *this : transpose(0, 1);
  }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops dim
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const { return slice(dim, start, start + length); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;    // -1 keeps a size
  Tensor contiguous() const;                  // self if already contiguous
  Tensor clone() const;                       // contiguous copy with history
  Tensor to(DType dtype) const;               // conversion (autograd between float types)
  // Copy on `device` (self when already there); gradients flow back to this tensor's device.
  Tensor to(Device device) const;

  // ---- in-place (refused on tensors that need grad while grad mode is on)
  Tensor& copy_(const Tensor& src);           // broadcasts src, converts dtype, crosses devices
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0); }
  Tensor& add_(const Tensor& other, double alpha = 1);
  Tensor& mul_(double value);

  std::string to_string() const;

 private:
  TensorImpl& impl() const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Contiguous strides for a shape.
Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);
// Normalises a possibly negative dim against rank `ndim` with a clear error.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// ---- grad mode
struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};
// RAII: disables gradient recording in its scope (torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
 private:
  bool prev_;
};

template <class T> T* Tensor::data_ptr() const {
  PEFT_CHECK(dtype() == dtype_of<T>::value, "data_ptr: tensor has dtype ", dtype_name(dtype()),
             ", asked for ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw_data());  // raw_data refuses meta tensors
}

}  // namespace peft
