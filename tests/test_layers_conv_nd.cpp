// nn::Conv1d and nn::Conv3d against PyTorch (tests/golden/golden_layers.py, cases layer_conv1d_* and
// layer_conv3d_*): PyTorch's parameters loaded by their state_dict() names, then the output, the
// input gradient and every parameter gradient for the stored upstream gradient. Also the
// configurations PyTorch would refuse or that we do not implement.
#include <catch2/catch.hpp>

#include "golden_util.h"
#include "layers/conv_nd.h"
#include "peft.h"

using golden::Case;
using peft::Tensor;
namespace nn = peft::nn;

namespace {

void check_conv(const std::string& name, nn::Module& m) {
  Case c(name);
  nn::LoadResult r = m.load_state_dict(c.with_prefix("state_dict."));
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  Tensor x = c.leaf("x");
  golden::Named leaves{{"x", x}};
  for (const auto& kv : m.named_parameters()) leaves.push_back(kv);
  golden::check_forward_backward(c, {{"out", m.forward(x)}}, leaves);
}

nn::ConvNdConfig cfg(std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation = {},
                     int64_t groups = 1, bool bias = true) {
  nn::ConvNdConfig c;
  c.stride = std::move(stride);
  c.padding = std::move(padding);
  c.dilation = std::move(dilation);
  c.groups = groups;
  c.bias = bias;
  return c;
}

}  // namespace

TEST_CASE("Conv1d matches PyTorch's forward and gradients", "[golden][layer][conv_nd]") {
  SECTION("Conv1d(4, 6, 3, stride=2, padding=1)") {
    nn::Conv1d m(4, 6, 3, cfg({2}, {1}));
    CHECK(m.repr() == "Conv1d(4, 6, kernel_size=(3,), stride=(2,), padding=(1,))");
    check_conv("layer_conv1d_k3_s2_p1", m);
  }
  SECTION("Conv1d(4, 6, 3, padding=2, dilation=2, groups=2, bias=False)") {
    nn::Conv1d m(4, 6, 3, cfg({}, {2}, {2}, 2, false));
    CHECK(m.param("weight").shape() == peft::Shape{6, 2, 3});
    check_conv("layer_conv1d_groups2_dil2_nobias", m);
  }
}

TEST_CASE("Conv3d matches PyTorch's forward and gradients", "[golden][layer][conv_nd]") {
  SECTION("Conv3d(3, 4, (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1))") {
    nn::Conv3d m(3, 4, {3, 2, 3}, cfg({2, 1, 2}, {1, 0, 1}));
    CHECK(m.repr() == "Conv3d(3, 4, kernel_size=(3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1))");
    check_conv("layer_conv3d_k323_s212_p101", m);
  }
  SECTION("Conv3d(4, 6, 3, padding=(2, 1, 0), dilation=(2, 1, 1), groups=2)") {
    nn::Conv3d m(4, 6, 3, cfg({}, {2, 1, 0}, {2, 1, 1}, 2));
    check_conv("layer_conv3d_groups2_dil", m);
  }
  SECTION("Conv3d(3, 5, 1)") {
    nn::Conv3d m(3, 5, 1);
    check_conv("layer_conv3d_1x1x1", m);
  }
}

TEST_CASE("Conv1d and Conv3d take unbatched inputs as PyTorch does", "[layer][conv_nd]") {
  nn::Conv1d c1(2, 3, 2);
  Tensor x1 = Tensor::randn({2, 5});
  Tensor y1 = c1.forward(x1);
  CHECK(y1.shape() == peft::Shape{3, 4});
  CHECK(peft::max(peft::abs(peft::sub(y1, c1.forward(x1.unsqueeze(0)).squeeze(0)))).item<float>() == 0.0f);
  nn::Conv3d c3(2, 3, 2);
  CHECK(c3.forward(Tensor::randn({2, 3, 3, 3})).shape() == peft::Shape{3, 2, 2, 2});
}

TEST_CASE("Conv1d and Conv3d refuse what they do not implement and bad shapes by name", "[layer][conv_nd][errors]") {
  using Catch::Contains;
  nn::ConvNdConfig reflect;
  reflect.padding_mode = "reflect";
  CHECK_THROWS_WITH(nn::Conv1d(2, 3, 3, reflect), Contains("padding_mode 'reflect' is not supported"));
  nn::ConvNdConfig circular;
  circular.padding_mode = "circular";
  CHECK_THROWS_WITH(nn::Conv3d(2, 3, 3, circular), Contains("Conv3d: padding_mode 'circular'"));
  nn::ConvNdConfig g3;
  g3.groups = 3;
  CHECK_THROWS_WITH(nn::Conv1d(4, 6, 3, g3), Contains("in_channels (4) must be divisible by groups (3)"));
  CHECK_THROWS_WITH(nn::Conv3d(2, 3, {3, 3}), Contains("kernel_size needs 1 or 3 values"));
  nn::Conv1d c1(2, 3, 3);
  CHECK_THROWS_WITH(c1.forward(Tensor::randn({1, 4, 5})), Contains("Conv1d: expected input (N, 2, L)"));
  CHECK_THROWS_WITH(c1.forward(Tensor::randn({1, 2, 2})), Contains("too small for kernel 3"));
  nn::Conv3d c3(2, 3, 3);
  CHECK_THROWS_WITH(c3.forward(Tensor::randn({1, 2, 4, 4})), Contains("Conv3d: expected input (N, 2, D, H, W)"));
  CHECK_THROWS_WITH(c3.forward(Tensor::randn({1, 2, 2, 4, 4})), Contains("too small for kernel depth 3"));
  CHECK_THROWS_WITH(peft::conv3d(Tensor::randn({1, 4, 3, 3, 3}), Tensor::randn({2, 3, 1, 1, 1})),
                    Contains("conv3d: weight of shape [2, 3, 1, 1, 1] with groups=1 expects input to have 3 channels"));
}
