#include "adapters/lora_conv1d.h"

#include "adapters/dispatch.h"
#include "adapters/lora_init.h"
#include "core/autograd.h"
#include "core/log.h"
#include "core/ops.h"
#include "layers/activation.h"
#include "layers/hf_conv1d.h"
#include "layers/init.h"
#include "layers/linear.h"

namespace peft {

namespace {

// PEFT's DoraLinearLayer(fan_in_fan_out=True). Its arithmetic is the Embedding kind's (the base
// weight is (in, out), B·A is (out, in), the magnitude has one entry per output), only the name
// printed differs.
class DoraConv1DLayer : public DoraLayer {
 public:
  PEFT_MODULE_CLONE(DoraConv1DLayer)
  DoraConv1DLayer() : DoraLayer(Kind::Embedding) {}
  std::string type_name() const override { return "lora.dora.DoraLinearLayer"; }
};

std::shared_ptr<nn::Linear> linear_at(const nn::ModuleDict& d, const std::string& name) {
  return std::dynamic_pointer_cast<nn::Linear>(d[name]);
}

}  // namespace

LoraConv1D::LoraConv1D(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& s)
    : LoraLayer(base) {
  PEFT_CHECK(std::dynamic_pointer_cast<nn::Conv1D>(base) != nullptr,
             "lora.Linear (fan_in_fan_out): base layer must be a Conv1D, got ", base->type_name());
  update_layer(adapter_name, s);
}

void LoraConv1D::update_layer(const std::string& name, const LoraLayerSettings& s) {
  PEFT_CHECK(!(s.lora_bias && s.use_dora),
             "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False");
  PEFT_CHECK(s.init != LoraInit::Olora, "init_lora_weights=\"olora\" is not supported on a Conv1D layer: PEFT's "
             "olora_init factors the (in, out) weight as if it were (out, in), which does not give a working adapter");
  auto base = std::dynamic_pointer_cast<nn::Conv1D>(base_layer());
  const bool data_init = s.init == LoraInit::Pissa || s.init == LoraInit::PissaNiter || s.init == LoraInit::Orthogonal;
  // PEFT's pissa_init transposes the weight to (out, in) first (fan_in_fan_out), so the shared
  // computation sees a Linear's layout; computed before anything changes, so a refusal leaves the
  // layer as it was.
  LinearInit init = data_init ? lora_linear_init(base->weight().t().contiguous(), s) : LinearInit{};
  add_adapter_settings(name, s);
  const DType dt = base->weight().dtype();
  dict("lora_dropout").insert(name, s.lora_dropout > 0 ? nn::ModulePtr(std::make_shared<nn::Dropout>(s.lora_dropout))
                                                       : nn::ModulePtr(std::make_shared<nn::Identity>()));
  auto A = std::make_shared<nn::Linear>(base->in_features(), s.r, false, dt);
  auto B = std::make_shared<nn::Linear>(s.r, base->out_features(), s.lora_bias, dt);
  if (s.init == LoraInit::Gaussian) nn::init::normal_(A->weight(), 0.0, 1.0 / static_cast<double>(s.r));
  if (data_init) {
    NoGradGuard g;
    A->weight().copy_(init.A);
    B->weight().copy_(init.B);
    if (init.residual.defined()) overwrite_base_weight(base->weight(), init.residual.t().contiguous());
  } else if (s.init != LoraInit::Random) {
    nn::init::zeros_(B->weight());
    if (s.lora_bias) {
      Tensor b = B->bias();
      nn::init::zeros_(b);
    }
  }
  A->to(base_device());
  B->to(base_device());
  dict("lora_A").insert(name, A);
  dict("lora_B").insert(name, B);
  if (s.use_dora) {
    auto dora = std::make_shared<DoraConv1DLayer>();
    NoGradGuard g;
    dora->init(base->weight(), matmul(B->weight(), A->weight()), s.scaling());
    dict("lora_magnitude_vector").insert(name, dora);
  }
  if (!base->is_training()) train(false);
  else train(is_training());
}

Tensor LoraConv1D::forward(const Tensor& x) {
  if (auto mixed = mixed_batch_forward(x)) return *mixed;
  nn::ModulePtr base = base_layer();
  const std::vector<std::string> names = prepare_forward();
  Tensor result = base->forward(x);
  if (names.empty()) return result;
  const DType result_dtype = result.dtype();
  for (const std::string& n : names) {
    if (settings(n).use_dora) {
      result = dora_forward(x, n, result);
      continue;
    }
    // PEFT: result + lora_B(lora_A(dropout(x)))·scaling, x cast to the adapter's dtype. lora_B's
    // bias (lora_bias) is part of lora_B's output, so it is scaled too.
    auto A = linear_at(dict("lora_A"), n), B = linear_at(dict("lora_B"), n);
    const DType adt = A->weight().dtype();
    Tensor h = dict("lora_dropout")[n]->forward(adt == x.dtype() ? x : x.to(adt));
    Tensor low = mul(B->forward(A->forward(h)), scaling(n));
    const DType pt = promote_float_types(result.dtype(), low.dtype());
    result = add(result.to(pt), low.to(pt));
  }
  return result.dtype() == result_dtype ? result : result.to(result_dtype);
}

Tensor LoraConv1D::dora_forward(const Tensor& x, const std::string& n, const Tensor& result) {
  auto base = std::dynamic_pointer_cast<nn::Conv1D>(base_layer());
  auto A = linear_at(dict("lora_A"), n), B = linear_at(dict("lora_B"), n);
  auto dora = std::dynamic_pointer_cast<DoraLayer>(dict("lora_magnitude_vector")[n]);
  nn::ModulePtr dropout = dict("lora_dropout")[n];
  const double s = scaling(n);
  Tensor w = base->weight();  // (in, out)
  // As PEFT's DoraLinearVariant: without dropout (or in eval) the base product is `result` minus
  // the bias; with dropout it is recomputed on the dropped-out input, which the LoRA branch uses too.
  Tensor h = x, base_result;
  if (std::dynamic_pointer_cast<nn::Identity>(dropout) || !is_training()) {
    base_result = sub(result, base->bias());
  } else {
    h = dropout->forward(x);
    base_result = linear(h, w.t());
  }
  Tensor lora_weight;
  {
    NoGradGuard g;
    lora_weight = matmul(B->weight(), A->weight());  // (out, in)
  }
  Tensor f = dora->scale(w, lora_weight, s);  // (out)
  Tensor lora_result = B->forward(A->forward(h));
  return add(result, add(mul(add(f, -1.0), base_result), mul(mul(f, lora_result), s)));
}

Tensor LoraConv1D::get_delta_weight(const std::string& name) const {
  auto A = linear_at(dict("lora_A"), name), B = linear_at(dict("lora_B"), name);
  NoGradGuard g;
  return mul(matmul(B->weight(), A->weight()), scaling(name)).t().contiguous();
}

void LoraConv1D::merge(bool safe_merge, const std::vector<std::string>& adapter_names) {
  // A Conv1D always has a bias, so lora_bias can always be merged (no "base layer has no bias").
  const size_t before = merged_adapters().size();
  LoraLayer::merge(safe_merge, adapter_names.empty() ? forward_adapters() : adapter_names);
  NoGradGuard g;
  for (size_t i = before; i < merged_adapters().size(); ++i) {
    const std::string& n = merged_adapters()[i];
    if (settings(n).lora_bias) base_layer()->param("bias").add_(linear_at(dict("lora_B"), n)->bias(), scaling(n));
  }
}

void LoraConv1D::unmerge() {
  {
    NoGradGuard g;
    for (const auto& n : merged_adapters())
      if (settings(n).lora_bias) base_layer()->param("bias").add_(linear_at(dict("lora_B"), n)->bias(), -scaling(n));
  }
  LoraLayer::unmerge();
}

bool fan_in_fan_out_after_dispatch(const LoraDispatchEntry& entry, bool fan_in_fan_out) {
  const auto& builtin = builtin_lora_layers();
  const bool is_builtin = !builtin.empty() && &entry >= &builtin.front() && &entry <= &builtin.back();
  if (!is_builtin) return fan_in_fan_out;
  if (entry.base_type == "Linear" && fan_in_fan_out) {
    log_warning("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to "
                "False.");
    return false;
  }
  if (entry.base_type == "Conv1D" && !fan_in_fan_out) {
    log_warning("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True.");
    return true;
  }
  return fan_in_fan_out;
}

}  // namespace peft
