// embedding, conv2d, avg_pool2d and global average pooling, over kernels/cpu; embedding, conv2d
// and avg_pool2d also over kernels/cuda (core/cuda_ops.h; conv2d through cuDNN or the direct
// kernels, chosen there).
#include "core/autograd.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/pool.h"

namespace peft {

namespace kc = kernels::cpu;

Tensor embedding(const Tensor& weight, const Tensor& ids_in, std::optional<int64_t> padding_idx) {
  PEFT_PROFILE_OP("embedding", weight);
  detail::check_float_inputs_any_device("embedding", {&weight});
  PEFT_CHECK(weight.dim() == 2, "embedding: weight must be 2-D (num_embeddings, dim), got ", shape_str(weight.shape()));
  PEFT_CHECK(ids_in.dtype() == DType::I64, "embedding: indices must be I64, got ", dtype_name(ids_in.dtype()));
  PEFT_CHECK(ids_in.device() == weight.device(), "embedding: expected all tensors on the same device, got ",
             weight.device().str(), " (weight) and ", ids_in.device().str(), " (indices)");
  const int64_t V = weight.shape()[0], D = weight.shape()[1];
  const Device dev = weight.device();
  Tensor ids = detail::contiguous_detached(ids_in);
  const int64_t n = ids.numel();
  // Device ids are checked by the gather kernel itself (kernels/cuda/index_check.cuh).
  const int64_t* ip = ids.data_ptr<int64_t>();
  if (dev.is_cpu())
    for (int64_t i = 0; i < n; ++i)
      PEFT_CHECK(ip[i] >= 0 && ip[i] < V, "embedding: index ", ip[i], " at position ", i,
                 " is out of range for an embedding table of ", V, " rows");
  int64_t pad = padding_idx.value_or(-1);
  if (padding_idx) {
    PEFT_CHECK(*padding_idx >= -V && *padding_idx < V, "embedding: padding_idx ", *padding_idx, " out of range for ", V, " rows");
    if (pad < 0) pad += V;
  }
  Tensor w = detail::contiguous_detached(weight);
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor out = Tensor::empty(out_shape, w.dtype(), dev);
  if (dev.is_cuda()) cuda_ops::embedding_forward(n, D, V, w.raw_data(), ip, out.raw_data(), w.dtype(), dev);
  else PEFT_DISPATCH_FLOAT(w.dtype(), "embedding", [&] {
    kc::embedding_forward<scalar_t>(n, D, w.data_ptr<scalar_t>(), ip, out.data_ptr<scalar_t>());
  });
  DType dt = w.dtype();
  autograd::record("EmbeddingBackward", {weight}, {out}, [ids, n, D, V, pad, dt](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor dy = detail::contiguous_detached(g[0]);
    Tensor dw = Tensor::empty({V, D}, dt, ids.device());
    if (ids.device().is_cuda()) {
      cuda_ops::embedding_backward(n, D, V, ids.data_ptr<int64_t>(), dy.raw_data(), dw.raw_data(), pad, dt, ids.device());
      return {dw};
    }
    PEFT_DISPATCH_FLOAT(dt, "embedding_backward", [&] {
      kc::embedding_backward<scalar_t>(n, D, V, ids.data_ptr<int64_t>(), dy.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>(), pad);
    });
    return {dw};
  });
  return out;
}

Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  PEFT_PROFILE_OP("index_select", a);
  PEFT_CHECK(index.dim() == 1, "index_select: index must be 1-D, got shape ", shape_str(index.shape()));
  PEFT_CHECK(a.dim() >= 1, "index_select: input must have at least one dimension");
  PEFT_CHECK(index.dtype() == DType::I64, "index_select: index must be I64, got ", dtype_name(index.dtype()));
  const int64_t d = wrap_dim(dim, a.dim(), "index_select");
  PEFT_CHECK(index.device() == a.device(), "index_select: expected all tensors on the same device, got ",
             a.device().str(), " (input) and ", index.device().str(), " (index)");
  if (!is_floating(a.dtype())) {  // integer data has no gradient: copy slice by slice (on any device)
    std::vector<int64_t> ids = index.to_vector<int64_t>();
    Shape out_shape = a.shape();
    out_shape[d] = static_cast<int64_t>(ids.size());
    Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
    for (size_t i = 0; i < ids.size(); ++i) {
      PEFT_CHECK(ids[i] >= 0 && ids[i] < a.shape()[d], "index_select: index ", ids[i], " is out of range for dimension ",
                 d, " of size ", a.shape()[d]);
      out.select(d, static_cast<int64_t>(i)).copy_(a.select(d, ids[i]));
    }
    return out;
  }
  // Picking along dim 0 of a (rows, rest) matrix is an embedding lookup: reuse its forward
  // and scatter-add backward (on CUDA too, where the ids are range-checked in the kernel).
  Tensor moved = d == 0 ? a : a.transpose(0, d);
  Shape rest(moved.shape().begin() + 1, moved.shape().end());
  Tensor rows = embedding(moved.reshape({moved.shape()[0], -1}), index);
  Shape out_shape{index.shape()[0]};
  out_shape.insert(out_shape.end(), rest.begin(), rest.end());
  Tensor out = rows.reshape(out_shape);
  return d == 0 ? out : out.transpose(0, d);
}

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o) {
  PEFT_PROFILE_OP("conv2d", x_in);
  detail::check_float_inputs_any_device("conv2d", {&x_in, &w_in, &b_in});
  PEFT_CHECK(x_in.dim() == 4, "conv2d: expected 4-D input (N, C, H, W), got ", shape_str(x_in.shape()));
  PEFT_CHECK(w_in.dim() == 4, "conv2d: expected 4-D weight (O, C/groups, kh, kw), got ", shape_str(w_in.shape()));
  const int64_t N = x_in.shape()[0], C = x_in.shape()[1], H = x_in.shape()[2], W = x_in.shape()[3];
  const int64_t O = w_in.shape()[0], kh = w_in.shape()[2], kw = w_in.shape()[3], g = o.groups;
  PEFT_CHECK(g >= 1 && C % g == 0 && O % g == 0, "conv2d: groups ", g, " must divide in_channels ", C, " and out_channels ", O);
  PEFT_CHECK(w_in.shape()[1] * g == C, "conv2d: weight of shape ", shape_str(w_in.shape()), " with groups=", g,
             " expects input to have ", w_in.shape()[1] * g, " channels, but got input of shape ", shape_str(x_in.shape()));
  PEFT_CHECK(!b_in.defined() || (b_in.dim() == 1 && b_in.shape()[0] == O), "conv2d: bias shape ", shape_str(b_in.shape()),
             " does not match ", O, " output channels");
  PEFT_CHECK(o.stride.first > 0 && o.stride.second > 0 && o.dilation.first > 0 && o.dilation.second > 0 &&
             o.padding.first >= 0 && o.padding.second >= 0, "conv2d: stride and dilation must be positive and padding non-negative");
  kc::Conv2dShape s = kc::conv2d_shape(N, C, H, W, O, kh, kw, o.stride.first, o.stride.second, o.padding.first,
                                       o.padding.second, o.dilation.first, o.dilation.second, g);
  PEFT_CHECK(s.Ho > 0 && s.Wo > 0, "conv2d: input of size ", shape_str(x_in.shape()), " is too small for kernel ",
             kh, "x", kw, " (output would be ", s.Ho, "x", s.Wo, ")");
  const Device dev = x_in.device();
  Tensor x = detail::contiguous_detached(x_in), w = detail::contiguous_detached(w_in);
  Tensor b = b_in.defined() ? detail::contiguous_detached(b_in) : Tensor();
  Tensor y = Tensor::empty({N, O, s.Ho, s.Wo}, x.dtype(), dev);
  if (dev.is_cuda()) {
    cuda_ops::conv2d_forward(s, x.raw_data(), w.raw_data(), b.defined() ? b.raw_data() : nullptr, y.raw_data(),
                             x.dtype(), dev);
  } else {
    PEFT_DISPATCH_FLOAT(x.dtype(), "conv2d", [&] {
      kc::conv2d_forward<scalar_t>(s, x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                   b.defined() ? b.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>());
    });
  }
  bool gx = x_in.requires_grad(), gw = w_in.requires_grad(), gb = b_in.defined() && b_in.requires_grad();
  Tensor x_saved = gw ? x : Tensor(), w_saved = gx ? w : Tensor();
  autograd::record("ConvolutionBackward", {x_in, w_in, b_in}, {y},
                   [s, x_saved, w_saved, gx, gw, gb, dev, xs = x.shape(), ws = w.shape(), dt = x.dtype()](
                       const std::vector<Tensor>& gr) -> std::vector<Tensor> {
                     Tensor dy = detail::contiguous_detached(gr[0]);
                     Tensor dx = gx ? Tensor::empty(xs, dt, dev) : Tensor();
                     Tensor dw = gw ? Tensor::empty(ws, dt, dev) : Tensor();
                     Tensor db = gb ? Tensor::empty({ws[0]}, dt, dev) : Tensor();
                     if (dev.is_cuda()) {
                       cuda_ops::conv2d_backward(s, gw ? x_saved.raw_data() : nullptr,
                                                 gx ? w_saved.raw_data() : nullptr, dy.raw_data(),
                                                 gx ? dx.raw_data() : nullptr, gw ? dw.raw_data() : nullptr,
                                                 gb ? db.raw_data() : nullptr, dt, dev);
                       return {dx, dw, db};
                     }
                     PEFT_DISPATCH_FLOAT(dt, "conv2d_backward", [&] {
                       kc::conv2d_backward<scalar_t>(s, gw ? x_saved.data_ptr<scalar_t>() : nullptr,
                                                     gx ? w_saved.data_ptr<scalar_t>() : nullptr, dy.data_ptr<scalar_t>(),
                                                     gx ? dx.data_ptr<scalar_t>() : nullptr,
                                                     gw ? dw.data_ptr<scalar_t>() : nullptr,
                                                     gb ? db.data_ptr<scalar_t>() : nullptr);
                     });
                     return {dx, dw, db};
                   });
  return y;
}

Tensor avg_pool2d(const Tensor& x_in, const AvgPool2dOptions& o) {
  PEFT_PROFILE_OP("avg_pool2d", x_in);
  detail::check_float_inputs_any_device("avg_pool2d", {&x_in});
  PEFT_CHECK(x_in.dim() == 4, "avg_pool2d: expected 4-D input (N, C, H, W), got ", shape_str(x_in.shape()));
  const int64_t kh = o.kernel.first, kw = o.kernel.second;
  const int64_t sh = o.stride.first ? o.stride.first : kh, sw = o.stride.second ? o.stride.second : kw;
  PEFT_CHECK(kh > 0 && kw > 0 && sh > 0 && sw > 0, "avg_pool2d: kernel and stride must be positive");
  PEFT_CHECK(o.padding.first >= 0 && o.padding.first * 2 <= kh && o.padding.second >= 0 && o.padding.second * 2 <= kw,
             "avg_pool2d: pad should be at most half of effective kernel size, but got pad=(", o.padding.first, ", ",
             o.padding.second, "), kernel_size=(", kh, ", ", kw, ")");
  const int64_t N = x_in.shape()[0], C = x_in.shape()[1], H = x_in.shape()[2], W = x_in.shape()[3];
  kc::Pool2dShape s = kc::pool2d_shape(N, C, H, W, kh, kw, sh, sw, o.padding.first, o.padding.second, o.ceil_mode,
                                       o.count_include_pad);
  PEFT_CHECK(s.Ho > 0 && s.Wo > 0, "avg_pool2d: input of size ", shape_str(x_in.shape()), " is too small for kernel ",
             kh, "x", kw);
  Tensor x = detail::contiguous_detached(x_in);
  Tensor y = Tensor::empty({N, C, s.Ho, s.Wo}, x.dtype(), x.device());
  if (x.device().is_cuda()) cuda_ops::avg_pool2d_forward(s, x.raw_data(), y.raw_data(), x.dtype(), x.device());
  else PEFT_DISPATCH_FLOAT(x.dtype(), "avg_pool2d", [&] {
    kc::avg_pool2d_forward<scalar_t>(s, x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>());
  });
  autograd::record("AvgPool2DBackward", {x_in}, {y}, [s, xs = x.shape(), dt = x.dtype(), dev = x.device()](
                                                         const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor dy = detail::contiguous_detached(g[0]);
    Tensor dx = Tensor::empty(xs, dt, dev);
    if (dev.is_cuda()) {
      cuda_ops::avg_pool2d_backward(s, dy.raw_data(), dx.raw_data(), dt, dev);
      return {dx};
    }
    PEFT_DISPATCH_FLOAT(dt, "avg_pool2d_backward", [&] {
      kc::avg_pool2d_backward<scalar_t>(s, dy.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>());
    });
    return {dx};
  });
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::pair<int64_t, int64_t> output_size) {
  PEFT_PROFILE_OP("adaptive_avg_pool2d", x);
  PEFT_CHECK(output_size.first == 1 && output_size.second == 1, "adaptive_avg_pool2d: only output size (1, 1) is "
             "supported, got (", output_size.first, ", ", output_size.second, ")");
  PEFT_CHECK(x.dim() == 4 || x.dim() == 3, "adaptive_avg_pool2d: expected 3-D or 4-D input, got ", shape_str(x.shape()));
  return mean(x, {-2, -1}, true);
}

}  // namespace peft
