// Moving tensors between devices: Tensor::to(Device) (with its backward rule) and the copy
// behind Tensor::copy_ when either side is not on the CPU. Layout and dtype work runs where the
// data is (the CPU kernel or the CUDA copy_convert kernel); between devices only contiguous
// blocks of bytes travel.
#include "core/autograd.h"
#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"

namespace peft {

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
  if (dst.device() == src.device()) {  // one CUDA device (CPU -> CPU never comes here)
    cuda_ops::copy_convert(dst.shape(), dst.raw_data(), dst.dtype(), dst.strides(), src.raw_data(), src.dtype(),
                           src.strides(), dst.device());
    return;
  }
  // Across devices: a contiguous copy of src on its own device (a same-device copy_, so a
  // broadcast or strided src is laid out there), one byte transfer, then dst's device converts
  // and scatters into dst's layout (again a same-device copy_). Allocations come before any
  // write to dst, so a missing or full device leaves dst as it was.
  const Tensor packed = src.is_contiguous() ? src : Tensor::empty(src.shape(), src.dtype(), src.device()).copy_(src);
  Tensor moved = Tensor::empty(src.shape(), src.dtype(), dst.device());
  cuda::copy_bytes(moved.raw_data(), dst.device(), packed.raw_data(), src.device(), moved.nbytes());
  dst.copy_(moved);
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
