// Elementwise ops with broadcasting, and their backward rules. Saved outputs are stored
// detached so a node never keeps its own output's history alive (no reference cycles).
#include <cmath>

#include "core/autograd.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "kernels/cpu/elementwise.h"

namespace peft {

namespace kc = kernels::cpu;

namespace detail {
namespace {
const Tensor* check_float_common(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    PEFT_CHECK(is_floating(t->dtype()), op, ": expected a floating point tensor, got dtype ", dtype_name(t->dtype()),
               " (shape ", shape_str(t->shape()), ")");
    if (!first) { first = t; continue; }
    PEFT_CHECK(t->dtype() == first->dtype(), op, ": dtype mismatch: ", dtype_name(first->dtype()), " vs ",
               dtype_name(t->dtype()), " (shapes ", shape_str(first->shape()), " and ", shape_str(t->shape()), ")");
    PEFT_CHECK(t->device() == first->device(), op, ": expected all tensors on the same device, got ",
               first->device().str(), " and ", t->device().str());
  }
  // Ops compute; meta tensors (MetaDeviceGuard) only describe shapes.
  PEFT_CHECK(!first || !first->device().is_meta(), op, ": a meta tensor has no data to compute with (shape ",
             shape_str(first->shape()), "); build the model on the cpu or cuda to run it");
  return first;
}
}  // namespace

void check_float_inputs(const char* op, std::initializer_list<const Tensor*> ts) {
  // After the common checks, so mixing devices is reported as such rather than as a missing kernel.
  if (const Tensor* first = check_float_common(op, ts)) check_cpu(op, *first);
}

void check_float_inputs_any_device(const char* op, std::initializer_list<const Tensor*> ts) {
  check_float_common(op, ts);
}

void check_cpu(const char* op, const Tensor& t) {
  PEFT_CHECK(!t.defined() || t.device().is_cpu(), op, ": not implemented on ", t.device().str(),
             " yet (CPU only); move the tensor with .to(Device::cpu())");
}

Tensor contiguous_detached(const Tensor& t) {
  NoGradGuard g;
  return t.detach().contiguous();
}

Tensor contiguous_data(const Tensor& t) {
  check_cpu("contiguous_data", t);
  return contiguous_detached(t);
}
}  // namespace detail

namespace {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    PEFT_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
               " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Forward of a binary op without history.
Tensor binary_raw(kc::BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  detail::check_float_inputs_any_device(name, {&a, &b});
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  NoGradGuard g;
  Tensor ea = a.detach().expand(shape), eb = b.detach().expand(shape);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_ops::binary(op, shape, out.raw_data(), out.strides(), ea.raw_data(), ea.strides(), eb.raw_data(), eb.strides(),
                     a.dtype(), a.device());
    return out;
  }
  PEFT_DISPATCH_FLOAT(a.dtype(), name, [&] {
    kc::binary<scalar_t>(op, shape, out.data_ptr<scalar_t>(), out.strides(), ea.data_ptr<scalar_t>(), ea.strides(),
                         eb.data_ptr<scalar_t>(), eb.strides());
  });
  return out;
}

Tensor unary_raw(kc::UnaryOp op, const Tensor& a, const char* name) {
  detail::check_float_inputs_any_device(name, {&a});
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_ops::unary(op, a.shape(), out.raw_data(), out.strides(), a.raw_data(), a.strides(), a.dtype(), a.device());
    return out;
  }
  PEFT_DISPATCH_FLOAT(a.dtype(), name, [&] {
    kc::unary<scalar_t>(op, a.shape(), out.data_ptr<scalar_t>(), out.strides(), a.data_ptr<scalar_t>(), a.strides());
  });
  return out;
}

Tensor affine_raw(const Tensor& a, double alpha, double beta, const char* name) {
  detail::check_float_inputs_any_device(name, {&a});
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_ops::affine(a.shape(), out.raw_data(), out.strides(), a.raw_data(), a.strides(), alpha, beta, a.dtype(),
                     a.device());
    return out;
  }
  PEFT_DISPATCH_FLOAT(a.dtype(), name, [&] {
    kc::affine<scalar_t>(a.shape(), out.data_ptr<scalar_t>(), out.strides(), a.data_ptr<scalar_t>(), a.strides(),
                         static_cast<scalar_t>(alpha), static_cast<scalar_t>(beta));
  });
  return out;
}

}  // namespace

Tensor sum_to(const Tensor& a, const Shape& shape) {
  if (a.shape() == shape) return a;
  const int64_t lead = a.dim() - static_cast<int64_t>(shape.size());
  PEFT_CHECK(lead >= 0, "sum_to: cannot reduce shape ", shape_str(a.shape()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < a.dim(); ++i) {
    if (i < lead) dims.push_back(i);
    else if (shape[i - lead] == 1 && a.shape()[i] != 1) dims.push_back(i);
    else PEFT_CHECK(shape[i - lead] == a.shape()[i], "sum_to: cannot reduce shape ", shape_str(a.shape()), " to ", shape_str(shape));
  }
  Tensor s = dims.empty() ? a : sum(a, dims, true);
  return s.reshape(shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  PEFT_PROFILE_OP("add", a);
  Tensor out = binary_raw(kc::BinaryOp::Add, a, b, "add");
  Shape sa = a.shape(), sb = b.shape();
  autograd::record("AddBackward", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {sum_to(g[0], sa), sum_to(g[0], sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  PEFT_PROFILE_OP("sub", a);
  Tensor out = binary_raw(kc::BinaryOp::Sub, a, b, "sub");
  Shape sa = a.shape(), sb = b.shape();
  autograd::record("SubBackward", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {sum_to(g[0], sa), sum_to(neg(g[0]), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  PEFT_PROFILE_OP("mul", a);
  Tensor out = binary_raw(kc::BinaryOp::Mul, a, b, "mul");
  bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor a_saved = gb ? a.detach() : Tensor(), b_saved = ga ? b.detach() : Tensor();
  Shape sha = a.shape(), shb = b.shape();
  autograd::record("MulBackward", {a, b}, {out},
                   [a_saved, b_saved, sha, shb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     return {b_saved.defined() ? sum_to(mul(g[0], b_saved), sha) : Tensor(),
                             a_saved.defined() ? sum_to(mul(g[0], a_saved), shb) : Tensor()};
                   });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  PEFT_PROFILE_OP("div", a);
  Tensor out = binary_raw(kc::BinaryOp::Div, a, b, "div");
  Tensor as = a.detach(), bs = b.detach();
  bool ga = a.requires_grad(), gb = b.requires_grad();
  autograd::record("DivBackward", {a, b}, {out}, [as, bs, ga, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor da, db;
    if (ga) da = sum_to(div(g[0], bs), as.shape());
    if (gb) db = sum_to(neg(div(mul(g[0], as), mul(bs, bs))), bs.shape());
    return {da, db};
  });
  return out;
}

Tensor add(const Tensor& a, double b) {
  PEFT_PROFILE_OP("add", a);
  Tensor out = affine_raw(a, 1.0, b, "add");
  autograd::record("AddBackward", {a}, {out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0]}; });
  return out;
}

Tensor mul(const Tensor& a, double b) {
  PEFT_PROFILE_OP("mul", a);
  Tensor out = affine_raw(a, b, 0.0, "mul");
  autograd::record("MulBackward", {a}, {out}, [b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {mul(g[0], b)};
  });
  return out;
}

Tensor neg(const Tensor& a) {
  PEFT_PROFILE_OP("neg", a);
  Tensor out = unary_raw(kc::UnaryOp::Neg, a, "neg");
  autograd::record("NegBackward", {a}, {out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {neg(g[0])};
  });
  return out;
}

Tensor pow(const Tensor& a, double p) {
  PEFT_PROFILE_OP("pow", a);
  detail::check_float_inputs_any_device("pow", {&a});
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (a.device().is_cuda()) {
    cuda_ops::pow_scalar(a.shape(), out.raw_data(), out.strides(), a.raw_data(), a.strides(), p, a.dtype(), a.device());
  } else {
    PEFT_DISPATCH_FLOAT(a.dtype(), "pow", [&] {
      kc::pow_scalar<scalar_t>(a.shape(), out.data_ptr<scalar_t>(), out.strides(), a.data_ptr<scalar_t>(), a.strides(),
                               static_cast<scalar_t>(p));
    });
  }
  Tensor as = a.detach();
  autograd::record("PowBackward", {a}, {out}, [as, p](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    if (p == 0) return {mul(g[0], 0.0)};
    return {mul(mul(g[0], pow(as, p - 1)), p)};
  });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& e) {
  PEFT_PROFILE_OP("pow", a);
  Tensor out = binary_raw(kc::BinaryOp::Pow, a, e, "pow");
  Tensor as = a.detach(), es = e.detach(), os = out.detach();
  bool ga = a.requires_grad(), ge = e.requires_grad();
  autograd::record("PowBackward", {a, e}, {out}, [as, es, os, ga, ge](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor da, de;
    if (ga) da = sum_to(mul(mul(g[0], es), pow(as, sub(es, Tensor::ones({}, es.dtype(), es.device())))), as.shape());
    if (ge) de = sum_to(mul(mul(g[0], os), log(as)), es.shape());
    return {da, de};
  });
  return out;
}

Tensor exp(const Tensor& a) {
  PEFT_PROFILE_OP("exp", a);
  Tensor out = unary_raw(kc::UnaryOp::Exp, a, "exp");
  Tensor os = out.detach();
  autograd::record("ExpBackward", {a}, {out}, [os](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {mul(g[0], os)};
  });
  return out;
}

Tensor log(const Tensor& a) {
  PEFT_PROFILE_OP("log", a);
  Tensor out = unary_raw(kc::UnaryOp::Log, a, "log");
  Tensor as = a.detach();
  autograd::record("LogBackward", {a}, {out}, [as](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {div(g[0], as)};
  });
  return out;
}

Tensor sqrt(const Tensor& a) {
  PEFT_PROFILE_OP("sqrt", a);
  Tensor out = unary_raw(kc::UnaryOp::Sqrt, a, "sqrt");
  Tensor os = out.detach();
  autograd::record("SqrtBackward", {a}, {out}, [os](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {div(g[0], mul(os, 2.0))};
  });
  return out;
}

Tensor abs(const Tensor& a) {
  PEFT_PROFILE_OP("abs", a);
  Tensor out = unary_raw(kc::UnaryOp::Abs, a, "abs");
  Tensor as = a.detach();
  autograd::record("AbsBackward", {a}, {out}, [as](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    // sign(x)·g, with sign(0) = 0 as PyTorch
    return {sub(binary_raw(kc::BinaryOp::ReluBackward, g[0], as, "abs"),
                binary_raw(kc::BinaryOp::ReluBackward, g[0], neg(as), "abs"))};
  });
  return out;
}

Tensor relu(const Tensor& a) {
  PEFT_PROFILE_OP("relu", a);
  Tensor out = unary_raw(kc::UnaryOp::Relu, a, "relu");
  Tensor os = out.detach();
  autograd::record("ReluBackward", {a}, {out}, [os](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {binary_raw(kc::BinaryOp::ReluBackward, g[0], os, "relu_backward")};
  });
  return out;
}

Tensor gelu(const Tensor& a, const std::string& approximate) {
  PEFT_PROFILE_OP("gelu", a);
  PEFT_CHECK(approximate == "none" || approximate == "tanh", "gelu: approximate must be 'none' or 'tanh', got '",
             approximate, "'");
  bool tanh_form = approximate == "tanh";
  Tensor out = unary_raw(tanh_form ? kc::UnaryOp::GeluTanh : kc::UnaryOp::GeluErf, a, "gelu");
  Tensor as = a.detach();
  autograd::record("GeluBackward", {a}, {out}, [as, tanh_form](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {binary_raw(tanh_form ? kc::BinaryOp::GeluTanhBackward : kc::BinaryOp::GeluErfBackward, g[0], as,
                       "gelu_backward")};
  });
  return out;
}

Tensor sigmoid(const Tensor& a) {
  PEFT_PROFILE_OP("sigmoid", a);
  Tensor out = unary_raw(kc::UnaryOp::Sigmoid, a, "sigmoid");
  Tensor os = out.detach();
  autograd::record("SigmoidBackward", {a}, {out}, [os](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {binary_raw(kc::BinaryOp::SigmoidBackward, g[0], os, "sigmoid_backward")};
  });
  return out;
}

Tensor tanh(const Tensor& a) {
  PEFT_PROFILE_OP("tanh", a);
  Tensor out = unary_raw(kc::UnaryOp::Tanh, a, "tanh");
  Tensor os = out.detach();
  autograd::record("TanhBackward", {a}, {out}, [os](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {binary_raw(kc::BinaryOp::TanhBackward, g[0], os, "tanh_backward")};
  });
  return out;
}

}  // namespace peft
