#include "adapters/lora_conv2d.h"

#include <algorithm>
#include <typeinfo>

#include "core/log.h"
#include "core/ops.h"
#include "layers/activation.h"
#include "adapters/lora_init.h"
#include "layers/init.h"
#include "layers/linear.h"

namespace peft {

namespace {
std::shared_ptr<nn::Conv2d> as_conv(const nn::ModulePtr& m) { return std::dynamic_pointer_cast<nn::Conv2d>(m); }
}  // namespace

LoraConv2d::LoraConv2d(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& s)
    : LoraLayer(base) {
  auto conv = as_conv(base);
  PEFT_CHECK(conv != nullptr, "lora.Conv2d: base layer must be a Conv2d, got ", base->type_name());
  if (conv->config().groups > 1)
    log_warning("LoRA adapter added to ConvNd layer with groups > 1. Merging is not supported.");
  update_layer(adapter_name, s);
}

std::shared_ptr<nn::Conv2d> LoraConv2d::base_conv() const { return as_conv(base_layer()); }

void LoraConv2d::update_layer(const std::string& name, const LoraLayerSettings& s) {
  auto base = base_conv();
  const int64_t groups = base->config().groups;
  // PEFT checks the first adapter's rank in _ConvNd.__init__; nn.Conv2d refuses the others.
  PEFT_CHECK(s.r <= 0 || s.r % groups == 0, "Targeting a Conv2d with groups=", groups, " and rank ", s.r,
             ". Currently, support is limited to conv layers where the rank is divisible by groups. Either choose a "
             "different rank or do not target this specific layer.");
  PEFT_CHECK(!(s.lora_bias && s.use_dora),
             "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False");
  check_init_for_conv(s);  // pissa / olora / orthogonal: PEFT's "Unknown initialization"
  add_adapter_settings(name, s);
  const DType dt = base->param("weight").dtype();
  dict("lora_dropout").insert(name, s.lora_dropout > 0 ? nn::ModulePtr(std::make_shared<nn::Dropout>(s.lora_dropout))
                                                       : nn::ModulePtr(std::make_shared<nn::Identity>()));
  nn::Conv2dConfig a_cfg;
  a_cfg.stride = base->config().stride;
  a_cfg.padding = base->config().padding;
  a_cfg.bias = false;
  nn::Conv2dConfig b_cfg;
  b_cfg.groups = groups;
  b_cfg.bias = s.lora_bias;
  auto A = std::make_shared<nn::Conv2d>(base->in_channels(), s.r, base->kernel_size(), a_cfg, dt);
  auto B = std::make_shared<nn::Conv2d>(s.r, base->out_channels(), 1, b_cfg, dt);
  // reset_lora_parameters as for Linear: True → A kaiming_uniform(a=√5) (nn.Conv2d's own init),
  // "gaussian" → A ~ N(0, 1/r); B = 0 (and its bias) unless init is False.
  if (s.init == LoraInit::Gaussian) nn::init::normal_(A->param("weight"), 0.0, 1.0 / static_cast<double>(s.r));
  if (s.init != LoraInit::Random) {
    nn::init::zeros_(B->param("weight"));
    if (s.lora_bias) nn::init::zeros_(B->param("bias"));
  }
  // Initialised on the CPU, placed beside the base weight before DoRA's norm reads both.
  A->to(base_device());
  B->to(base_device());
  dict("lora_A").insert(name, A);
  dict("lora_B").insert(name, B);
  if (s.use_dora) {  // DoraConv2dVariant.init, after A and B are set
    auto dora = std::make_shared<DoraLayer>(DoraLayer::Kind::Conv2d);
    dora->init(base->param("weight"), dora_lora_weight(name), s.scaling());
    dict("lora_magnitude_vector").insert(name, dora);
  }
  if (!base->is_training()) train(false);
  else train(is_training());
}

bool LoraConv2d::fused_1x1(const Tensor& x, const std::string& first) const {
  auto base = base_conv();
  const nn::Conv2dConfig& c = base->config();
  // Only an exact nn::Conv2d: a subclass may compute its base output differently.
  const nn::Conv2d& conv = *base;  // typeid of a named object: no side effects to evaluate
  return typeid(conv) == typeid(nn::Conv2d) && x.dim() == 4 && !settings(first).use_dora &&
         base->kernel_size() == std::make_pair<int64_t, int64_t>(1, 1) &&
         c.stride == std::make_pair<int64_t, int64_t>(1, 1) && c.padding == std::make_pair<int64_t, int64_t>(0, 0) &&
         c.groups == 1;
}

Tensor LoraConv2d::fused_forward(const Tensor& x, const std::string& n) {
  auto base = base_conv();
  auto A = as_conv(dict("lora_A")[n]);
  auto B = as_conv(dict("lora_B")[n]);
  const LoraLayerSettings& s = settings(n);
  PEFT_CHECK(x.size(1) == base->in_channels(), "Conv2d: expected input (N, ", base->in_channels(), ", H, W), got ",
             shape_str(x.shape()));
  const int64_t in = base->in_channels(), out = base->out_channels(), r = s.r;
  const double p = is_training() ? s.lora_dropout : 0.0;
  if (x.device().is_cpu() && p == 0.0) {  // per-image GEMMs on NCHW, no layout copies
    Tensor y = lora_conv1x1(x, base->param("weight").reshape({out, in}), base->bias(), A->param("weight").reshape({r, in}),
                            B->param("weight").reshape({out, r}), s.scaling());
    if (s.lora_bias) y = add(y, mul(B->bias(), s.scaling()).reshape({1, out, 1, 1}));
    return y;
  }
  // NCHW → NHWC rows of C channels; a 1×1 convolution is a linear map of each row. Dropout's
  // mask (drawn in lora_linear's row order) and CUDA tensors take this path.
  Tensor rows = x.permute({0, 2, 3, 1});
  Tensor y = lora_linear(rows, base->param("weight").reshape({out, in}), base->bias(), A->param("weight").reshape({r, in}),
                         B->param("weight").reshape({out, r}), s.scaling(), p, is_training());
  if (s.lora_bias) y = add(y, mul(B->bias(), s.scaling()));
  // Back to NCHW, contiguous like a convolution's output (so .view() works on it as in PyTorch).
  return y.permute({0, 3, 1, 2}).contiguous();
}

Tensor LoraConv2d::lora_branch(const Tensor& h, const std::string& n, const Tensor& result) {
  Tensor y = dict("lora_B")[n]->forward(dict("lora_A")[n]->forward(h));
  PEFT_CHECK(y.shape() == result.shape(), "lora.Conv2d: the LoRA branch of adapter '", n, "' gives shape ",
             shape_str(y.shape()), " but the base layer gives ", shape_str(result.shape()),
             " (lora_A uses the base kernel, stride and padding but, as in PEFT, not its dilation ",
             base_conv()->config().dilation.first, "x", base_conv()->config().dilation.second, ")");
  return y;
}

Tensor LoraConv2d::forward(const Tensor& x) {
  if (auto mixed = mixed_batch_forward(x)) return *mixed;
  nn::ModulePtr base = base_layer();
  std::vector<std::string> names = prepare_forward();
  if (names.empty()) return base->forward(x);
  Tensor result;
  size_t first = 0;
  if (fused_1x1(x, names[0])) {
    result = fused_forward(x, names[0]);
    first = 1;
  } else {
    result = base->forward(x);
  }
  for (size_t i = first; i < names.size(); ++i) {
    const std::string& n = names[i];
    if (settings(n).use_dora) {
      result = dora_forward(x, n, result);
    } else {
      Tensor h = dict("lora_dropout")[n]->forward(x);
      result = add(result, mul(lora_branch(h, n, result), scaling(n)));
    }
  }
  return result;
}

Tensor LoraConv2d::dora_lora_weight(const std::string& n) const {
  NoGradGuard g;
  const Tensor& A = as_conv(dict("lora_A")[n])->param("weight");
  const Tensor& B = as_conv(dict("lora_B")[n])->param("weight");
  const int64_t r = A.size(0);
  return matmul(B.reshape({-1, r}), A.reshape({r, -1})).reshape(base_conv()->param("weight").shape());
}

Tensor LoraConv2d::dora_forward(const Tensor& x, const std::string& n, const Tensor& result) {
  auto base = base_conv();
  auto dora = std::dynamic_pointer_cast<DoraLayer>(dict("lora_magnitude_vector")[n]);
  nn::ModulePtr dropout = dict("lora_dropout")[n];
  const double s = scaling(n);
  const Tensor& w = base->param("weight");
  // As for Linear: reuse `result` minus the bias unless dropout is active in training.
  Tensor h = x, base_result;
  if (std::dynamic_pointer_cast<nn::Identity>(dropout) || !is_training()) {
    base_result = base->has_param("bias") ? sub(result, base->bias().reshape({1, -1, 1, 1})) : result;
  } else {
    h = dropout->forward(x);
    base_result = conv2d(h, w, Tensor(), base->options());
  }
  Tensor f = dora->scale(w, dora_lora_weight(n), s);  // (1, out, 1, 1)
  Tensor lora_result = lora_branch(h, n, base_result);
  return add(result, add(mul(add(f, -1.0), base_result), mul(mul(f, lora_result), s)));
}

Tensor LoraConv2d::get_delta_weight(const std::string& name) const {
  auto base = base_conv();
  PEFT_CHECK(base->config().groups == 1, "lora.Conv2d: the delta weight of a conv layer with groups=",
             base->config().groups, " is not supported (merging is not supported for _ConvNd layers with groups > 1)");
  NoGradGuard g;
  const Tensor& A = as_conv(dict("lora_A")[name])->param("weight");  // (r, in, kh, kw)
  const Tensor& B = as_conv(dict("lora_B")[name])->param("weight");  // (out, r, 1, 1)
  const Tensor& W = base->param("weight");
  const int64_t r = A.size(0);
  // PEFT's 1×1 branch (squeezed B @ A) and its k×k branch (conv2d(Aᵀ, B)ᵀ) are both this product.
  return mul(matmul(B.reshape({W.size(0), r}), A.reshape({r, -1})).reshape(W.shape()), scaling(name));
}

void LoraConv2d::merge(bool safe_merge, const std::vector<std::string>& adapter_names) {
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
  PEFT_CHECK(base->config().groups == 1, "Merging is not supported for _ConvNd layers with groups > 1! (lora.Conv2d "
             "with groups=", base->config().groups, ")");
  const size_t before = merged_adapters().size();
  LoraLayer::merge(safe_merge, names);
  NoGradGuard g;  // lora_bias: the LoRA bias joins the base bias
  for (size_t i = before; i < merged_adapters().size(); ++i) {
    const std::string& n = merged_adapters()[i];
    if (settings(n).lora_bias) base->param("bias").add_(as_conv(dict("lora_B")[n])->bias(), scaling(n));
  }
}

void LoraConv2d::unmerge() {
  {
    NoGradGuard g;
    auto base = base_conv();
    for (const auto& n : merged_adapters())
      if (settings(n).lora_bias) base->param("bias").add_(as_conv(dict("lora_B")[n])->bias(), -scaling(n));
  }
  LoraLayer::unmerge();
}

}  // namespace peft
