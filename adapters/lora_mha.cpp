#include "adapters/lora_mha.h"

#include <algorithm>

#include "adapters/mixed_batch.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "layers/activation.h"
#include "layers/init.h"
#include "layers/multihead_attention.h"

namespace peft {

namespace {
void check_supported(const LoraLayerSettings& s) {
  PEFT_CHECK(!s.use_dora, "MultiheadAttention does not support DoRA (yet), please set use_dora to False");
  PEFT_CHECK(!s.lora_bias, "lora.MultiheadAttention: lora_bias is not supported (PEFT's merge, which its forward "
             "uses, ignores lora_B's bias)");
  PEFT_CHECK(s.init == LoraInit::Default || s.init == LoraInit::Gaussian || s.init == LoraInit::Random,
             "lora.MultiheadAttention: only init_lora_weights true / \"gaussian\" / false are supported");
}
}  // namespace

LoraMultiheadAttention::LoraMultiheadAttention(std::shared_ptr<nn::Module> base, const std::string& adapter_name,
                                               const LoraLayerSettings& s)
    : LoraLayer(base) {
  PEFT_CHECK(std::dynamic_pointer_cast<nn::MultiheadAttention>(base) != nullptr,
             "lora.MultiheadAttention: base layer must be a MultiheadAttention, got ", base->type_name());
  check_supported(s);
  // PEFT wraps out_proj first (its own adapter), then adds in_proj's.
  auto out = std::make_shared<LoraLinear>(base->child("out_proj"), adapter_name, s);
  base->set_submodule("out_proj", out);
  add_own_adapter(adapter_name, s);
}

std::shared_ptr<LoraLinear> LoraMultiheadAttention::out_proj() const {
  return std::dynamic_pointer_cast<LoraLinear>(base_layer()->child("out_proj"));
}

void LoraMultiheadAttention::add_own_adapter(const std::string& name, const LoraLayerSettings& s) {
  auto base = std::dynamic_pointer_cast<nn::MultiheadAttention>(base_layer());
  const int64_t E = base->embed_dim();
  add_adapter_settings(name, s);
  const DType dt = base->param("in_proj_weight").dtype();
  dict("lora_dropout").insert(name, s.lora_dropout > 0 ? nn::ModulePtr(std::make_shared<nn::Dropout>(s.lora_dropout))
                                                       : nn::ModulePtr(std::make_shared<nn::Identity>()));
  auto A = std::make_shared<nn::Linear>(E, s.r, false, dt);
  auto B = std::make_shared<nn::Linear>(s.r, 3 * E, false, dt);
  if (s.init == LoraInit::Gaussian) nn::init::normal_(A->weight(), 0.0, 1.0 / static_cast<double>(s.r));
  if (s.init != LoraInit::Random) nn::init::zeros_(B->weight());
  A->to(base_device());
  B->to(base_device());
  dict("lora_A").insert(name, A);
  dict("lora_B").insert(name, B);
  train(base->is_training() && is_training());
}

void LoraMultiheadAttention::update_layer(const std::string& name, const LoraLayerSettings& s) {
  check_supported(s);
  PEFT_CHECK(!has_adapter(name), type_name(), ": adapter '", name, "' already exists");
  out_proj()->update_layer(name, s);
  out_proj()->move_adapter_to_base_device(name);
  add_own_adapter(name, s);
}

void LoraMultiheadAttention::delete_adapter(const std::string& name) {
  LoraLayer::delete_adapter(name);
  if (out_proj()->has_adapter(name)) out_proj()->delete_adapter(name);
}

Tensor LoraMultiheadAttention::get_delta_weight(const std::string& name) const {
  NoGradGuard g;
  return mul(matmul(dict("lora_B")[name]->param("weight"), dict("lora_A")[name]->param("weight")), scaling(name));
}

Tensor& LoraMultiheadAttention::merge_target() { return base_layer()->param("in_proj_weight"); }

void LoraMultiheadAttention::merge(bool safe_merge, const std::vector<std::string>& adapter_names) {
  std::vector<std::string> names = adapter_names.empty() ? forward_adapters() : adapter_names;
  auto out = out_proj();
  Tensor& w_out = out->base_layer()->param("weight");
  for (const std::string& n : names) {
    if (std::find(merged_adapters().begin(), merged_adapters().end(), n) != merged_adapters().end()) continue;
    if (safe_merge) {
      NoGradGuard g;
      PEFT_CHECK(!autograd::has_nonfinite(add(merge_target().detach(), get_delta_weight(n))) &&
                     !autograd::has_nonfinite(add(w_out.detach(), out->get_delta_weight(n))),
                 "NaNs detected in the merged weights. The adapter ", n, " seems to be broken");
    }
    LoraLayer::merge(false, {n});  // in_proj_weight += Δ
    // PEFT: out_proj's weight becomes W + Δ_o, then the wrapped lora.Linear merges Δ_o once more.
    {
      NoGradGuard g;
      w_out.add_(out->get_delta_weight(n));
    }
    out->merge(false, {n});
  }
}

void LoraMultiheadAttention::unmerge() {
  auto out = out_proj();
  Tensor& w_out = out->base_layer()->param("weight");
  while (merged()) {
    const std::string n = merged_adapters().back();
    {
      NoGradGuard g;
      w_out.add_(out->get_delta_weight(n), -1.0);
    }
    // LoraLayer::unmerge undoes every merge of this layer; one adapter at a time keeps the order.
    Tensor& w_in = merge_target();
    {
      NoGradGuard g;
      w_in.add_(get_delta_weight(n), -1.0);
    }
    pop_merged();
  }
  out->unmerge();
}

Tensor LoraMultiheadAttention::forward(const Tensor& x) {
  PEFT_CHECK(MixedBatchScope::current() == nullptr, "lora.MultiheadAttention does not support mixed adapter batches.");
  auto base = std::dynamic_pointer_cast<nn::MultiheadAttention>(base_layer());
  const std::vector<std::string> names = prepare_forward();
  if (names.empty()) return base->forward(x);
  auto out = out_proj();
  PEFT_CHECK(!out->merged(), "The out_proj layer of MultiheadAttention has merged layers but MultiheadAttention "
             "itself doesn't; please ensure that either both or none have merged layers");
  // PEFT merges for the call: the base weights detached, the deltas carrying A's and B's gradients.
  Tensor w_in = base->param("in_proj_weight").detach(), w_out = out->base_layer()->param("weight").detach();
  for (const std::string& n : names) {
    Tensor A = dict("lora_A")[n]->param("weight"), B = dict("lora_B")[n]->param("weight");
    w_in = add(w_in, mul(matmul(B, A), scaling(n)));
    if (!out->has_adapter(n)) continue;
    Tensor Ao = out->child("lora_A")->child(n)->param("weight"), Bo = out->child("lora_B")->child(n)->param("weight");
    Tensor d = mul(matmul(Bo, Ao), out->scaling(n));
    w_out = add(add(w_out, d), d.detach());  // PEFT's second, in-place merge of Δ_o: value only
  }
  const Tensor in_b = base->has_param("in_proj_bias") ? base->param("in_proj_bias") : Tensor();
  const Tensor out_b = out->base_layer()->has_param("bias") ? out->base_layer()->param("bias") : Tensor();
  return base->forward_with(x, w_in, in_b, w_out, out_b);
}

}  // namespace peft
