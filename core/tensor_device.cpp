// Moving tensors between devices: Tensor::to(Device) (with its backward rule) and the copy
// behind Tensor::copy_ when either side is not on the CPU. Until CUDA copy kernels exist, any
// copy that is not one contiguous block of the same dtype is staged through host memory: the
// strided CPU kernel does the layout and dtype work, the device sees only byte copies.
#include "core/autograd.h"
#include "core/cuda_api.h"
#include "core/dispatch.h"

namespace peft {

namespace {

// The elements a view can touch, [lo, lo + count) of its storage (strides are never negative).
struct Span {
  int64_t lo = 0, count = 0;
};

Span span_of(const Tensor& t) {
  int64_t hi = t.offset();
  for (int64_t i = 0; i < t.dim(); ++i) hi += (t.shape()[i] - 1) * t.strides()[i];
  return {t.offset(), hi - t.offset() + 1};
}

char* span_ptr(const Tensor& t, const Span& sp) {
  return static_cast<char*>(t.storage()->data()) + sp.lo * static_cast<int64_t>(dtype_size(t.dtype()));
}

// A CPU tensor with t's shape, strides and dtype over a host copy of t's span (numel > 0).
Tensor host_view(const Tensor& t, const Span& sp) {
  const size_t nbytes = static_cast<size_t>(sp.count) * dtype_size(t.dtype());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(nbytes, Device::cpu());
  cuda::copy_bytes(impl->storage->data(), Device::cpu(), span_ptr(t, sp), t.device(), nbytes);
  impl->shape = t.shape();
  impl->strides = t.strides();
  impl->offset = t.offset() - sp.lo;
  impl->dtype = t.dtype();
  return Tensor(impl);
}

}  // namespace

namespace detail {

void copy_across_devices(const Tensor& dst_in, const Tensor& src) {
  PEFT_CHECK(dst_in.shape() == src.shape(), "copy_: source shape ", shape_str(src.shape()),
             " does not match destination shape ", shape_str(dst_in.shape()));
  if (dst_in.numel() == 0) return;
  NoGradGuard no_grad;
  Tensor dst = dst_in;  // a handle: copy_ below writes the same memory
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    cuda::copy_bytes(dst.raw_data(), dst.device(), src.raw_data(), src.device(), dst.nbytes());
    return;
  }
  const Tensor hsrc = src.device().is_cpu() ? src : host_view(src, span_of(src));
  if (dst.device().is_cpu()) {
    dst.copy_(hsrc);
  } else if (dst.is_contiguous()) {
    Tensor staged = Tensor::empty(dst.shape(), dst.dtype());
    staged.copy_(hsrc);
    cuda::copy_bytes(dst.raw_data(), dst.device(), staged.raw_data(), Device::cpu(), dst.nbytes());
  } else {
    // Read the destination's span, write the view into it on the host, write the span back:
    // the bytes between the view's elements go back unchanged (one stream: nothing else
    // writes them in between).
    const Span sp = span_of(dst);
    Tensor hdst = host_view(dst, sp);
    hdst.copy_(hsrc);
    cuda::copy_bytes(span_ptr(dst, sp), dst.device(), hdst.storage()->data(), Device::cpu(),
                     static_cast<size_t>(sp.count) * dtype_size(dst.dtype()));
  }
}

}  // namespace detail

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  // Allocation comes first: a missing device or a full one throws before anything changes.
  Tensor out = Tensor::empty(shape(), dtype(), device);
  {
    NoGradGuard g;
    out.copy_(*this);
  }
  if (is_floating(dtype())) {
    const Device src = this->device();
    // The gradient goes back to where the input lives (torch's ToCopyBackward).
    autograd::record("ToCopyBackward", {*this}, {out}, [src](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].to(src)};
    });
  }
  return out;
}

}  // namespace peft
