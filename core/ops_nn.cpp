// softmax / log_softmax, layer_norm, group_norm, dropout and the losses. Norms and softmax
// run as single ops over the kernels in kernels/cpu or kernels/cuda (through core/cuda_ops.h),
// saving mean/rstd, not as op chains.
#include "core/autograd.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "core/random.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/softmax.h"

namespace peft {

namespace kc = kernels::cpu;
using detail::data_or_null;
using detail::ptr_or_null;

namespace {

Tensor softmax_impl(const Tensor& a_in, int64_t dim, bool log_form) {
  const char* name = log_form ? "log_softmax" : "softmax";
  detail::check_float_inputs_any_device(name, {&a_in});
  const int64_t d = wrap_dim(dim, a_in.dim(), name);
  Tensor a = detail::contiguous_detached(a_in);
  int64_t outer = 1, D = a.dim() ? a.shape()[d] : 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= a.shape()[i];
  for (int64_t i = d + 1; i < a.dim(); ++i) inner *= a.shape()[i];
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_ops::softmax_forward(outer, D, inner, a.raw_data(), out.raw_data(), log_form, a.dtype(), a.device());
  } else {
    PEFT_DISPATCH_FLOAT(a.dtype(), name, [&] {
      kc::softmax_forward<scalar_t>(outer, D, inner, a.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), log_form);
    });
  }
  Tensor os = out.detach();
  autograd::record(log_form ? "LogSoftmaxBackward" : "SoftmaxBackward", {a_in}, {out},
                   [os, outer, D, inner, log_form](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     Tensor dy = detail::contiguous_detached(g[0]);
                     Tensor dx = Tensor::empty(os.shape(), os.dtype(), os.device());
                     if (os.device().is_cuda()) {
                       cuda_ops::softmax_backward(outer, D, inner, os.raw_data(), dy.raw_data(), dx.raw_data(), log_form,
                                                  os.dtype(), os.device());
                       return {dx};
                     }
                     PEFT_DISPATCH_FLOAT(os.dtype(), "softmax_backward", [&] {
                       kc::softmax_backward<scalar_t>(outer, D, inner, os.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(),
                                                      dx.data_ptr<scalar_t>(), log_form);
                     });
                     return {dx};
                   });
  return out;
}

void check_affine(const char* op, const Tensor& t, int64_t n, const char* what) {
  if (!t.defined()) return;
  PEFT_CHECK(t.numel() == n, op, ": ", what, " has shape ", shape_str(t.shape()), ", expected ", n, " elements");
}

// The dtype of a norm's saved mean / rstd: F32 for BF16 data (as PyTorch; the CUDA kernels
// compute them in double and a BF16 rstd would cost every normalised element ~0.4%), else x's.
DType stats_dtype(const Tensor& x) { return x.dtype() == DType::BF16 ? DType::F32 : x.dtype(); }

void check_reduction(const std::string& reduction, const char* op) {
  PEFT_CHECK(reduction == "mean" || reduction == "sum" || reduction == "none", op, ": reduction must be 'mean', 'sum' or "
             "'none', got '", reduction, "'");
}

}  // namespace

Tensor softmax(const Tensor& a, int64_t dim) {
  PEFT_PROFILE_OP("softmax", a);
  return softmax_impl(a, dim, false);
}
Tensor log_softmax(const Tensor& a, int64_t dim) {
  PEFT_PROFILE_OP("log_softmax", a);
  return softmax_impl(a, dim, true);
}

Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias, double eps) {
  PEFT_PROFILE_OP("layer_norm", x_in);
  detail::check_float_inputs_any_device("layer_norm", {&x_in, &weight, &bias});
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  PEFT_CHECK(k >= 1 && x_in.dim() >= k, "layer_norm: input of shape ", shape_str(x_in.shape()),
             " cannot be normalized over ", shape_str(normalized_shape));
  for (int64_t i = 0; i < k; ++i)
    PEFT_CHECK(x_in.shape()[x_in.dim() - k + i] == normalized_shape[i], "layer_norm: expected input with shape [*, ",
               shape_str(normalized_shape).substr(1), ", but got input of size ", shape_str(x_in.shape()));
  const int64_t M = shape_numel(normalized_shape), R = x_in.numel() / std::max<int64_t>(M, 1);
  check_affine("layer_norm", weight, M, "weight");
  check_affine("layer_norm", bias, M, "bias");
  Tensor x = detail::contiguous_detached(x_in);
  Tensor w = weight.defined() ? detail::contiguous_detached(weight) : Tensor();
  Tensor b = bias.defined() ? detail::contiguous_detached(bias) : Tensor();
  const Device dev = x.device();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev), mean = Tensor::empty({R}, stats_dtype(x), dev),
         rstd = Tensor::empty({R}, stats_dtype(x), dev);
  if (dev.is_cuda())
    cuda_ops::layer_norm_forward(R, M, eps, x.raw_data(), ptr_or_null(w), ptr_or_null(b), y.raw_data(), mean.raw_data(),
                                 rstd.raw_data(), x.dtype(), dev);
  else PEFT_DISPATCH_FLOAT(x.dtype(), "layer_norm", [&] {
    kc::layer_norm_forward<scalar_t>(R, M, static_cast<scalar_t>(eps), x.data_ptr<scalar_t>(),
                                     data_or_null<scalar_t>(w),
                                     data_or_null<scalar_t>(b), y.data_ptr<scalar_t>(),
                                     mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>());
  });
  bool gx = x_in.requires_grad(), gw = weight.defined() && weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  // The bias may come without a weight (F.layer_norm(x, shape, None, b)): its gradient takes its own shape.
  const Shape b_shape = bias.defined() ? bias.shape() : Shape{};
  autograd::record("LayerNormBackward", {x_in, weight, bias}, {y},
                   [x, w, mean, rstd, R, M, gx, gw, gb, b_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     const Device dev = x.device();
                     Tensor dy = detail::contiguous_detached(g[0]);
                     Tensor dx = gx ? Tensor::empty(x.shape(), x.dtype(), dev) : Tensor();
                     Tensor dw = gw ? Tensor::empty(w.shape(), x.dtype(), dev) : Tensor();
                     Tensor db = gb ? Tensor::empty(b_shape, x.dtype(), dev) : Tensor();
                     if (dev.is_cuda()) {
                       cuda_ops::layer_norm_backward(R, M, x.raw_data(), ptr_or_null(w), mean.raw_data(),
                                                     rstd.raw_data(), dy.raw_data(), ptr_or_null(dx),
                                                     ptr_or_null(dw), ptr_or_null(db), x.dtype(), dev);
                       return {dx, dw, db};
                     }
                     PEFT_DISPATCH_FLOAT(x.dtype(), "layer_norm_backward", [&] {
                       kc::layer_norm_backward<scalar_t>(
                           R, M, x.data_ptr<scalar_t>(), data_or_null<scalar_t>(w),
                           mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(),
                           gx ? dx.data_ptr<scalar_t>() : nullptr, gw ? dw.data_ptr<scalar_t>() : nullptr,
                           gb ? db.data_ptr<scalar_t>() : nullptr);
                     });
                     return {dx, dw, db};
                   });
  return y;
}

Tensor group_norm(const Tensor& x_in, int64_t G, const Tensor& weight, const Tensor& bias, double eps) {
  PEFT_PROFILE_OP("group_norm", x_in);
  detail::check_float_inputs_any_device("group_norm", {&x_in, &weight, &bias});
  PEFT_CHECK(x_in.dim() >= 2, "group_norm: expected input of at least 2 dims (N, C, *), got ", shape_str(x_in.shape()));
  const int64_t N = x_in.shape()[0], C = x_in.shape()[1], S = x_in.numel() / std::max<int64_t>(N * C, 1);
  PEFT_CHECK(G > 0 && C % G == 0, "group_norm: expected number of channels in input (", C,
             ") to be divisible by num_groups (", G, ")");
  check_affine("group_norm", weight, C, "weight");
  check_affine("group_norm", bias, C, "bias");
  Tensor x = detail::contiguous_detached(x_in);
  Tensor w = weight.defined() ? detail::contiguous_detached(weight) : Tensor();
  Tensor b = bias.defined() ? detail::contiguous_detached(bias) : Tensor();
  const Device dev = x.device();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev), mean = Tensor::empty({N * G}, stats_dtype(x), dev),
         rstd = Tensor::empty({N * G}, stats_dtype(x), dev);
  if (dev.is_cuda())
    cuda_ops::group_norm_forward(N, C, S, G, eps, x.raw_data(), ptr_or_null(w), ptr_or_null(b), y.raw_data(),
                                 mean.raw_data(), rstd.raw_data(), x.dtype(), dev);
  else PEFT_DISPATCH_FLOAT(x.dtype(), "group_norm", [&] {
    kc::group_norm_forward<scalar_t>(N, C, S, G, static_cast<scalar_t>(eps), x.data_ptr<scalar_t>(),
                                     data_or_null<scalar_t>(w),
                                     data_or_null<scalar_t>(b), y.data_ptr<scalar_t>(),
                                     mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>());
  });
  bool gx = x_in.requires_grad(), gw = weight.defined() && weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  const Shape b_shape = bias.defined() ? bias.shape() : Shape{};  // a bias may come without a weight
  autograd::record("GroupNormBackward", {x_in, weight, bias}, {y},
                   [x, w, mean, rstd, N, C, S, G, gx, gw, gb, b_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     const Device dev = x.device();
                     Tensor dy = detail::contiguous_detached(g[0]);
                     Tensor dx = gx ? Tensor::empty(x.shape(), x.dtype(), dev) : Tensor();
                     Tensor dw = gw ? Tensor::empty({C}, x.dtype(), dev) : Tensor();
                     Tensor db = gb ? Tensor::empty({C}, x.dtype(), dev) : Tensor();
                     if (dev.is_cuda())
                       cuda_ops::group_norm_backward(N, C, S, G, x.raw_data(), ptr_or_null(w), mean.raw_data(),
                                                     rstd.raw_data(), dy.raw_data(), ptr_or_null(dx),
                                                     ptr_or_null(dw), ptr_or_null(db), x.dtype(), dev);
                     else PEFT_DISPATCH_FLOAT(x.dtype(), "group_norm_backward", [&] {
                       kc::group_norm_backward<scalar_t>(
                           N, C, S, G, x.data_ptr<scalar_t>(), data_or_null<scalar_t>(w),
                           mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(),
                           gx ? dx.data_ptr<scalar_t>() : nullptr, gw ? dw.data_ptr<scalar_t>() : nullptr,
                           gb ? db.data_ptr<scalar_t>() : nullptr);
                     });
                     return {dx, dw.defined() ? dw.view(w.shape()) : dw, db.defined() ? db.view(b_shape) : db};
                   });
  return y;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  PEFT_PROFILE_OP("dropout", x);
  PEFT_CHECK(p >= 0 && p <= 1, "dropout: probability has to be between 0 and 1, but got ", p);
  if (!training || p == 0) return x;
  detail::check_float_inputs_any_device("dropout", {&x});
  if (p == 1) return mul(x, 0.0);
  Generator& g = gen ? *gen : default_generator();
  if (x.device().is_cuda()) {
    // Philox (kernels/cuda/dropout.cuh): the mask is a function of (seed, offset, index), so
    // backward regenerates it instead of storing it. One draw from the Generator per call
    // keeps runs reproducible under manual_seed; the masks differ from the CPU's, which come
    // from the Generator's uniform stream one element at a time.
    const uint64_t seed = g.next_u64(), offset = 0;
    Tensor xc = detail::contiguous_detached(x);
    Tensor y = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
    cuda_ops::dropout_forward(xc.numel(), p, seed, offset, xc.raw_data(), y.raw_data(), xc.dtype(), xc.device());
    autograd::record("DropoutBackward", {x}, {y}, [p, seed, offset](const std::vector<Tensor>& gr) -> std::vector<Tensor> {
      Tensor dy = detail::contiguous_detached(gr[0]);
      Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
      cuda_ops::dropout_backward(dy.numel(), p, seed, offset, dy.raw_data(), dx.raw_data(), dy.dtype(), dy.device());
      return {dx};
    });
    return y;
  }
  Tensor mask = Tensor::empty(x.shape(), x.dtype(), Device::cpu());
  const double scale = 1.0 / (1.0 - p);
  PEFT_DISPATCH_FLOAT(x.dtype(), "dropout", [&] {
    scalar_t* m = mask.data_ptr<scalar_t>();
    for (int64_t i = 0; i < mask.numel(); ++i) m[i] = g.uniform() < p ? scalar_t(0) : static_cast<scalar_t>(scale);
  });
  return mul(x, mask);
}

// ---------------------------------------------------------------- losses

Tensor nll_loss(const Tensor& input, const Tensor& target, const std::string& reduction, int64_t ignore_index) {
  PEFT_PROFILE_OP("nll_loss", input);
  check_reduction(reduction, "nll_loss");
  detail::check_float_inputs_any_device("nll_loss", {&input});
  PEFT_CHECK(target.dtype() == DType::I64, "nll_loss: target must be I64 class indices, got ", dtype_name(target.dtype()));
  PEFT_CHECK(target.device() == input.device(), "nll_loss: expected all tensors on the same device, got ",
             input.device().str(), " (input) and ", target.device().str(), " (target)");
  PEFT_CHECK(input.dim() == 1 || input.dim() == 2, "nll_loss: expected input of shape (N, C) or (C), got ",
             shape_str(input.shape()));
  const bool batched = input.dim() == 2;
  const int64_t N = batched ? input.shape()[0] : 1, C = input.shape().back();
  PEFT_CHECK((batched && target.dim() == 1 && target.shape()[0] == N) || (!batched && target.dim() == 0),
             "nll_loss: target shape ", shape_str(target.shape()), " does not match input shape ", shape_str(input.shape()));
  const Device dev = input.device();
  Tensor x = detail::contiguous_detached(input), t = detail::contiguous_detached(target);
  // The targets are validated and counted on the host: "mean" needs the count as a number, and
  // a bad target must throw here on every device. On CUDA that is one small copy (and a sync).
  std::vector<int64_t> host_targets;
  if (dev.is_cuda()) host_targets = t.to_vector<int64_t>();
  const int64_t* tp = dev.is_cuda() ? host_targets.data() : t.data_ptr<int64_t>();
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (tp[i] == ignore_index) continue;
    PEFT_CHECK(tp[i] >= 0 && tp[i] < C, "nll_loss: target ", tp[i], " at position ", i, " is out of bounds for ", C, " classes");
    ++count;
  }
  Tensor per = Tensor::empty(batched ? Shape{N} : Shape{}, x.dtype(), dev);
  if (dev.is_cuda())
    cuda_ops::nll_loss_forward(N, C, x.raw_data(), t.data_ptr<int64_t>(), ignore_index, per.raw_data(), x.dtype(), dev);
  else PEFT_DISPATCH_FLOAT(x.dtype(), "nll_loss", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* o = per.data_ptr<scalar_t>();
    for (int64_t i = 0; i < N; ++i) o[i] = tp[i] == ignore_index ? scalar_t(0) : -xp[i * C + tp[i]];
  });
  Tensor out;
  if (reduction == "none") out = per;
  else {
    NoGradGuard ng;
    out = sum(per);
    // PyTorch: mean over non-ignored targets (NaN when all are ignored).
    if (reduction == "mean") out = mul(out, 1.0 / static_cast<double>(count));
  }
  const double factor = reduction == "mean" ? 1.0 / static_cast<double>(count) : 1.0;
  const bool reduce = reduction != "none";
  Shape in_shape = x.shape();
  autograd::record("NllLossBackward", {input}, {out},
                   [t, in_shape, N, C, ignore_index, factor, reduce](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     Tensor gi = Tensor::zeros(in_shape, g[0].dtype(), t.device());
                     Tensor gg = detail::contiguous_detached(g[0]);
                     const int64_t* tp = t.data_ptr<int64_t>();  // device memory on CUDA: the kernel reads it
                     if (t.device().is_cuda()) {
                       cuda_ops::nll_loss_backward(N, C, tp, ignore_index, gg.raw_data(), reduce, factor, gi.raw_data(),
                                                   gi.dtype(), t.device());
                       return {gi};
                     }
                     PEFT_DISPATCH_FLOAT(gi.dtype(), "nll_loss_backward", [&] {
                       scalar_t* o = gi.data_ptr<scalar_t>();
                       const scalar_t* gp = gg.data_ptr<scalar_t>();
                       for (int64_t i = 0; i < N; ++i) {
                         if (tp[i] == ignore_index) continue;
                         o[i * C + tp[i]] = -(reduce ? gp[0] * static_cast<scalar_t>(factor) : gp[i]);
                       }
                     });
                     return {gi};
                   });
  return out;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const std::string& reduction, int64_t ignore_index) {
  PEFT_PROFILE_OP("cross_entropy", logits);
  check_reduction(reduction, "cross_entropy");
  PEFT_CHECK(logits.dim() == 1 || logits.dim() == 2, "cross_entropy: expected logits of shape (N, C) or (C), got ",
             shape_str(logits.shape()));
  return nll_loss(log_softmax(logits, -1), target, reduction, ignore_index);
}

Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  PEFT_PROFILE_OP("mse_loss", input);
  check_reduction(reduction, "mse_loss");
  PEFT_CHECK(input.shape() == target.shape(), "mse_loss: input shape ", shape_str(input.shape()),
             " and target shape ", shape_str(target.shape()), " differ");
  Tensor d = sub(input, target);
  Tensor sq = mul(d, d);
  if (reduction == "none") return sq;
  return reduction == "sum" ? sum(sq) : mean(sq);
}

}  // namespace peft
