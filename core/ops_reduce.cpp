// Reductions: sum / mean over dims, max / argmax over one dim.
#include <cmath>
#include <limits>

#include "core/autograd.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "kernels/cpu/elementwise.h"

namespace peft {

namespace kc = kernels::cpu;

namespace {
std::vector<bool> reduced_mask(const Tensor& a, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(a.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, a.dim(), op);
    if (a.dim() == 0) continue;
    PEFT_CHECK(!mask[w] || dims.empty(), op, ": dimension ", d, " appears more than once in the list of dims");
    mask[w] = true;
  }
  return mask;
}
}  // namespace

Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  PEFT_PROFILE_OP("sum", a);
  detail::check_float_inputs_any_device("sum", {&a});
  std::vector<bool> mask = reduced_mask(a, dims, "sum");
  Shape keep_shape = a.shape(), out_shape;
  for (int64_t i = 0; i < a.dim(); ++i) {
    if (mask[i]) keep_shape[i] = 1;
    if (!mask[i] || keepdim) out_shape.push_back(keep_shape[i]);
  }
  Tensor out = Tensor::zeros(keep_shape, a.dtype(), a.device());
  Shape out_strides = out.strides();
  for (int64_t i = 0; i < a.dim(); ++i)
    if (mask[i]) out_strides[i] = 0;
  if (a.device().is_cuda()) {
    cuda_ops::sum_reduce(a.shape(), out.raw_data(), out_strides, a.raw_data(), a.strides(), a.dtype(), a.device());
  } else {
    PEFT_DISPATCH_FLOAT(a.dtype(), "sum", [&] {
      kc::sum_reduce<scalar_t>(a.shape(), out.data_ptr<scalar_t>(), out_strides, a.data_ptr<scalar_t>(), a.strides());
    });
  }
  {
    NoGradGuard g;
    out = out.view(out_shape);
  }
  Shape in_shape = a.shape();
  autograd::record("SumBackward", {a}, {out}, [in_shape, keep_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].reshape(keep_shape).expand(in_shape)};
  });
  return out;
}

Tensor sum(const Tensor& a) {
  return sum(a, {}, false);
}

Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  PEFT_PROFILE_OP("mean", a);
  std::vector<bool> mask = reduced_mask(a, dims, "mean");
  int64_t count = 1;
  for (int64_t i = 0; i < a.dim(); ++i)
    if (mask[i]) count *= a.shape()[i];
  return mul(sum(a, dims, keepdim), 1.0 / static_cast<double>(count));
}

Tensor mean(const Tensor& a) {
  return mean(a, {}, false);
}

std::pair<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim) {
  detail::check_float_inputs_any_device("max", {&a});
  const int64_t d = wrap_dim(dim, a.dim(), "max");
  const int64_t n = a.dim() == 0 ? 1 : a.shape()[d];
  PEFT_CHECK(n > 0, "max: cannot reduce over a zero-size dimension ", d, " of shape ", shape_str(a.shape()));
  const Device dev = a.device();
  if (dev.is_cuda() && a.dtype() == DType::BF16) {  // exact in F32 (BF16 ⊂ F32); the kernel takes F32 / F64
    auto [v, i] = max(a.to(DType::F32), dim, keepdim);
    return {v.to(DType::BF16), i};
  }
  // Move the reduced dim last and make rows contiguous.
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < a.dim(); ++i)
    if (i != d) perm.push_back(i);
  if (a.dim() > 0) perm.push_back(d);
  Tensor rows;
  {
    NoGradGuard g;
    rows = a.detach().permute(perm).contiguous();
  }
  const int64_t nrows = a.numel() / n;
  Shape keep_shape = a.shape(), out_shape;
  if (a.dim() > 0) keep_shape[d] = 1;
  for (int64_t i = 0; i < a.dim(); ++i)
    if (i != d || keepdim) out_shape.push_back(keep_shape[i]);
  Tensor values = Tensor::empty(out_shape, a.dtype(), dev), indices = Tensor::empty(out_shape, DType::I64, dev);
  if (dev.is_cuda()) {
    cuda_ops::max_lastdim(nrows, n, rows.raw_data(), values.raw_data(), indices.data_ptr<int64_t>(), a.dtype(), dev);
  } else {
    PEFT_DISPATCH_FLOAT(a.dtype(), "max", [&] {
      const scalar_t* x = rows.data_ptr<scalar_t>();
      scalar_t* v = values.data_ptr<scalar_t>();
      int64_t* idx = indices.data_ptr<int64_t>();
      for (int64_t r = 0; r < nrows; ++r) {
        const scalar_t* row = x + r * n;
        int64_t best = 0;
        for (int64_t j = 1; j < n; ++j)
          if (row[j] > row[best] || (std::isnan(row[j]) && !std::isnan(row[best]))) best = j;
        v[r] = row[best];
        idx[r] = best;
      }
    });
  }
  Shape in_shape = a.shape();
  DType dt = a.dtype();
  Tensor saved_idx = indices;
  autograd::record("MaxBackward", {a}, {values, indices},
                   [in_shape, keep_shape, d, dt, dev, saved_idx, n](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     // Scatter the gradient to the argmax positions.
                     Tensor gi = Tensor::zeros(in_shape, dt, dev);
                     Tensor gv = detail::contiguous_detached(g[0].reshape(keep_shape));
                     int64_t inner = 1;
                     for (size_t k = static_cast<size_t>(d) + 1; k < in_shape.size(); ++k) inner *= in_shape[k];
                     const int64_t outer = gv.numel() / std::max<int64_t>(inner, 1);
                     if (dev.is_cuda()) {
                       cuda_ops::max_backward_scatter(outer, n, inner, saved_idx.data_ptr<int64_t>(), gv.raw_data(),
                                                      gi.raw_data(), dt, dev);
                       return {gi};
                     }
                     const int64_t* idx = saved_idx.data_ptr<int64_t>();
                     PEFT_DISPATCH_FLOAT(dt, "max_backward", [&] {
                       scalar_t* o = gi.data_ptr<scalar_t>();
                       const scalar_t* s = gv.data_ptr<scalar_t>();
                       for (int64_t p = 0; p < outer; ++p)
                         for (int64_t q = 0; q < inner; ++q) {
                           int64_t r = p * inner + q;
                           o[(p * n + idx[r]) * inner + q] = s[r];
                         }
                     });
                     return {gi};
                   });
  return {values, indices};
}

Tensor max(const Tensor& a) { return max(a.reshape({-1}), 0, false).first; }

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  PEFT_PROFILE_OP("argmax", a);
  NoGradGuard g;
  return max(a.detach(), dim, keepdim).second;
}

}  // namespace peft
