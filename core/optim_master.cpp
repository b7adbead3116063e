// optim::MasterWeights: F32 master copies for BF16 / F16 parameters (mixed precision). The
// conversions are Tensor::to / copy_, so this runs on any device the inner optimizer runs on.
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/error.h"
#include "core/optim.h"

namespace peft::optim {

MasterWeights::MasterWeights(std::vector<Tensor> params, const Factory& make) : Optimizer(std::move(params)) {
  PEFT_CHECK(static_cast<bool>(make), "MasterWeights: no factory for the inner optimizer");
  NoGradGuard g;
  masters_.reserve(params_.size());
  for (const Tensor& p : params_) {
    dtypes_.push_back(p.dtype());
    masters_.push_back(reduced(p.dtype()) ? p.detach().to(DType::F32) : p);  // to(): a new tensor
  }
  inner_ = make(masters_);
  PEFT_CHECK(inner_ != nullptr, "MasterWeights: the factory returned no optimizer");
  PEFT_CHECK(inner_->params().size() == masters_.size(), "MasterWeights: the inner optimizer holds ",
             inner_->params().size(), " parameters, expected the ", masters_.size(), " masters it was given");
}

void MasterWeights::step() {
  // Validate before anything changes: a parameter moved by Module::to after construction would
  // otherwise be overwritten from a master on the old device.
  for (size_t i = 0; i < params_.size(); ++i) {
    PEFT_CHECK(params_[i].dtype() == dtypes_[i], "MasterWeights: parameter ", i, " was ", dtype_name(dtypes_[i]),
               " when the optimizer was built and is ", dtype_name(params_[i].dtype()),
               " now; build the optimizer after Module::to");
    if (!has_master(i)) continue;
    PEFT_CHECK(params_[i].device() == masters_[i].device(), "MasterWeights: parameter ", i, " is on ",
               params_[i].device().str(), " but its F32 master on ", masters_[i].device().str(),
               "; build the optimizer after Module::to");
    const Tensor g = params_[i].grad();
    PEFT_CHECK(!g.defined() || g.device() == params_[i].device(), "MasterWeights: parameter ", i, " is on ",
               params_[i].device().str(), " but its gradient on ", g.device().str());
  }
  NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!has_master(i)) continue;
    const Tensor g = params_[i].grad();
    masters_[i].set_grad(g.defined() ? g.detach().to(DType::F32) : Tensor());
  }
  inner_->step();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!has_master(i) || !masters_[i].grad().defined()) continue;
    params_[i].copy_(masters_[i]);   // F32 → BF16 / F16, round to nearest even
    masters_[i].set_grad(Tensor());  // the F32 copy is not needed until the next step
  }
}

OptimizerState MasterWeights::state_dict() const {
  OptimizerState s = inner_->state_dict();
  for (size_t i = 0; i < params_.size(); ++i)
    if (has_master(i)) s[std::to_string(i) + ".master"] = masters_[i].clone();
  return s;
}

void MasterWeights::load_state_dict(const OptimizerState& s) {
  std::vector<Tensor> loaded(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!has_master(i)) continue;
    const std::string key = std::to_string(i) + ".master";
    auto it = s.find(key);
    PEFT_CHECK(it != s.end(), "optimizer load_state_dict: missing key '", key, "'");
    PEFT_CHECK(it->second.shape() == params_[i].shape(), "optimizer load_state_dict: '", key, "' has shape ",
               shape_str(it->second.shape()), ", expected ", shape_str(params_[i].shape()));
    PEFT_CHECK(is_floating(it->second.dtype()), "optimizer load_state_dict: '", key, "' has dtype ",
               dtype_name(it->second.dtype()), ", expected a floating point tensor");
    loaded[i] = it->second.to(DType::F32).to(masters_[i].device());
  }
  inner_->load_state_dict(s);  // checks its own keys; throws before changing anything
  NoGradGuard g;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!loaded[i].defined()) continue;
    masters_[i].copy_(loaded[i]);
    params_[i].copy_(loaded[i]);
  }
}

}  // namespace peft::optim
