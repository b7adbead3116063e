// The type → LoRA-layer registry: the queryable list, isinstance dispatch for subclasses,
// custom entries consulted first (overriding a built-in), duplicate registration refused.
#include <catch2/catch.hpp>

#include <peft/peft.h>

using namespace peft;

namespace {

// A subclass of nn::Linear: dispatches like Linear (PEFT's isinstance semantics).
class ScaledLinear : public nn::Linear {
 public:
  ScaledLinear(int64_t in, int64_t out) : nn::Linear(in, out) {}
  std::string type_name() const override { return "ScaledLinear"; }
  PEFT_MODULE_CLONE(ScaledLinear)
};

// A user LoRA layer for Linear that overrides the built-in one.
class MyLoraLinear : public LoraLinear {
 public:
  MyLoraLinear(std::shared_ptr<nn::Linear> base, const std::string& name, const LoraLayerSettings& s)
      : LoraLinear(base, name, s) {}
  std::string type_name() const override { return "MyLoraLinear"; }
};

class Net : public nn::Module {
 public:
  Net() {
    register_module("emb", std::make_shared<nn::Embedding>(12, 6));
    register_module("plain", std::make_shared<nn::Linear>(6, 6));
    register_module("scaled", std::make_shared<ScaledLinear>(6, 6));
    register_module("lstm", std::make_shared<nn::LSTM>(6, 4));
  }
  std::string type_name() const override { return "Net"; }
  Tensor forward(const Tensor& ids) override {
    Tensor h = child("scaled")->forward(child("plain")->forward(child("emb")->forward(ids)));
    return child("lstm")->forward(h);
  }
};

class FakeLoraLSTM : public LoraLayer {
 public:
  FakeLoraLSTM(std::shared_ptr<nn::LSTM> base, const std::string& name, const LoraLayerSettings& s) : LoraLayer(base) {
    update_layer(name, s);
  }
  std::string type_name() const override { return "FakeLoraLSTM"; }
  void update_layer(const std::string& name, const LoraLayerSettings& s) override { add_adapter_settings(name, s); }
  Tensor forward(const Tensor& x) override { return base_layer()->forward(x); }
};

}  // namespace

TEST_CASE("the registered types are queryable, custom ones first", "[lora][dispatch]") {
  LoraConfig cfg;
  CHECK(supported_lora_types(cfg) == std::vector<std::string>{"Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d",
                                                              "Conv1D", "MultiheadAttention"});
  cfg.register_custom_module<nn::LSTM, FakeLoraLSTM>();
  CHECK(supported_lora_types(cfg) == std::vector<std::string>{"LSTM", "Linear", "Embedding", "Conv1d", "Conv2d",
                                                              "Conv3d", "Conv1D", "MultiheadAttention"});
  cfg.register_custom_module<nn::Linear, MyLoraLinear>();
  // Overriding Linear does not list it twice.
  CHECK(supported_lora_types(cfg) == std::vector<std::string>{"LSTM", "Linear", "Embedding", "Conv1d", "Conv2d",
                                                              "Conv3d", "Conv1D", "MultiheadAttention"});
  CHECK_THROWS_WITH((cfg.register_custom_module<nn::LSTM, FakeLoraLSTM>()), Catch::Contains("already registered"));
}

TEST_CASE("a subclass of a registered type gets that type's LoRA layer", "[lora][dispatch]") {
  LoraConfig cfg;
  cfg.target_modules = {"plain", "scaled"};
  auto pm = get_peft_model(std::make_shared<Net>(), cfg);
  CHECK(pm->model()->get_submodule("scaled")->type_name() == "lora.Linear");
  CHECK(pm->model()->get_submodule("scaled.base_layer")->type_name() == "ScaledLinear");
  CHECK(pm->model()->get_submodule("plain")->type_name() == "lora.Linear");
}

TEST_CASE("a custom entry overrides the built-in layer and others keep theirs", "[lora][dispatch]") {
  LoraConfig cfg;
  cfg.target_modules = {"emb", "plain", "scaled", "lstm"};
  cfg.register_custom_module<nn::Linear, MyLoraLinear>();
  cfg.register_custom_module<nn::LSTM, FakeLoraLSTM>();
  auto pm = get_peft_model(std::make_shared<Net>(), cfg);
  CHECK(pm->model()->get_submodule("plain")->type_name() == "MyLoraLinear");
  CHECK(pm->model()->get_submodule("scaled")->type_name() == "MyLoraLinear");
  CHECK(pm->model()->get_submodule("lstm")->type_name() == "FakeLoraLSTM");
  CHECK(pm->model()->get_submodule("emb")->type_name() == "lora.Embedding");
  // Without the LSTM registration the same config is refused and lists what is supported.
  LoraConfig plain;
  plain.target_modules = {"lstm"};
  auto net = std::make_shared<Net>();
  CHECK_THROWS_WITH(get_peft_model(net, plain),
                    Catch::Contains("is not supported. Currently, only the following modules are supported: `Linear`, "
                                    "`Embedding`, `Conv1d`, `Conv2d`, `Conv3d`, `Conv1D`, `MultiheadAttention`."));
  CHECK(net->get_submodule("lstm")->type_name() == "LSTM");
}

TEST_CASE("an adapter not named \"default\" is active after get_peft_model and inject_adapter_in_model",
          "[lora][naming]") {
  LoraConfig cfg;
  cfg.target_modules = {"plain"};
  cfg.init_lora_weights = LoraInit::Random;
  manual_seed(5);
  auto net = std::make_shared<Net>();
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3});
  Tensor base_out;
  {
    NoGradGuard g;
    base_out = net->forward(ids);
  }
  auto pm = get_peft_model(net, cfg, "custom");
  CHECK(pm->active_adapters() == std::vector<std::string>{"custom"});
  NoGradGuard g;
  CHECK(max(abs(sub(pm->forward(ids), base_out))).item() > 1e-6);  // the adapter takes part
  auto merged = pm->merge_and_unload();
  CHECK(merged->get_submodule("plain")->type_name() == "Linear");

  auto net2 = std::make_shared<Net>();
  Tensor before = net2->forward(ids);
  inject_adapter_in_model(cfg, net2, "mine");
  auto layer = std::dynamic_pointer_cast<LoraLayer>(net2->get_submodule("plain"));
  REQUIRE(layer != nullptr);
  CHECK(layer->active_adapters() == std::vector<std::string>{"mine"});
  CHECK(max(abs(sub(net2->forward(ids), before))).item() > 1e-6);
}
