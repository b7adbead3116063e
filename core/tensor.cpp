// Tensor handle: factories, metadata, views (with their backward rules), conversions,
// in-place updates and printing.
#include "core/tensor.h"

#include <cmath>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "core/autograd.h"
#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/random.h"
#include "kernels/cpu/elementwise.h"

namespace peft {

namespace kc = kernels::cpu;

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  PEFT_CHECK(dim >= lo && dim <= hi, op, ": dimension ", dim, " out of range for a tensor of rank ", ndim,
             " (expected in [", lo, ", ", hi, "])");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

TensorImpl& Tensor::impl() const {
  PEFT_CHECK(impl_ != nullptr, "use of an undefined Tensor");
  return *impl_;
}

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto s : shape) PEFT_CHECK(s >= 0, "empty: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  NoGradGuard g;
  t.fill_(value);
  return t;
}

Tensor Tensor::arange(double start, double end, double step, DType dtype) {
  PEFT_CHECK(step != 0, "arange: step must be nonzero");
  int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  if (n < 0) n = 0;
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_vector(v, {n}).to(dtype);
}

Tensor Tensor::rand(const Shape& shape, DType dtype, Generator* gen, double low, double high) {
  Generator& g = gen ? *gen : default_generator();
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = low + (high - low) * g.uniform();
  return from_vector(v, shape).to(dtype);
}

Tensor Tensor::randn(const Shape& shape, DType dtype, Generator* gen, double mean, double std) {
  Generator& g = gen ? *gen : default_generator();
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = mean + std * g.normal();
  return from_vector(v, shape).to(dtype);
}

namespace {
template <class T>
Tensor from_vector_impl(const std::vector<T>& v, const Shape& shape) {
  PEFT_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), "from_vector: ", v.size(),
             " values do not fill shape ", shape_str(shape));
  Tensor t = Tensor::empty(shape, dtype_of<T>::value, Device::cpu());  // host values: always the CPU
  std::copy(v.begin(), v.end(), t.data_ptr<T>());
  return t;
}
}  // namespace

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape) { return from_vector_impl(v, shape); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& shape) { return from_vector_impl(v, shape); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& shape) { return from_vector_impl(v, shape); }

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keepalive) {
  auto impl = std::make_shared<TensorImpl>();
  size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  impl->storage = std::make_shared<Storage>(data, nbytes, Device::cpu(), std::move(keepalive));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

// ---------------------------------------------------------------- metadata

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  // The one door to a tensor's memory: no kernel can be handed a meta tensor's null pointer.
  PEFT_CHECK(!device().is_meta(), "a meta tensor (shape ", shape_str(shape()), ", ", dtype_name(dtype()),
             ") has no data: it lives on the meta device (shapes only, e.g. made under MetaDeviceGuard); build "
             "the model on the cpu or cuda to compute with it");
  return static_cast<char*>(impl().storage->data()) + impl().offset * static_cast<int64_t>(dtype_size(dtype()));
}

double Tensor::item() const {
  PEFT_CHECK(numel() == 1, "item: tensor with ", numel(), " elements (shape ", shape_str(shape()),
             ") cannot be converted to a scalar");
  return to_vector<double>()[0];
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  // Device memory is copied to the host first, so item(), printing and tests work anywhere.
  Tensor host = device().is_cpu() ? *this : detach().to(Device::cpu());
  Tensor c = host.to(dtype_of<T>::value).contiguous();
  const T* p = c.data_ptr<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

// ---------------------------------------------------------------- autograd

Tensor& Tensor::set_requires_grad(bool r) {
  PEFT_CHECK(is_leaf(), "set_requires_grad: you can only change requires_grad flags of leaf tensors");
  PEFT_CHECK(!r || is_floating(dtype()), "set_requires_grad: only floating point tensors can require "
             "gradients (dtype is ", dtype_name(dtype()), ")");
  impl().requires_grad = r;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  PEFT_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient shape ", shape_str(g.shape()),
             " does not match tensor shape ", shape_str(shape()));
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() { impl().grad = nullptr; }

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  PEFT_CHECK(requires_grad(), "backward: element 0 of tensors does not require grad and does not have a grad_fn");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    PEFT_CHECK(numel() == 1, "backward: grad can be implicitly created only for scalar outputs (shape is ",
               shape_str(shape()), "); pass grad_output");
    seed = Tensor::ones(shape(), dtype(), device());
  }
  PEFT_CHECK(seed.shape() == shape(), "backward: grad_output shape ", shape_str(seed.shape()),
             " does not match output shape ", shape_str(shape()));
  autograd::run_backward({*this}, {seed}, retain_graph);
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->shape = shape();
  impl->strides = strides();
  impl->offset = offset();
  impl->dtype = dtype();
  return Tensor(impl);
}

// ---------------------------------------------------------------- views

namespace {
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      PEFT_CHECK(infer < 0, op, ": only one dimension can be inferred in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      PEFT_CHECK(out[i] >= 0, op, ": invalid shape ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    PEFT_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(shape), " is invalid for input of size ", numel);
    out[infer] = numel / known;
  }
  PEFT_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " is invalid for input of size ", numel);
  return out;
}

// Strides for viewing a tensor with (shape, strides) as new_shape without copying, following
// PyTorch's computeStride; false when the memory layout does not allow a view.
bool view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape, Shape& out) {
  out.assign(new_shape.size(), 0);
  if (shape_numel(shape) <= 1 || shape.empty()) { out = contiguous_strides(new_shape); return true; }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) { chunk_base_stride = strides[d - 1]; tensor_numel = 1; view_numel = 1; }
    }
  }
  return view_d == -1;
}

void record_view(const char* name, const Tensor& in, const Tensor& out) {
  Shape in_shape = in.shape();
  autograd::record(name, {in}, {out}, [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].reshape(in_shape)};
  });
}
}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = infer_shape(shape_in, numel(), "view");
  Shape st;
  PEFT_CHECK(view_strides(this->shape(), strides(), shape, st), "view: size ", shape_str(shape_in),
             " is not compatible with input tensor's size and stride (", shape_str(this->shape()), ", ",
             shape_str(strides()), "); use reshape instead");
  Tensor out = make_view(*this, shape, st, offset());
  record_view("ViewBackward", *this, out);
  return out;
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape shape = infer_shape(shape_in, numel(), "reshape");
  Shape st;
  if (view_strides(this->shape(), strides(), shape, st)) return view(shape);
  return clone().view(shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  PEFT_CHECK(s <= e, "flatten: start_dim ", start_dim, " cannot come after end_dim ", end_dim);
  Shape ns(shape().begin(), shape().begin() + s);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= shape()[i];
  ns.push_back(m);
  ns.insert(ns.end(), shape().begin() + e + 1, shape().end());
  return reshape(ns);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  PEFT_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(), " dims for a tensor of rank ", dim());
  Shape ns(dims.size()), nst(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    PEFT_CHECK(inverse[d] < 0, "permute: dimension ", d, " repeated in ", shape_str(dims));
    inverse[d] = static_cast<int64_t>(i);
    ns[i] = shape()[d];
    nst[i] = strides()[d];
  }
  Tensor out = make_view(*this, ns, nst, offset());
  autograd::record("PermuteBackward", {*this}, {out}, [inverse](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].permute(inverse)};
  });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() < 2 && d0 == 0 && d1 == 0) return *this;
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  std::vector<int64_t> p(dim());
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[d0], p[d1]);
  return permute(p);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  PEFT_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::min(std::max<int64_t>(start, 0), n);
  end = std::min(std::max<int64_t>(end, start), n);
  Shape ns = shape(), nst = strides();
  ns[d] = (end - start + step - 1) / step;
  nst[d] = strides()[d] * step;
  Tensor out = make_view(*this, ns, nst, offset() + start * strides()[d]);
  Shape in_shape = shape();
  DType dt = dtype();
  autograd::record("SliceBackward", {*this}, {out},
                   [in_shape, dt, d, start, end, step](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     Tensor gi = Tensor::zeros(in_shape, dt, g[0].device());
                     gi.slice(d, start, end, step).copy_(g[0]);
                     return {gi};
                   });
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  int64_t n = shape()[d];
  PEFT_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dimension ", d, " of size ", n);
  if (index < 0) index += n;
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::squeeze() const {
  Shape ns;
  for (auto s : shape()) if (s != 1) ns.push_back(s);
  return reshape(ns);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape ns = shape();
  ns.erase(ns.begin() + d);
  return reshape(ns);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape ns = shape();
  ns.insert(ns.begin() + d, 1);
  return reshape(ns);
}

Tensor Tensor::expand(const Shape& shape_in) const {
  PEFT_CHECK(static_cast<int64_t>(shape_in.size()) >= dim(), "expand: the number of sizes provided (",
             shape_in.size(), ") must be greater or equal to the number of dimensions in the tensor (", dim(), ")");
  const int64_t lead = static_cast<int64_t>(shape_in.size()) - dim();
  Shape ns(shape_in.size()), nst(shape_in.size());
  for (int64_t i = 0; i < static_cast<int64_t>(shape_in.size()); ++i) {
    if (i < lead) {
      PEFT_CHECK(shape_in[i] >= 0, "expand: size -1 not allowed in a leading, non-existing dimension");
      ns[i] = shape_in[i];
      nst[i] = 0;
      continue;
    }
    int64_t cur = shape()[i - lead], want = shape_in[i] == -1 ? cur : shape_in[i];
    PEFT_CHECK(cur == want || cur == 1, "expand: the expanded size of the tensor (", want,
               ") must match the existing size (", cur, ") at non-singleton dimension ", i, ". Target sizes: ",
               shape_str(shape_in), ". Tensor sizes: ", shape_str(shape()));
    ns[i] = want;
    nst[i] = (cur == want) ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, ns, nst, offset());
  Shape in_shape = shape();
  autograd::record("ExpandBackward", {*this}, {out}, [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {sum_to(g[0], in_shape)};
  });
  return out;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype(), device());
  {
    NoGradGuard g;
    out.copy_(*this);
  }
  autograd::record("CloneBackward", {*this}, {out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0]};
  });
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), dt, device());
  {
    NoGradGuard g;
    out.copy_(*this);
  }
  if (is_floating(dt) && is_floating(dtype())) {
    DType src = dtype();
    autograd::record("ToCopyBackward", {*this}, {out}, [src](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].to(src)};
    });
  }
  return out;
}

// ---------------------------------------------------------------- in-place

namespace {
void check_inplace(const Tensor& t, const char* op) {
  PEFT_CHECK(!(GradMode::is_enabled() && t.requires_grad()), op, ": a tensor that requires grad is being used in an "
             "in-place operation; wrap the update in peft::NoGradGuard or detach() it first");
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  Tensor s = src.expand(shape());
  if (device().is_meta()) return *this;  // nothing to write (PyTorch's meta copy_); shapes checked above
  if (!device().is_cpu() || !s.device().is_cpu()) {
    detail::copy_across_devices(*this, s);
    return *this;
  }
  kc::copy_convert(shape(), raw_data(), static_cast<int>(dtype()), strides(), s.raw_data(),
                   static_cast<int>(s.dtype()), s.strides());
  return *this;
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  if (device().is_meta()) return *this;  // no memory to fill
  if (device().is_cuda()) {
    // All-zero bits are +0 in every dtype; F32 / F64 / I64 / BF16 have a fill kernel (BF16
    // rounded on the host as the CPU does); F16 converts a one-element F32 tensor on the device.
    if (numel() == 0) return *this;
    if (value == 0 && !std::signbit(value) && is_contiguous()) {
      cuda::device_memset_zero(raw_data(), device(), nbytes());
      return *this;
    }
    if (dtype() != DType::F16) {
      cuda_ops::fill(shape(), raw_data(), strides(), value, dtype(), device());
      return *this;
    }
    NoGradGuard g;
    return copy_(Tensor::full({}, value, DType::F32, device()));
  }
  switch (dtype()) {
    case DType::F32: kc::fill<float>(shape(), data_ptr<float>(), strides(), static_cast<float>(value)); break;
    case DType::F64: kc::fill<double>(shape(), data_ptr<double>(), strides(), value); break;
    case DType::I64: kc::fill<int64_t>(shape(), data_ptr<int64_t>(), strides(), static_cast<int64_t>(value)); break;
    default: {
      NoGradGuard g;
      copy_(Tensor::full({}, value, DType::F32, Device::cpu()));
    }
  }
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  PEFT_CHECK(other.device() == device(), "add_: expected all tensors on the same device, got ", device().str(),
             " and ", other.device().str());
  NoGradGuard g;
  Tensor o = other.to(dtype()).expand(shape());
  if (alpha != 1) o = mul(o, alpha);
  // BF16 has CUDA kernels only (F32 math inside); the CPU computes in F32 / F64.
  PEFT_CHECK(is_floating(dtype()) && dtype() != DType::F16 && (dtype() != DType::BF16 || device().is_cuda()),
             "add_: unsupported dtype ", dtype_name(dtype()), " on ", device().str());
  if (device().is_cuda())
    cuda_ops::binary(kc::BinaryOp::Add, shape(), raw_data(), strides(), raw_data(), strides(), o.raw_data(),
                     o.strides(), dtype(), device());
  else if (dtype() == DType::F32)
    kc::binary<float>(kc::BinaryOp::Add, shape(), data_ptr<float>(), strides(), data_ptr<float>(), strides(),
                      o.data_ptr<float>(), o.strides());
  else
    kc::binary<double>(kc::BinaryOp::Add, shape(), data_ptr<double>(), strides(), data_ptr<double>(), strides(),
                       o.data_ptr<double>(), o.strides());
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_inplace(*this, "mul_");
  if (device().is_cuda()) {
    PEFT_CHECK(dtype() == DType::F32 || dtype() == DType::F64 || dtype() == DType::BF16, "mul_: unsupported dtype ",
               dtype_name(dtype()), " on ", device().str());
    cuda_ops::affine(shape(), raw_data(), strides(), raw_data(), strides(), value, 0.0, dtype(), device());
  } else if (dtype() == DType::F32)
    kc::affine<float>(shape(), data_ptr<float>(), strides(), data_ptr<float>(), strides(), static_cast<float>(value), 0.f);
  else if (dtype() == DType::F64)
    kc::affine<double>(shape(), data_ptr<double>(), strides(), data_ptr<double>(), strides(), value, 0.0);
  else
    PEFT_ERROR("mul_: unsupported dtype ", dtype_name(dtype()));
  return *this;
}

// ---------------------------------------------------------------- printing

std::string Tensor::to_string() const {
  std::ostringstream os;
  if (!defined()) return "Tensor(undefined)";
  std::vector<double> v = to_vector<double>();
  const Shape& sh = shape();
  std::function<void(size_t, int64_t, int)> rec = [&](size_t d, int64_t base, int indent) {
    if (d == sh.size()) { os << v[base]; return; }
    os << "[";
    int64_t inner = 1;
    for (size_t k = d + 1; k < sh.size(); ++k) inner *= sh[k];
    const int64_t n = sh[d], edge = 3;
    for (int64_t i = 0; i < n; ++i) {
      if (n > 2 * edge + 1 && i == edge) {
        os << (d + 1 == sh.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
        i = n - edge - 1;
        continue;
      }
      rec(d + 1, base + i * inner, indent + 1);
      if (i + 1 < n) os << (d + 1 == sh.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
    }
    os << "]";
  };
  os << "tensor(" << std::setprecision(4);
  if (dtype() == DType::I64) os << std::fixed << std::setprecision(0);
  rec(0, 0, 7);
  os << ", shape=" << shape_str(sh) << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device=" << device().str();
  if (requires_grad()) os << (is_leaf() ? ", requires_grad=true" : ", grad_fn=<" + grad_fn()->name() + ">");
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace peft
