// matmul / linear through the Eigen GEMM kernel on the CPU and cuBLAS on CUDA (core/cuda_ops.h).
// A 2-D operand with a unit inner stride is used in place and one with a unit outer stride as a
// transposed matrix, so the transposes in backward rules cost no copies on either device.
#include "core/autograd.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "kernels/cpu/gemm.h"

namespace peft {

namespace kc = kernels::cpu;

namespace {

// A 2-D view as (pointer, transposed?, leading dimension) for the row-major GEMM.
struct MatArg {
  Tensor keep;  // owns a contiguous copy when one was needed
  bool trans = false;
  int64_t ld = 0;
};

MatArg as_mat(const Tensor& t) {
  MatArg m;
  const int64_t r = t.shape()[0], c = t.shape()[1];
  if (t.strides()[1] == 1 && (t.strides()[0] >= std::max<int64_t>(c, 1) || r == 1)) {
    m.keep = t;
    m.ld = std::max<int64_t>(r == 1 ? c : t.strides()[0], 1);
  } else if (t.strides()[0] == 1 && (t.strides()[1] >= std::max<int64_t>(r, 1) || c == 1)) {
    m.keep = t;
    m.trans = true;
    m.ld = std::max<int64_t>(c == 1 ? r : t.strides()[1], 1);
  } else {
    m.keep = detail::contiguous_detached(t);
    m.ld = std::max<int64_t>(c, 1);
  }
  return m;
}

}  // namespace

namespace detail {
// out (M, N) = alpha * a (M, K) · b (K, N) + beta * out
void gemm_into(const Tensor& a, const Tensor& b, Tensor& out, double beta) {
  MatArg ma = as_mat(a), mb = as_mat(b);
  const int64_t M = a.shape()[0], K = a.shape()[1], N = b.shape()[1];
  if (out.device().is_cuda()) {
    cuda_ops::gemm(ma.trans, mb.trans, M, N, K, 1.0, ma.keep.raw_data(), ma.ld, mb.keep.raw_data(), mb.ld, beta,
                   out.raw_data(), std::max<int64_t>(N, 1), out.dtype(), out.device());
    return;
  }
  PEFT_DISPATCH_FLOAT(a.dtype(), "matmul", [&] {
    kc::gemm<scalar_t>(ma.trans, mb.trans, M, N, K, scalar_t(1), ma.keep.data_ptr<scalar_t>(), ma.ld,
                       mb.keep.data_ptr<scalar_t>(), mb.ld, static_cast<scalar_t>(beta), out.data_ptr<scalar_t>(),
                       std::max<int64_t>(N, 1));
  });
}

void gemm_bias_into(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out) {
  const int64_t M = a.shape()[0], K = a.shape()[1], N = b.shape()[1];
  if (out.device().is_cuda() && out.dtype() != DType::F64 && K > 0) {
    MatArg ma = as_mat(a), mb = as_mat(b);
    Tensor bc = bias.defined() ? detail::contiguous_detached(bias) : Tensor();
    cuda_ops::gemm_fused(ma.trans, mb.trans, M, N, K, 1.0, ma.keep.raw_data(), ma.ld, mb.keep.raw_data(), mb.ld, 0.0,
                         nullptr, 0, out.raw_data(), std::max<int64_t>(N, 1), bc.defined() ? bc.raw_data() : nullptr,
                         out.dtype(), out.dtype(), out.device());
    return;
  }
  if (bias.defined()) out.copy_(bias);
  else out.zero_();
  if (K > 0) gemm_into(a, b, out, 1.0);
}

Tensor mm_raw(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty({a.shape()[0], b.shape()[1]}, a.dtype(), a.device());
  if (a.shape()[1] == 0) return out.zero_();
  gemm_into(a, b, out, 0.0);
  return out;
}

}  // namespace detail

namespace {
using detail::gemm_into;
using detail::mm_raw;

// 2-D matrix product with backward.
Tensor mm(const Tensor& a, const Tensor& b) {
  PEFT_CHECK(a.shape()[1] == b.shape()[0], "matmul: mat1 and mat2 shapes cannot be multiplied (",
             a.shape()[0], "x", a.shape()[1], " and ", b.shape()[0], "x", b.shape()[1], ")");
  Tensor out = mm_raw(a, b);
  Tensor as = a.detach(), bs = b.detach();
  bool ga = a.requires_grad(), gb = b.requires_grad();
  autograd::record("MmBackward", {a, b}, {out}, [as, bs, ga, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {ga ? mm_raw(g[0], bs.t()) : Tensor(), gb ? mm_raw(as.t(), g[0]) : Tensor()};
  });
  return out;
}

// Batched (B, M, K) x (B, K, N), contiguous inputs made here.
Tensor bmm_raw(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = detail::contiguous_detached(a_in), b = detail::contiguous_detached(b_in);
  const int64_t B = a.shape()[0], M = a.shape()[1], K = a.shape()[2], N = b.shape()[2];
  Tensor out = Tensor::zeros({B, M, N}, a.dtype(), a.device());
  if (K == 0) return out;
  if (a.device().is_cuda()) {
    cuda_ops::gemm_batched(B, M, N, K, a.raw_data(), b.raw_data(), out.raw_data(), a.dtype(), a.device());
    return out;
  }
  PEFT_DISPATCH_FLOAT(a.dtype(), "matmul", [&] {
    for (int64_t i = 0; i < B; ++i)
      kc::gemm<scalar_t>(false, false, M, N, K, scalar_t(1), a.data_ptr<scalar_t>() + i * M * K, std::max<int64_t>(K, 1),
                         b.data_ptr<scalar_t>() + i * K * N, std::max<int64_t>(N, 1), scalar_t(0),
                         out.data_ptr<scalar_t>() + i * M * N, std::max<int64_t>(N, 1));
  });
  return out;
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  Tensor out = bmm_raw(a, b);
  Tensor as = a.detach(), bs = b.detach();
  bool ga = a.requires_grad(), gb = b.requires_grad();
  autograd::record("BmmBackward", {a, b}, {out}, [as, bs, ga, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {ga ? bmm_raw(g[0], bs.transpose(1, 2)) : Tensor(), gb ? bmm_raw(as.transpose(1, 2), g[0]) : Tensor()};
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  PEFT_PROFILE_OP("matmul", a);
  detail::check_float_inputs_any_device("matmul", {&a, &b});
  PEFT_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both arguments need at least 1 dimension, got shapes ",
             shape_str(a.shape()), " and ", shape_str(b.shape()));
  if (a.dim() == 1 && b.dim() == 1) {
    PEFT_CHECK(a.shape()[0] == b.shape()[0], "matmul: inconsistent sizes ", shape_str(a.shape()), " and ", shape_str(b.shape()));
    return mm(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  }
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  const int64_t K = a.shape().back();
  PEFT_CHECK(b.shape()[b.dim() - 2] == K, "matmul: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
             " cannot be multiplied (", K, " vs ", b.shape()[b.dim() - 2], ")");
  if (a.dim() == 2 && b.dim() == 2) return mm(a, b);
  if (b.dim() == 2) {  // fold the batch into rows: one big GEMM
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(b.shape()[1]);
    return mm(a.reshape({-1, K}), b).reshape(out_shape);
  }
  // Broadcast batch dims.
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  size_t n = std::max(ba.size(), bb.size());
  Shape batch(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - ba.size() ? 1 : ba[i - (n - ba.size())], y = i < n - bb.size() ? 1 : bb[i - (n - bb.size())];
    PEFT_CHECK(x == y || x == 1 || y == 1, "matmul: batch dimensions of ", shape_str(a.shape()), " and ",
               shape_str(b.shape()), " cannot be broadcast");
    batch[i] = x == 1 ? y : x;
  }
  const int64_t M = a.shape()[a.dim() - 2], N = b.shape().back(), B = shape_numel(batch);
  Shape ea = batch, eb = batch;
  ea.insert(ea.end(), {M, K});
  eb.insert(eb.end(), {K, N});
  Tensor out = bmm(a.expand(ea).reshape({B, M, K}), b.expand(eb).reshape({B, K, N}));
  Shape out_shape = batch;
  out_shape.insert(out_shape.end(), {M, N});
  return out.reshape(out_shape);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  PEFT_PROFILE_OP("linear", x);
  detail::check_float_inputs_any_device("linear", {&x, &w, &b});
  PEFT_CHECK(w.dim() == 2, "linear: weight must be 2-D (out, in), got ", shape_str(w.shape()));
  PEFT_CHECK(x.dim() >= 1 && x.shape().back() == w.shape()[1], "linear: input has ",
             x.dim() ? x.shape().back() : 0, " features (shape ", shape_str(x.shape()), "), expected ", w.shape()[1],
             " (weight ", shape_str(w.shape()), ")");
  PEFT_CHECK(!b.defined() || (b.dim() == 1 && b.shape()[0] == w.shape()[0]), "linear: bias shape ",
             shape_str(b.shape()), " does not match weight ", shape_str(w.shape()));
  const int64_t in = w.shape()[1], outf = w.shape()[0];
  Tensor x2;
  {
    NoGradGuard g;
    x2 = x.detach().reshape({-1, in});
  }
  const int64_t M = x2.shape()[0];
  Tensor y = Tensor::empty({M, outf}, x.dtype(), x.device());
  {
    NoGradGuard g;
    detail::gemm_bias_into(x2, w.detach().t(), b.defined() ? b.detach() : Tensor(), y);
  }
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(outf);
  Tensor out;
  {
    NoGradGuard g;
    out = y.view(out_shape);
  }
  Tensor ws = w.detach();
  bool gx = x.requires_grad(), gw = w.requires_grad(), gb = b.defined() && b.requires_grad();
  Shape x_shape = x.shape();
  Tensor x_saved = gw ? x2 : Tensor();  // only dW needs the input
  autograd::record("LinearBackward", {x, w, b}, {out},
                   [x_saved, ws, gx, gw, gb, x_shape, outf](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     Tensor g2 = g[0].reshape({-1, outf});
                     Tensor dx = gx ? mm_raw(g2, ws).view(x_shape) : Tensor();
                     Tensor dw = gw ? mm_raw(g2.t(), x_saved) : Tensor();
                     Tensor db = gb ? sum(g2, {0}) : Tensor();
                     return {dx, dw, db};
                   });
  return out;
}

}  // namespace peft
