// Layers against PyTorch (tests/golden/golden_layers.py): each test builds the layer here,
// loads PyTorch's parameters by their state_dict() names (strict), runs forward/backward with
// the stored upstream gradient and compares the outputs, the input gradient and the gradient
// of every parameter. Layer configurations are repeated here next to the case name; the MLP
// is the one samples/models/mlp.h ships.
#include <catch2/catch.hpp>

#include <functional>
#include <set>

#include "golden_util.h"
#include "models/mlp.h"
#include "peft.h"

using golden::Case;
using peft::Tensor;
namespace nn = peft::nn;

namespace {

// The seed MLP as samples/models/mlp.h ships it; tests/golden/golden_layers.py uses hidden size 64.
using peft::samples::MLP;
constexpr int64_t kMlpHidden = 64;

std::set<std::string> names_of(const peft::NamedTensors& tensors) {
  std::set<std::string> s;
  for (const auto& kv : tensors) s.insert(kv.first);
  return s;
}

using Outputs = std::function<golden::Named(nn::Module&, const Tensor&)>;

// Loads the case's state dict into `m` (strict), runs `outputs` (default: {"out": m(x)}) and
// checks outputs, grad.x (float inputs) and grad.<name> for every named parameter.
void check_layer(const std::string& name, nn::Module& m, const Outputs& outputs = nullptr) {
  Case c(name);
  const peft::NamedTensors sd = c.with_prefix("state_dict.");
  {
    INFO("golden case " << name << ": parameter names must be PyTorch's");
    CHECK(names_of(m.state_dict()) == names_of(sd));
  }
  nn::LoadResult r = m.load_state_dict(sd);
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  const bool float_input = c.get("x").dtype() != peft::DType::I64;
  Tensor x = float_input ? c.leaf("x") : c.get("x");
  golden::Named leaves;
  if (float_input) leaves.emplace_back("x", x);
  for (const auto& kv : m.named_parameters()) leaves.push_back(kv);
  const golden::Named outs = outputs ? outputs(m, x) : golden::Named{{"out", m.forward(x)}};
  golden::check_forward_backward(c, outs, leaves);
}

}  // namespace

TEST_CASE("Linear loads PyTorch weights by name and matches its forward and gradients", "[golden][layer]") {
  SECTION("with bias, 3-D input") {
    nn::Linear m(6, 4);
    check_layer("layer_linear", m);
  }
  SECTION("without bias") {
    nn::Linear m(6, 4, /*bias=*/false);
    check_layer("layer_linear_nobias", m);
  }
}

TEST_CASE("Conv2d with groups, stride, padding and a non-square kernel matches PyTorch", "[golden][layer]") {
  SECTION("Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 1), groups=2)") {
    nn::Conv2dConfig cfg;
    cfg.stride = {2, 1};
    cfg.padding = {1, 1};
    cfg.groups = 2;
    nn::Conv2d m(4, 6, {3, 2}, cfg);
    check_layer("layer_conv2d_groups2_stride2_pad1", m);
  }
  SECTION("Conv2d(3, 5, 1)") {
    nn::Conv2d m(3, 5, 1);
    check_layer("layer_conv2d_1x1", m);
  }
}

TEST_CASE("Embedding with padding_idx matches PyTorch and leaves the padding row without gradient",
          "[golden][layer]") {
  nn::Embedding m(8, 3, /*padding_idx=*/1);
  check_layer("layer_embedding_padding_idx1", m);
}

TEST_CASE("LSTM with 2 layers loads weight_ih_l0 ... by name and matches PyTorch output, h_n, c_n and gradients",
          "[golden][layer]") {
  auto with_state = [](nn::Module& m, const Tensor& x) {
    auto& lstm = dynamic_cast<nn::LSTM&>(m);
    peft::LSTMResult r = lstm.forward_with_state(x);
    return golden::Named{{"out", r.output}, {"h_n", r.state.h}, {"c_n", r.state.c}};
  };
  SECTION("batch_first") {
    nn::LSTM m(5, 6, 2, /*bias=*/true, /*batch_first=*/true);
    check_layer("layer_lstm_2layers_batch_first", m, with_state);
  }
  SECTION("sequence first") {
    nn::LSTM m(5, 6, 2);
    check_layer("layer_lstm_2layers", m, with_state);
  }
  SECTION("forward() returns the output sequence alone") {
    nn::LSTM m(5, 6, 2);
    Case c("layer_lstm_2layers");
    m.load_state_dict(c.with_prefix("state_dict."));
    golden::expect_close(c, "out", m.forward(c.get("x")));
  }
}

TEST_CASE("GroupNorm, LayerNorm over one and two dims and timm's LayerNorm2d match PyTorch", "[golden][layer]") {
  SECTION("GroupNorm(2, 6)") {
    nn::GroupNorm m(2, 6);
    check_layer("layer_group_norm", m);
  }
  SECTION("LayerNorm(5)") {
    nn::LayerNorm m(5);
    check_layer("layer_layer_norm", m);
  }
  SECTION("LayerNorm((3, 5))") {
    nn::LayerNorm m(peft::Shape{3, 5});
    check_layer("layer_layer_norm_2dims", m);
  }
  SECTION("LayerNorm2d(4), eps 1e-6") {
    nn::LayerNorm2d m(4);
    check_layer("layer_layer_norm2d", m);
  }
}

TEST_CASE("GELU, AvgPool2d and Flatten layers match PyTorch", "[golden][layer]") {
  SECTION("GELU()") {
    nn::GELU m;
    check_layer("layer_gelu", m);
  }
  SECTION("GELU(approximate='tanh')") {
    nn::GELU m("tanh");
    check_layer("layer_gelu_tanh", m);
  }
  SECTION("AvgPool2d(3, 2, 1, ceil_mode=False, count_include_pad=False)") {
    nn::AvgPool2d m(3, 2, 1, false, false);
    check_layer("layer_avg_pool2d", m);
  }
  SECTION("Flatten()") {
    nn::Flatten m;
    check_layer("layer_flatten", m);
  }
  SECTION("Flatten(1, 2)") {
    nn::Flatten m(1, 2);
    check_layer("layer_flatten_1_2", m);
  }
}

TEST_CASE("a Conv2d, LayerNorm2d, GELU, AvgPool2d, Flatten, Linear stack matches PyTorch", "[golden][layer]") {
  nn::Conv2dConfig cfg;
  cfg.stride = {2, 2};
  cfg.padding = {1, 1};
  nn::Sequential block{std::make_shared<nn::Conv2d>(3, 4, 3, cfg), std::make_shared<nn::LayerNorm2d>(4),
                       std::make_shared<nn::GELU>(), std::make_shared<nn::AvgPool2d>(2, 2),
                       std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(16, 3)};
  check_layer("layer_conv_block", block);
}

TEST_CASE("the seed MLP matches PyTorch's log-probabilities and every parameter gradient", "[golden][layer]") {
  MLP m(kMlpHidden);
  check_layer("layer_mlp", m);
}

TEST_CASE("a state dict saved from PyTorch's MLP loads by name into the MLP built here and gives its outputs",
          "[golden][layer]") {
  auto model = std::make_shared<MLP>(kMlpHidden);
  const peft::NamedTensors sd = peft::io::load_file(golden::path_of("mlp_state_dict"));
  CHECK(names_of(sd) == std::set<std::string>{"seq.0.weight", "seq.0.bias", "seq.2.weight", "seq.2.bias",
                                              "seq.4.weight", "seq.4.bias"});
  nn::LoadResult r = model->load_state_dict(sd);
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  Case io("mlp_state_dict_io");
  peft::NoGradGuard no_grad;
  golden::expect_close(io, "out", model->forward(io.get("x")));
}
