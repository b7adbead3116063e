// cat / stack / split / chunk.
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"

namespace peft {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  PEFT_PROFILE_OP("cat", (tensors.empty() ? Tensor() : tensors[0]));
  PEFT_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& first = tensors[0];
  const int64_t d = wrap_dim(dim, first.dim(), "cat");
  PEFT_CHECK(first.dim() > 0, "cat: zero-dimensional tensor cannot be concatenated");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    PEFT_CHECK(t.dtype() == first.dtype(), "cat: expected dtype ", dtype_name(first.dtype()), " for tensor ", i,
               ", got ", dtype_name(t.dtype()));
    PEFT_CHECK(t.device() == first.device(), "cat: tensor ", i, " is on ", t.device().str(), ", expected ",
               first.device().str());
    PEFT_CHECK(t.dim() == first.dim(), "cat: tensor ", i, " has rank ", t.dim(), ", expected ", first.dim());
    for (int64_t k = 0; k < t.dim(); ++k)
      PEFT_CHECK(k == d || t.shape()[k] == first.shape()[k], "cat: sizes of tensors must match except in dimension ",
                 d, ": tensor 0 has shape ", shape_str(first.shape()), ", tensor ", i, " has shape ", shape_str(t.shape()));
    sizes.push_back(t.shape()[d]);
    out_shape[d] += t.shape()[d];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  {
    NoGradGuard g;
    int64_t off = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      out.slice(d, off, off + sizes[i]).copy_(tensors[i].detach());
      off += sizes[i];
    }
  }
  if (is_floating(first.dtype()))
    autograd::record("CatBackward", tensors, {out}, [sizes, d](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      std::vector<Tensor> res;
      int64_t off = 0;
      for (int64_t s : sizes) {
        res.push_back(g[0].slice(d, off, off + s));
        off += s;
      }
      return res;
    });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  PEFT_PROFILE_OP("stack", (tensors.empty() ? Tensor() : tensors[0]));
  PEFT_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  for (size_t i = 0; i < tensors.size(); ++i) {
    PEFT_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: expects each tensor to be equal size, but got ",
               shape_str(tensors[0].shape()), " at entry 0 and ", shape_str(tensors[i].shape()), " at entry ", i);
    us.push_back(tensors[i].unsqueeze(d));
  }
  return cat(us, d);
}

std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t dim) {
  const int64_t d = wrap_dim(dim, a.dim(), "split");
  PEFT_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  std::vector<Tensor> out;
  const int64_t n = a.shape()[d];
  for (int64_t off = 0; off < n || (n == 0 && out.empty()); off += split_size)
    out.push_back(a.slice(d, off, std::min(off + split_size, n)));
  return out;
}

std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim) {
  PEFT_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int64_t n = a.shape()[wrap_dim(dim, a.dim(), "chunk")];
  return split(a, std::max<int64_t>((n + chunks - 1) / chunks, 1), dim);
}

}  // namespace peft
