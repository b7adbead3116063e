// Attention and the other pieces of a decoder layer: scaled_dot_product_attention as one op
// (CPU: the fused kernel in kernels/cpu/attention; CUDA: composed from matmul / softmax until a
// fused GPU kernel lands), and silu / rms_norm / apply_rotary composed from existing ops.
#include <cmath>
#include <limits>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "kernels/cpu/attention.h"

namespace peft {

namespace kc = kernels::cpu;

namespace {

struct SdpaArgs {
  kc::SdpaShape s;
  double scale = 1;
};

SdpaArgs check_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double dropout_p,
                    bool is_causal, std::optional<double> scale) {
  const char* op = "scaled_dot_product_attention";
  detail::check_float_inputs_any_device(op, {&q, &k, &v});
  PEFT_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op,
             ": expected q, k, v of shape (B, H, T, D), got ", shape_str(q.shape()), ", ", shape_str(k.shape()), ", ",
             shape_str(v.shape()));
  SdpaArgs a;
  auto& s = a.s;
  s.B = q.size(0), s.H = q.size(1), s.Tq = q.size(2), s.D = q.size(3);
  s.Hkv = k.size(1), s.Tk = k.size(2), s.Dv = v.size(3);
  PEFT_CHECK(k.size(0) == s.B && v.size(0) == s.B, op, ": batch sizes differ: q ", shape_str(q.shape()), ", k ",
             shape_str(k.shape()), ", v ", shape_str(v.shape()));
  PEFT_CHECK(k.size(3) == s.D, op, ": q and k need the same head size, got ", shape_str(q.shape()), " and ",
             shape_str(k.shape()));
  PEFT_CHECK(v.size(1) == s.Hkv && v.size(2) == s.Tk, op, ": k and v need the same heads and length, got ",
             shape_str(k.shape()), " and ", shape_str(v.shape()));
  PEFT_CHECK(s.Hkv >= 1 && s.H % s.Hkv == 0, op, ": ", s.H, " query heads cannot share ", s.Hkv,
             " key/value heads (grouped-query attention needs H % Hkv == 0)");
  PEFT_CHECK(dropout_p == 0, op, ": dropout_p = ", dropout_p,
             " is not supported (attention dropout is not implemented); pass 0");
  PEFT_CHECK(!(is_causal && mask.defined()), op, ": pass either attn_mask or is_causal, not both");
  if (mask.defined()) {
    PEFT_CHECK(mask.device() == q.device(), op, ": attn_mask is on ", mask.device().str(), ", q on ", q.device().str());
    PEFT_CHECK(mask.dtype() == DType::I64 || mask.dtype() == q.dtype(), op, ": attn_mask has dtype ",
               dtype_name(mask.dtype()), "; expected I64 (boolean) or q's dtype ", dtype_name(q.dtype()), " (additive)");
    PEFT_CHECK(!(mask.requires_grad() && GradMode::is_enabled()), op,
               ": attn_mask requires grad, but the mask gets no gradient here; detach it");
    const Shape want{s.B, s.H, s.Tq, s.Tk};
    bool ok = mask.dim() <= 4;
    for (int64_t i = 0; ok && i < mask.dim(); ++i) {
      const int64_t m = mask.size(mask.dim() - 1 - i), t = want[3 - i];
      ok = m == t || m == 1;
    }
    PEFT_CHECK(ok, op, ": attn_mask of shape ", shape_str(mask.shape()), " does not broadcast to ", shape_str(want));
  }
  a.scale = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(s.D));
  return a;
}

// The additive form of a mask: an I64 (boolean) mask becomes 0 where attended and `dropped`
// elsewhere, in dtype `dt`; a float mask is itself.
Tensor additive_mask(const Tensor& mask, DType dt, double dropped = -std::numeric_limits<double>::infinity()) {
  if (mask.dtype() != DType::I64) return mask.detach();
  const auto ids = mask.to_vector<int64_t>();
  std::vector<double> add(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) add[i] = ids[i] ? 0.0 : dropped;
  return Tensor::from_vector(add, mask.shape()).to(dt).to(mask.device());
}

// The mask as strides over (B, H, Tq, Tk), 0 where it broadcasts.
template <class T>
kc::SdpaMask<T> mask_view(const Tensor& m, const kc::SdpaShape& s) {
  kc::SdpaMask<T> v;
  if (!m.defined()) return v;
  v.data = m.data_ptr<T>();
  const int64_t want[4] = {s.B, s.H, s.Tq, s.Tk};
  int64_t st[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < m.dim(); ++i) {
    const int64_t d = m.dim() - 1 - i;
    st[3 - i] = (m.size(d) == 1 && want[3 - i] != 1) ? 0 : m.strides()[d];
  }
  v.sb = st[0], v.sh = st[1], v.si = st[2], v.sj = st[3];
  return v;
}

Tensor sdpa_composed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool is_causal,
                     const SdpaArgs& a) {
  const auto& s = a.s;
  Tensor kk = k, vv = v;
  if (s.Hkv != s.H) {
    const int64_t g = s.H / s.Hkv;
    kk = k.unsqueeze(2).expand({s.B, s.Hkv, g, s.Tk, s.D}).reshape({s.B, s.H, s.Tk, s.D});
    vv = v.unsqueeze(2).expand({s.B, s.Hkv, g, s.Tk, s.Dv}).reshape({s.B, s.H, s.Tk, s.Dv});
  }
  Tensor scores = mul(matmul(q, kk.transpose(-2, -1)), a.scale);
  Tensor add_mask;
  if (is_causal) {
    std::vector<double> c(static_cast<size_t>(s.Tq * s.Tk), 0.0);
    for (int64_t i = 0; i < s.Tq; ++i)
      for (int64_t j = i + 1; j < s.Tk; ++j) c[static_cast<size_t>(i * s.Tk + j)] = -std::numeric_limits<double>::infinity();
    add_mask = Tensor::from_vector(c, {s.Tq, s.Tk}).to(q.dtype()).to(q.device());
  } else if (mask.defined()) {
    // The dtype's lowest finite value, not -inf (as transformers' masks): a row with every key
    // dropped (a left-padded query) then gets finite weights, where softmax over -inf would give
    // NaN, and NaN values of such a row would poison every later row through 0 · NaN in P·V.
    // (BF16: -3e38, as float's lowest would round to -inf there.)
    const double lowest = q.dtype() == DType::F16    ? -65504.0
                          : q.dtype() == DType::BF16 ? -3.0e38
                          : q.dtype() == DType::F64  ? std::numeric_limits<double>::lowest()
                                                     : static_cast<double>(std::numeric_limits<float>::lowest());
    add_mask = additive_mask(mask, q.dtype(), lowest);
  }
  if (add_mask.defined()) scores = add(scores, add_mask);
  return matmul(softmax(scores, -1), vv);
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& attn_mask,
                                    double dropout_p, bool is_causal, std::optional<double> scale) {
  PEFT_PROFILE_OP("scaled_dot_product_attention", q_in);
  if (q_in.dim() == 3 && k_in.dim() == 3 && v_in.dim() == 3) {  // one head
    Tensor m = attn_mask.defined() && attn_mask.dim() == 3 ? attn_mask.unsqueeze(1) : attn_mask;
    return scaled_dot_product_attention(q_in.unsqueeze(1), k_in.unsqueeze(1), v_in.unsqueeze(1), m, dropout_p,
                                        is_causal, scale)
        .squeeze(1);
  }
  const SdpaArgs a = check_sdpa(q_in, k_in, v_in, attn_mask, dropout_p, is_causal, scale);
  if (!q_in.device().is_cpu()) return sdpa_composed(q_in, k_in, v_in, attn_mask, is_causal, a);
  detail::check_float_inputs("scaled_dot_product_attention", {&q_in, &k_in, &v_in});
  Tensor q = detail::contiguous_data(q_in), k = detail::contiguous_data(k_in), v = detail::contiguous_data(v_in);
  Tensor mask = attn_mask.defined() ? additive_mask(attn_mask, q.dtype()) : Tensor();
  const auto s = a.s;
  Tensor out = Tensor::empty({s.B, s.H, s.Tq, s.Dv}, q.dtype(), Device::cpu());
  Tensor lse = Tensor::empty({s.B, s.H, s.Tq}, q.dtype(), Device::cpu());
  PEFT_DISPATCH_FLOAT(q.dtype(), "scaled_dot_product_attention", [&] {
    kc::sdpa_forward<scalar_t>(s, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                               mask_view<scalar_t>(mask, s), is_causal, 0, static_cast<scalar_t>(a.scale),
                               out.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>());
  });
  const bool gq = q_in.requires_grad(), gk = k_in.requires_grad(), gv = v_in.requires_grad();
  Tensor os = out.detach();
  autograd::record("ScaledDotProductAttentionBackward", {q_in, k_in, v_in}, {out},
                   [q, k, v, mask, os, lse, s, is_causal, a, gq, gk, gv](const std::vector<Tensor>& g) {
                     Tensor dout = detail::contiguous_data(g[0]);
                     Tensor dq = gq ? Tensor::empty(q.shape(), q.dtype(), Device::cpu()) : Tensor();
                     Tensor dk = gk ? Tensor::empty(k.shape(), k.dtype(), Device::cpu()) : Tensor();
                     Tensor dv = gv ? Tensor::empty(v.shape(), v.dtype(), Device::cpu()) : Tensor();
                     PEFT_DISPATCH_FLOAT(q.dtype(), "scaled_dot_product_attention_backward", [&] {
                       kc::sdpa_backward<scalar_t>(
                           s, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                           mask_view<scalar_t>(mask, s), is_causal, 0, static_cast<scalar_t>(a.scale),
                           os.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(), dout.data_ptr<scalar_t>(),
                           detail::data_or_null<scalar_t>(dq), detail::data_or_null<scalar_t>(dk),
                           detail::data_or_null<scalar_t>(dv));
                     });
                     return std::vector<Tensor>{dq, dk, dv};
                   });
  return out;
}

Tensor silu(const Tensor& a) {
  PEFT_PROFILE_OP("silu", a);
  return mul(a, sigmoid(a));
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  PEFT_PROFILE_OP("rms_norm", x);
  detail::check_float_inputs_any_device("rms_norm", {&x});
  PEFT_CHECK(x.dim() >= 1, "rms_norm: input needs at least one dimension");
  if (weight.defined()) {
    PEFT_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "rms_norm: weight of shape ",
               shape_str(weight.shape()), " does not match the input's last dim ", x.size(-1));
    PEFT_CHECK(weight.device() == x.device(), "rms_norm: weight on ", weight.device().str(), ", input on ",
               x.device().str());
  }
  // transformers computes the statistics in F32 whatever the input dtype, then casts back.
  const Tensor h = x.dtype() == DType::F64 || x.dtype() == DType::F32 ? x : x.to(DType::F32);
  const Tensor var = mean(mul(h, h), {-1}, true);
  Tensor y = mul(h, pow(add(var, eps), -0.5));
  if (y.dtype() != x.dtype()) y = y.to(x.dtype());
  return weight.defined() ? mul(weight.dtype() == y.dtype() ? weight : weight.to(y.dtype()), y) : y;
}

Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  PEFT_PROFILE_OP("apply_rotary", x);
  PEFT_CHECK(x.dim() == 4 && cos.dim() == 3 && sin.shape() == cos.shape() && (cos.size(0) == x.size(0) || cos.size(0) == 1) &&
                 cos.size(1) == x.size(2) && cos.size(2) == x.size(3) && x.size(3) % 2 == 0,
             "apply_rotary: expected x (B, H, T, D) with even D and cos, sin (B or 1, T, D), got ", shape_str(x.shape()),
             ", ", shape_str(cos.shape()), ", ", shape_str(sin.shape()));
  const int64_t half = x.size(3) / 2;
  const Tensor rot = cat({neg(x.slice(3, half, 2 * half)), x.slice(3, 0, half)}, 3);
  return add(mul(x, cos.unsqueeze(1)), mul(rot, sin.unsqueeze(1)));
}

}  // namespace peft
