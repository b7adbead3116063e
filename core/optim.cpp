// SGD / Adam / AdamW. On the CPU each parameter gets one fused OpenMP loop; on CUDA, Adam and
// AdamW update all parameters of one (device, dtype) in one multi-tensor launch sequence
// (kernels/cuda/adamw.cuh) and SGD is composed of the CUDA elementwise ops. Optimizer state
// lives on the parameter's device.
#include "core/optim.h"

#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"

namespace peft::optim {

namespace {
void check_param(const Tensor& p, size_t i) {
  PEFT_CHECK(p.defined(), "optimizer: parameter ", i, " is undefined");
  PEFT_CHECK(p.is_leaf(), "optimizer: can't optimize a non-leaf Tensor (parameter ", i, ")");
  PEFT_CHECK(is_floating(p.dtype()) && p.is_contiguous(), "optimizer: parameter ", i,
             " must be a contiguous floating point tensor");
}

// Before an update reads a parameter and its gradient: parameters can move after the optimizer
// was built (Module::to), so the check is per step. CUDA updates run in F32 / F64 only.
void check_step_inputs(const char* name, const Tensor& p, const Tensor& g, size_t i) {
  PEFT_CHECK(g.device() == p.device(), name, ": parameter ", i, " is on ", p.device().str(), " but its gradient on ",
             g.device().str());
  PEFT_CHECK(p.device().is_cpu() || p.dtype() == DType::F32 || p.dtype() == DType::F64, name, ": parameter ", i,
             " on ", p.device().str(), " has dtype ", dtype_name(p.dtype()), "; CUDA updates run in F32 or F64");
}

// State tensors follow their parameter (it may have moved since the state was made or loaded).
Tensor on_param_device(const Tensor& state, const Tensor& p) {
  return state.device() == p.device() ? state : state.to(p.device());
}

Tensor state_tensor_or_throw(const OptimizerState& s, const std::string& key, const Shape& shape) {
  auto it = s.find(key);
  PEFT_CHECK(it != s.end(), "optimizer load_state_dict: missing key '", key, "'");
  PEFT_CHECK(it->second.shape() == shape, "optimizer load_state_dict: '", key, "' has shape ",
             shape_str(it->second.shape()), ", expected ", shape_str(shape));
  return it->second;
}

// The fused per-element updates (OpenMP pragmas cannot sit inside the dispatch macro).
template <class T>
void sgd_update(int64_t n, T* w, const T* gp, T* buf, bool first, const SGDOptions& o) {
  const T lr = static_cast<T>(o.lr), wd = static_cast<T>(o.weight_decay);
  const T mom = static_cast<T>(o.momentum), damp = static_cast<T>(1 - o.dampening);
  const bool nesterov = o.nesterov;
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t k = 0; k < n; ++k) {
    T d = gp[k] + wd * w[k];
    if (buf) {
      buf[k] = first ? d : mom * buf[k] + damp * d;
      d = nesterov ? d + mom * buf[k] : buf[k];
    }
    w[k] -= lr * d;
  }
}

template <class T>
void adam_update(int64_t n, T* w, const T* gp, T* m, T* v, const AdamOptions& o, bool decoupled, double bc1,
                 double bc2_sqrt) {
  const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
  const T step_size = static_cast<T>(o.lr / bc1);
  const T inv_bc2_sqrt = static_cast<T>(1.0 / bc2_sqrt), eps = static_cast<T>(o.eps);
  const T wd = static_cast<T>(o.weight_decay), decay = static_cast<T>(1 - o.lr * o.weight_decay);
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t k = 0; k < n; ++k) {
    T gk = gp[k];
    if (decoupled) w[k] *= decay;
    else gk += wd * w[k];
    m[k] = b1 * m[k] + (1 - b1) * gk;
    v[k] = b2 * v[k] + (1 - b2) * gk * gk;
    w[k] -= step_size * m[k] / (std::sqrt(v[k]) * inv_bc2_sqrt + eps);
  }
}
}  // namespace

Optimizer::Optimizer(std::vector<Tensor> params) : params_(std::move(params)) {
  for (size_t i = 0; i < params_.size(); ++i) check_param(params_[i], i);
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

// ---------------------------------------------------------------- SGD

SGD::SGD(std::vector<Tensor> params, SGDOptions opt) : Optimizer(std::move(params)), opt_(opt) {
  PEFT_CHECK(opt.lr >= 0, "SGD: invalid learning rate ", opt.lr);
  PEFT_CHECK(opt.momentum >= 0, "SGD: invalid momentum value ", opt.momentum);
  PEFT_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
             "SGD: nesterov momentum requires a momentum and zero dampening");
  momentum_.resize(params_.size());
}

void SGD::step() {
  NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_step_inputs("SGD", p, g, i);
    g = g.to(p.dtype()).contiguous();
    const bool first = opt_.momentum != 0 && !momentum_[i].defined();
    if (first) momentum_[i] = Tensor::empty(p.shape(), p.dtype(), p.device());
    else if (momentum_[i].defined()) momentum_[i] = on_param_device(momentum_[i], p);
    if (p.device().is_cuda()) {
      // The same arithmetic as sgd_update, as CUDA elementwise ops (in place on p and the buffer).
      Tensor d = opt_.weight_decay != 0 ? add(g, mul(p, opt_.weight_decay)) : g;
      if (opt_.momentum != 0) {
        Tensor& buf = momentum_[i];
        if (first) buf.copy_(d);
        else buf.copy_(add(mul(buf, opt_.momentum), mul(d, 1 - opt_.dampening)));
        d = opt_.nesterov ? add(d, mul(buf, opt_.momentum)) : buf;
      }
      p.add_(d, -opt_.lr);
      continue;
    }
    PEFT_DISPATCH_FLOAT(p.dtype(), "SGD", [&] {
      sgd_update<scalar_t>(p.numel(), p.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                           opt_.momentum != 0 ? momentum_[i].data_ptr<scalar_t>() : nullptr, first, opt_);
    });
  }
}

OptimizerState SGD::state_dict() const {
  OptimizerState s;
  for (size_t i = 0; i < params_.size(); ++i)
    if (momentum_[i].defined()) s[std::to_string(i) + ".momentum_buffer"] = momentum_[i].clone();
  return s;
}

void SGD::load_state_dict(const OptimizerState& s) {
  std::vector<Tensor> next(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    std::string key = std::to_string(i) + ".momentum_buffer";
    if (s.count(key))
      next[i] = state_tensor_or_throw(s, key, params_[i].shape()).to(params_[i].dtype()).to(params_[i].device()).clone();
  }
  momentum_ = next;
}

// ---------------------------------------------------------------- Adam / AdamW

Adam::Adam(std::vector<Tensor> params, AdamOptions opt) : Adam(std::move(params), opt, false) {}

Adam::Adam(std::vector<Tensor> params, AdamOptions opt, bool decoupled)
    : Optimizer(std::move(params)), opt_(opt), decoupled_(decoupled) {
  const char* name = decoupled ? "AdamW" : "Adam";
  PEFT_CHECK(opt.lr >= 0, name, ": invalid learning rate ", opt.lr);
  PEFT_CHECK(opt.eps >= 0, name, ": invalid epsilon value ", opt.eps);
  PEFT_CHECK(opt.beta1 >= 0 && opt.beta1 < 1, name, ": invalid beta parameter at index 0: ", opt.beta1);
  PEFT_CHECK(opt.beta2 >= 0 && opt.beta2 < 1, name, ": invalid beta parameter at index 1: ", opt.beta2);
  PEFT_CHECK(opt.weight_decay >= 0, name, ": invalid weight_decay value ", opt.weight_decay);
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
  steps_.assign(params_.size(), 0);
}

void Adam::step() {
  NoGradGuard ng;
  // CUDA parameters grouped by (device, dtype) for one multi-tensor step each; the gradients
  // are kept alive here until their launch.
  std::map<std::pair<int, int>, std::vector<cuda_ops::AdamParam>> cuda_groups;  // (device index, dtype)
  std::vector<Tensor> keep;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check_step_inputs(decoupled_ ? "AdamW" : "Adam", p, g, i);
    g = g.to(p.dtype()).contiguous();
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = Tensor::zeros(p.shape(), p.dtype(), p.device());
      exp_avg_sq_[i] = Tensor::zeros(p.shape(), p.dtype(), p.device());
    } else {
      exp_avg_[i] = on_param_device(exp_avg_[i], p);
      exp_avg_sq_[i] = on_param_device(exp_avg_sq_[i], p);
    }
    const int64_t t = ++steps_[i];
    if (p.device().is_cuda()) {
      keep.push_back(g);
      cuda_groups[{p.device().index, static_cast<int>(p.dtype())}].push_back(
          {p.raw_data(), g.raw_data(), exp_avg_[i].raw_data(), exp_avg_sq_[i].raw_data(), p.numel(), t});
      continue;
    }
    const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(t));
    const double bc2_sqrt = std::sqrt(1 - std::pow(opt_.beta2, static_cast<double>(t)));
    PEFT_DISPATCH_FLOAT(p.dtype(), decoupled_ ? "AdamW" : "Adam", [&] {
      adam_update<scalar_t>(p.numel(), p.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), exp_avg_[i].data_ptr<scalar_t>(),
                            exp_avg_sq_[i].data_ptr<scalar_t>(), opt_, decoupled_, bc1, bc2_sqrt);
    });
  }
  for (const auto& [key, group] : cuda_groups)
    cuda_ops::adam_step(group, opt_.lr, opt_.beta1, opt_.beta2, opt_.eps, opt_.weight_decay, decoupled_,
                        static_cast<DType>(key.second), Device::cuda(key.first));
}

OptimizerState Adam::state_dict() const {
  OptimizerState s;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!exp_avg_[i].defined()) continue;
    const std::string k = std::to_string(i);
    s[k + ".step"] = Tensor::scalar(static_cast<double>(steps_[i]));
    s[k + ".exp_avg"] = exp_avg_[i].clone();
    s[k + ".exp_avg_sq"] = exp_avg_sq_[i].clone();
  }
  return s;
}

void Adam::load_state_dict(const OptimizerState& s) {
  std::vector<Tensor> m(params_.size()), v(params_.size());
  std::vector<int64_t> steps(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string k = std::to_string(i);
    if (!s.count(k + ".step")) continue;
    steps[i] = static_cast<int64_t>(state_tensor_or_throw(s, k + ".step", {}).item());
    const Tensor& p = params_[i];
    m[i] = state_tensor_or_throw(s, k + ".exp_avg", p.shape()).to(p.dtype()).to(p.device()).clone();
    v[i] = state_tensor_or_throw(s, k + ".exp_avg_sq", p.shape()).to(p.dtype()).to(p.device()).clone();
  }
  exp_avg_ = m;
  exp_avg_sq_ = v;
  steps_ = steps;
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions o)
    : Adam(std::move(params), AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true) {}

}  // namespace peft::optim
