// A user-written LoRA layer for nn::LSTM — what PEFT's "dynamic dispatch of custom modules"
// (../shared/seeds/custom_models.md, "Unsupported module types") asks a user to write, in C++:
//
//   - it derives from peft::LoraLayer and is constructed from (base layer, adapter name, settings);
//   - its parameters are kept per adapter, under names starting with "lora_": for adapter
//     "default" and layer l of the LSTM, lora_A.default.weight_ih_l<l> (r, in),
//     lora_B.default.weight_ih_l<l> (4·hidden, r), and the same pair for weight_hh_l<l>;
//   - forward runs the LSTM op on effective weights W + s·B·A (through autograd, so the
//     gradients reach A and B), and merge / unmerge add / subtract s·B·A in place.
//
// Register it on a config before get_peft_model / PeftModel::from_pretrained:
//   config.register_custom_module<peft::nn::LSTM, MyLoraLSTM>();
// Registrations are not saved with the adapter: register again on the loaded config.
//
// Limits of this sample layer: lora_dropout is not applied (the effective-weight form has no
// separate LoRA input to drop), and DoRA / lora_bias are refused.
#pragma once
#include <peft/peft.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace peft::samples {

class MyLoraLSTM : public LoraLayer {
 public:
  MyLoraLSTM(std::shared_ptr<nn::LSTM> base, const std::string& adapter_name, const LoraLayerSettings& settings)
      : LoraLayer(base) {
    update_layer(adapter_name, settings);
  }
  std::string type_name() const override { return "MyLoraLSTM"; }

  // The weights LoRA adapts: weight_ih_l0, weight_hh_l0, weight_ih_l1, ...
  std::vector<std::string> adapted_weights() const {
    std::vector<std::string> out;
    for (int64_t l = 0; l < lstm().num_layers(); ++l) {
      out.push_back("weight_ih_l" + std::to_string(l));
      out.push_back("weight_hh_l" + std::to_string(l));
    }
    return out;
  }

  void update_layer(const std::string& name, const LoraLayerSettings& s) override {
    PEFT_CHECK(!s.use_dora && !s.lora_bias, "MyLoraLSTM: DoRA and lora_bias are not supported");
    add_adapter_settings(name, s);  // checks r > 0 and that the name is new
    const nn::LSTM& base = lstm();
    auto A = std::make_shared<nn::ParameterDict>();
    auto B = std::make_shared<nn::ParameterDict>();
    for (const std::string& w : adapted_weights()) {
      const Tensor& weight = base.param(w);  // (4·hidden, in)
      // On the base weight's device (the registry's contract, adapters/lora_layer.h: the injection
      // pass would move them there anyway, at the cost of a copy).
      Tensor a = Tensor::empty({s.r, weight.size(1)}, weight.dtype(), weight.device());
      Tensor b = Tensor::zeros({weight.size(0), s.r}, weight.dtype(), weight.device());
      // PEFT's init_lora_weights: True → A kaiming_uniform(a=√5), B = 0; "gaussian" → A ~ N(0, 1/r),
      // B = 0; False → both random, so the adapter changes the output from the start.
      if (s.init == LoraInit::Gaussian) nn::init::normal_(a, 0.0, 1.0 / static_cast<double>(s.r));
      else nn::init::kaiming_uniform_(a, std::sqrt(5.0));
      if (s.init == LoraInit::Random) nn::init::kaiming_uniform_(b, std::sqrt(5.0));
      A->insert(w, a);
      B->insert(w, b);
    }
    dict("lora_A").insert(name, A);
    dict("lora_B").insert(name, B);
    train(base.is_training());
  }

  // s·B·A for one adapter and one LSTM weight, in that weight's shape (4·hidden, in).
  Tensor delta_weight(const std::string& adapter, const std::string& weight) const {
    return mul(matmul(factor("lora_B", adapter, weight), factor("lora_A", adapter, weight)), scaling(adapter));
  }

  Tensor forward(const Tensor& x) override {
    // disabled / merged / no active adapter: the base LSTM alone (PEFT's rules, from LoraLayer).
    std::vector<std::string> adapters = prepare_forward();
    if (adapters.empty()) return base_layer()->forward(x);
    const nn::LSTM& base = lstm();
    // flat_weights(): per layer w_ih, w_hh (then b_ih, b_hh when the LSTM has biases).
    std::vector<Tensor> params = base.flat_weights();
    const size_t per_layer = base.has_bias() ? 4 : 2;
    for (int64_t l = 0; l < base.num_layers(); ++l) {
      for (size_t k = 0; k < 2; ++k) {
        Tensor& w = params[static_cast<size_t>(l) * per_layer + k];
        const std::string name = (k == 0 ? "weight_ih_l" : "weight_hh_l") + std::to_string(l);
        for (const auto& a : adapters) w = add(w, delta_weight(a, name));
      }
    }
    return lstm_op(x, params);
  }

  // Adds s·B·A of each adapter (default: the active ones) into the LSTM weights. safe_merge
  // checks every merged weight for NaN / Inf before any weight is changed.
  void merge(bool safe_merge = false, const std::vector<std::string>& adapter_names = {}) override {
    std::vector<std::string> names = adapter_names.empty() ? forward_adapters() : adapter_names;
    NoGradGuard g;
    auto base = base_layer();
    for (const auto& n : names) {
      PEFT_CHECK(has_adapter(n), "MyLoraLSTM: no adapter named '", n, "' to merge");
      if (std::find(merged_adapters().begin(), merged_adapters().end(), n) != merged_adapters().end()) continue;
      std::vector<Tensor> deltas;
      for (const auto& w : adapted_weights()) {
        deltas.push_back(delta_weight(n, w));
        if (safe_merge)
          PEFT_CHECK(!autograd::has_nonfinite(add(base->param(w), deltas.back())),
                     "NaNs detected in the merged weights. The adapter ", n, " seems to be broken");
      }
      for (size_t i = 0; i < deltas.size(); ++i) base->param(adapted_weights()[i]).add_(deltas[i]);
      mark_merged(n);
    }
  }

  void unmerge() override {
    NoGradGuard g;
    auto base = base_layer();
    while (merged()) {
      const std::string n = pop_merged();
      for (const auto& w : adapted_weights()) base->param(w).add_(delta_weight(n, w), -1.0);
    }
  }

 private:
  const nn::LSTM& lstm() const { return dynamic_cast<const nn::LSTM&>(*base_layer()); }
  Tensor factor(const char* container, const std::string& adapter, const std::string& weight) const {
    auto pd = std::dynamic_pointer_cast<nn::ParameterDict>(child(container)->child(adapter));
    return (*pd)[weight];
  }
  Tensor lstm_op(const Tensor& x, const std::vector<Tensor>& params) const {
    const nn::LSTM& base = lstm();
    return peft::lstm(x, std::nullopt, params, base.has_bias(), base.num_layers(), base.batch_first()).output;
  }
  // LoraLayer records merges made through its own merge(); an LSTM has several weights, so
  // this layer merges them itself and keeps its own list.
};

}  // namespace peft::samples
