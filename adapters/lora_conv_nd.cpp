#include "adapters/lora_conv_nd.h"

#include <algorithm>

#include "adapters/lora_init.h"
#include "core/log.h"
#include "core/ops.h"
#include "layers/activation.h"
#include "layers/init.h"
#include "layers/linear.h"

namespace peft {

namespace {
std::shared_ptr<nn::ConvNd> as_conv(const nn::ModulePtr& m) { return std::dynamic_pointer_cast<nn::ConvNd>(m); }

// A Conv1d or Conv3d, so lora_A / lora_B print and match as PEFT's type(base_layer)(...) modules do.
std::shared_ptr<nn::ConvNd> make_conv(int64_t dims, int64_t in, int64_t out, const std::vector<int64_t>& kernel,
                                      const nn::ConvNdConfig& cfg, DType dt) {
  if (dims == 1) return std::make_shared<nn::Conv1d>(in, out, kernel[0], cfg, dt);
  return std::make_shared<nn::Conv3d>(in, out, kernel, cfg, dt);
}

// A bias (out) shaped to broadcast over an output of rank `rank`: (1, out, 1, ...).
Tensor channel_view(const Tensor& b, int64_t rank) {
  Shape s{1, -1};
  for (int64_t d = 2; d < rank; ++d) s.push_back(1);
  return b.reshape(s);
}
}  // namespace

LoraConvNd::LoraConvNd(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& s)
    : LoraLayer(base) {
  auto conv = as_conv(base);
  PEFT_CHECK(conv != nullptr, "lora.ConvNd: base layer must be a Conv1d or Conv3d, got ", base->type_name());
  if (conv->config().groups > 1)
    log_warning("LoRA adapter added to ConvNd layer with groups > 1. Merging is not supported.");
  update_layer(adapter_name, s);
}

std::string LoraConvNd::type_name() const { return "lora." + base_layer()->type_name(); }

std::shared_ptr<nn::ConvNd> LoraConvNd::base_conv() const { return as_conv(base_layer()); }

void LoraConvNd::update_layer(const std::string& name, const LoraLayerSettings& s) {
  auto base = base_conv();
  const int64_t groups = base->config().groups;
  // The checks come before anything is recorded, so a refused adapter leaves the layer as it was.
  PEFT_CHECK(s.r <= 0 || s.r % groups == 0, "Targeting a ", base->type_name(), " with groups=", groups, " and rank ",
             s.r, ". Currently, support is limited to conv layers where the rank is divisible by groups. Either choose "
             "a different rank or do not target this specific layer.");
  PEFT_CHECK(!(s.lora_bias && s.use_dora),
             "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False");
  check_init_for_conv(s);  // pissa / olora / orthogonal: PEFT's "Unknown initialization"
  add_adapter_settings(name, s);
  const DType dt = base->param("weight").dtype();
  const int64_t dims = base->spatial_dims();
  dict("lora_dropout").insert(name, s.lora_dropout > 0 ? nn::ModulePtr(std::make_shared<nn::Dropout>(s.lora_dropout))
                                                       : nn::ModulePtr(std::make_shared<nn::Identity>()));
  nn::ConvNdConfig a_cfg;  // PEFT: type(base)(in, r, kernel, stride, padding, bias=False)
  a_cfg.stride = base->config().stride;
  a_cfg.padding = base->config().padding;
  a_cfg.bias = false;
  nn::ConvNdConfig b_cfg;  // type(base)(r, out, (1,)*n, (1,)*n, groups=base.groups, bias=lora_bias)
  b_cfg.groups = groups;
  b_cfg.bias = s.lora_bias;
  auto A = make_conv(dims, base->in_channels(), s.r, base->kernel_size(), a_cfg, dt);
  auto B = make_conv(dims, s.r, base->out_channels(), {1}, b_cfg, dt);
  // reset_lora_parameters: True → A keeps its kaiming_uniform(a=√5), "gaussian" → A ~ N(0, 1/r);
  // B = 0 (and its bias) unless init is False.
  if (s.init == LoraInit::Gaussian) nn::init::normal_(A->param("weight"), 0.0, 1.0 / static_cast<double>(s.r));
  if (s.init != LoraInit::Random) {
    nn::init::zeros_(B->param("weight"));
    if (s.lora_bias) nn::init::zeros_(B->param("bias"));
  }
  // Placed beside the base weight before DoRA's norm reads both.
  A->to(base_device());
  B->to(base_device());
  dict("lora_A").insert(name, A);
  dict("lora_B").insert(name, B);
  if (s.use_dora) {  // DoraConv{1,3}dVariant.init, after A and B are set
    auto dora = std::make_shared<DoraLayer>(dims == 1 ? DoraLayer::Kind::Conv1d : DoraLayer::Kind::Conv3d);
    dora->init(base->param("weight"), dora_lora_weight(name), s.scaling());
    dict("lora_magnitude_vector").insert(name, dora);
  }
  if (!base->is_training()) train(false);
  else train(is_training());
}

Tensor LoraConvNd::lora_branch(const Tensor& h, const std::string& n, const Tensor& result) {
  Tensor y = dict("lora_B")[n]->forward(dict("lora_A")[n]->forward(h));
  PEFT_CHECK(y.shape() == result.shape(), type_name(), ": the LoRA branch of adapter '", n, "' gives shape ",
             shape_str(y.shape()), " but the base layer gives ", shape_str(result.shape()),
             " (lora_A uses the base kernel, stride and padding but, as in PEFT, not its dilation ",
             shape_str(base_conv()->config().dilation), ")");
  return y;
}

Tensor LoraConvNd::forward(const Tensor& x) {
  if (auto mixed = mixed_batch_forward(x)) return *mixed;
  nn::ModulePtr base = base_layer();
  std::vector<std::string> names = prepare_forward();
  Tensor result = base->forward(x);
  for (const std::string& n : names) {
    if (settings(n).use_dora) {
      result = dora_forward(x, n, result);
    } else {
      Tensor h = dict("lora_dropout")[n]->forward(x);
      result = add(result, mul(lora_branch(h, n, result), scaling(n)));
    }
  }
  return result;
}

Tensor LoraConvNd::dora_lora_weight(const std::string& n) const {
  NoGradGuard g;
  const Tensor& A = as_conv(dict("lora_A")[n])->param("weight");
  const Tensor& B = as_conv(dict("lora_B")[n])->param("weight");
  const int64_t r = A.size(0);
  return matmul(B.reshape({-1, r}), A.reshape({r, -1})).reshape(base_conv()->param("weight").shape());
}

Tensor LoraConvNd::dora_forward(const Tensor& x, const std::string& n, const Tensor& result) {
  auto base = base_conv();
  auto dora = std::dynamic_pointer_cast<DoraLayer>(dict("lora_magnitude_vector")[n]);
  nn::ModulePtr dropout = dict("lora_dropout")[n];
  const double s = scaling(n);
  const Tensor& w = base->param("weight");
  // As PEFT: reuse `result` minus the bias unless dropout is active in training, when the base
  // product of the dropped-out input is computed again.
  Tensor h = x, base_result;
  if (std::dynamic_pointer_cast<nn::Identity>(dropout) || !is_training()) {
    base_result = base->has_param("bias") ? sub(result, channel_view(base->bias(), result.dim())) : result;
  } else {
    h = dropout->forward(x);
    base_result = base->spatial_dims() == 1 ? conv1d(h, w, Tensor(), base->options())
                                            : conv3d(h, w, Tensor(), base->options());
  }
  Tensor f = dora->scale(w, dora_lora_weight(n), s);  // (1, out, 1, ...)
  if (base_result.dim() != f.dim()) f = f.reshape(Shape(f.shape().begin() + 1, f.shape().end()));  // unbatched x
  Tensor lora_result = lora_branch(h, n, base_result);
  return add(result, add(mul(add(f, -1.0), base_result), mul(mul(f, lora_result), s)));
}

Tensor LoraConvNd::get_delta_weight(const std::string& name) const {
  auto base = base_conv();
  PEFT_CHECK(base->config().groups == 1, type_name(), ": the delta weight of a conv layer with groups=",
             base->config().groups, " is not supported (merging is not supported for _ConvNd layers with groups > 1)");
  NoGradGuard g;
  const Tensor& A = as_conv(dict("lora_A")[name])->param("weight");  // (r, in, *kernel)
  const Tensor& B = as_conv(dict("lora_B")[name])->param("weight");  // (out, r, 1, ...)
  const Tensor& W = base->param("weight");
  const int64_t r = A.size(0);
  // PEFT's conv_fn(Aᵀ, B)ᵀ with a kernel-1 B is this product of B's and A's matrices.
  return mul(matmul(B.reshape({W.size(0), r}), A.reshape({r, -1})).reshape(W.shape()), scaling(name));
}

void LoraConvNd::merge(bool safe_merge, const std::vector<std::string>& adapter_names) {
  std::vector<std::string> names = adapter_names.empty() ? forward_adapters() : adapter_names;
  auto base = base_conv();
  bool any = false;
  for (const auto& n : names) {
    const auto& m = merged_adapters();
    if (std::find(m.begin(), m.end(), n) != m.end()) continue;
    any = true;
    if (settings(n).lora_bias)
      PEFT_CHECK(base->has_param("bias"), "Impossible to merge LoRA with `lora_bias=True` because the base layer has "
                 "no bias.");
  }
  if (!any) return;
  PEFT_CHECK(base->config().groups == 1, "Merging is not supported for _ConvNd layers with groups > 1! (", type_name(),
             " with groups=", base->config().groups, ")");
  const size_t before = merged_adapters().size();
  LoraLayer::merge(safe_merge, names);
  NoGradGuard g;  // lora_bias: the LoRA bias joins the base bias
  for (size_t i = before; i < merged_adapters().size(); ++i) {
    const std::string& n = merged_adapters()[i];
    if (settings(n).lora_bias) base->param("bias").add_(as_conv(dict("lora_B")[n])->bias(), scaling(n));
  }
}

void LoraConvNd::unmerge() {
  {
    NoGradGuard g;
    auto base = base_conv();
    for (const auto& n : merged_adapters())
      if (settings(n).lora_bias) base->param("bias").add_(as_conv(dict("lora_B")[n])->bias(), -scaling(n));
  }
  LoraLayer::unmerge();
}

}  // namespace peft
