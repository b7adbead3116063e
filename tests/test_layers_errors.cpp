// Refusals of the layers (DESIGN.md decision 5): wrong input shapes and dtypes, bad indices
// and targets, bad constructor arguments. Each throws peft::Error naming the layer or op and
// the offending shapes or values, and leaves the layer's parameters as they were.
#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

std::map<std::string, std::vector<double>> snapshot(const nn::Module& m) {
  std::map<std::string, std::vector<double>> out;
  for (auto& kv : m.state_dict()) out[kv.first] = kv.second.to_vector<double>();
  return out;
}

// Runs `bad`, expects a peft::Error whose message contains every piece, and checks that
// the module's parameters kept their values and got no gradient.
void expect_refusal(nn::Module& m, const std::function<void()>& bad, const std::vector<std::string>& pieces) {
  auto before = snapshot(m);
  std::string msg;
  try {
    bad();
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO("message: " << msg);
  REQUIRE_FALSE(msg.empty());
  for (const auto& p : pieces) CHECK_THAT(msg, Contains(p));
  CHECK(snapshot(m) == before);
  for (auto& p : m.parameters()) CHECK_FALSE(p.grad().defined());
}

Tensor randn(const Shape& s, DType dt = DType::F32) { return Tensor::randn(s, dt); }

}  // namespace

// ---------------------------------------------------------------- input shapes

TEST_CASE("Linear refuses an input whose last dim is not in_features", "[errors]") {
  nn::Linear lin(4, 3);
  expect_refusal(lin, [&] { lin.forward(randn({2, 5})); }, {"Linear", "5 features", "[2, 5]", "expected 4"});
  expect_refusal(lin, [&] { lin.forward(Tensor::scalar(1)); }, {"Linear", "[]", "expected 4"});
  // Through a container, the same refusal.
  auto seq = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Linear>(4, 6),
                                                                         std::make_shared<nn::Linear>(5, 2)});
  expect_refusal(*seq, [&] { seq->forward(randn({3, 4})); }, {"Linear", "6 features", "[3, 6]", "expected 5"});
}

TEST_CASE("Conv2d refuses inputs with the wrong channels, rank or a too-small image", "[errors]") {
  nn::Conv2d conv(3, 8, 3);
  expect_refusal(conv, [&] { conv.forward(randn({2, 4, 8, 8})); }, {"Conv2d", "(N, 3, H, W)", "[2, 4, 8, 8]"});
  expect_refusal(conv, [&] { conv.forward(randn({3, 8, 8})); }, {"Conv2d", "[3, 8, 8]"});
  expect_refusal(conv, [&] { conv.forward(randn({1, 3, 2, 2})); }, {"conv2d", "[1, 3, 2, 2]", "too small"});
}

TEST_CASE("Embedding refuses float ids and out-of-range indices", "[errors]") {
  nn::Embedding emb(10, 4);
  expect_refusal(emb, [&] { emb.forward(Tensor::from_vector(std::vector<float>{1, 2}, {2})); },
                 {"embedding", "indices must be I64", "F32"});
  expect_refusal(emb, [&] { emb.forward(Tensor::from_vector(std::vector<int64_t>{3, 10}, {2})); },
                 {"embedding", "index 10", "position 1", "10 rows"});
  expect_refusal(emb, [&] { emb.forward(Tensor::from_vector(std::vector<int64_t>{-1}, {1})); },
                 {"embedding", "index -1", "10 rows"});
}

TEST_CASE("LSTM refuses inputs of the wrong rank or feature size, and bad initial states", "[errors]") {
  nn::LSTM lstm(4, 3);
  expect_refusal(lstm, [&] { lstm.forward(randn({5, 2, 6})); }, {"LSTM", "(seq, batch, 4)", "[5, 2, 6]"});
  expect_refusal(lstm, [&] { lstm.forward(randn({5, 4})); }, {"LSTM", "[5, 4]"});
  nn::LSTM bf(4, 3, 1, true, /*batch_first=*/true);
  expect_refusal(bf, [&] { bf.forward(randn({2, 5, 3})); }, {"LSTM", "(batch, seq, 4)", "[2, 5, 3]"});
  LSTMState bad{Tensor::zeros({1, 3, 3}), Tensor::zeros({1, 2, 3})};
  expect_refusal(lstm, [&] { lstm.forward_with_state(randn({5, 2, 4}), bad); },
                 {"lstm", "initial states", "[1, 2, 3]", "[1, 3, 3]"});
}

TEST_CASE("GroupNorm refuses inputs whose channel dim is not num_channels", "[errors]") {
  nn::GroupNorm gn(2, 6);
  expect_refusal(gn, [&] { gn.forward(randn({2, 4, 3})); }, {"GroupNorm", "(N, 6, *)", "[2, 4, 3]"});
  expect_refusal(gn, [&] { gn.forward(randn({6})); }, {"GroupNorm", "[6]"});
}

TEST_CASE("LayerNorm refuses inputs whose trailing dims are not normalized_shape", "[errors]") {
  nn::LayerNorm ln(8);
  expect_refusal(ln, [&] { ln.forward(randn({2, 5})); }, {"layer_norm", "[*, 8]", "[2, 5]"});
  nn::LayerNorm ln2(Shape{3, 4});
  expect_refusal(ln2, [&] { ln2.forward(randn({2, 4, 3})); }, {"layer_norm", "[*, 3, 4]", "[2, 4, 3]"});
  expect_refusal(ln2, [&] { ln2.forward(randn({4})); }, {"layer_norm", "[4]", "[3, 4]"});
}

TEST_CASE("LayerNorm2d refuses inputs that are not (N, C, H, W) with its channels", "[errors]") {
  nn::LayerNorm2d ln(4);
  expect_refusal(ln, [&] { ln.forward(randn({2, 3, 5, 5})); }, {"LayerNorm2d", "(N, 4, H, W)", "[2, 3, 5, 5]"});
  expect_refusal(ln, [&] { ln.forward(randn({2, 4, 5})); }, {"LayerNorm2d", "[2, 4, 5]"});
}

TEST_CASE("AvgPool2d refuses an input smaller than its kernel, and non-4-D inputs", "[errors]") {
  nn::AvgPool2d pool(3, 3);
  expect_refusal(pool, [&] { pool.forward(randn({1, 2, 2, 2})); }, {"avg_pool2d", "[1, 2, 2, 2]", "too small", "3x3"});
  expect_refusal(pool, [&] { pool.forward(randn({2, 6, 6})); }, {"avg_pool2d", "4-D", "[2, 6, 6]"});
}

// ---------------------------------------------------------------- dtypes, indices, targets

TEST_CASE("an F64 input into an F32 layer is refused naming both dtypes", "[errors]") {
  nn::Linear lin(4, 3);
  expect_refusal(lin, [&] { lin.forward(randn({2, 4}, DType::F64)); }, {"linear", "dtype mismatch", "F64", "F32"});
  nn::Conv2d conv(2, 2, 1);
  expect_refusal(conv, [&] { conv.forward(randn({1, 2, 3, 3}, DType::F64)); }, {"conv2d", "F64", "F32"});
  nn::LayerNorm ln(4);
  expect_refusal(ln, [&] { ln.forward(randn({2, 4}, DType::F64)); }, {"layer_norm", "F64", "F32"});
  nn::GroupNorm gn(1, 2);
  expect_refusal(gn, [&] { gn.forward(randn({1, 2, 3}, DType::F64)); }, {"group_norm", "F64", "F32"});
  nn::LSTM lstm(4, 3);
  expect_refusal(lstm, [&] { lstm.forward(randn({5, 2, 4}, DType::F64)); }, {"lstm", "F64", "F32"});
  LSTMState f64_state{Tensor::zeros({1, 2, 3}, DType::F64), Tensor::zeros({1, 2, 3}, DType::F64)};
  expect_refusal(lstm, [&] { lstm.forward_with_state(randn({5, 2, 4}), f64_state); }, {"lstm", "h_0", "F64"});
  // An integer input to a float layer.
  expect_refusal(lin, [&] { lin.forward(Tensor::zeros({2, 4}, DType::I64)); }, {"linear", "I64"});
}

TEST_CASE("nll_loss refuses class targets outside [0, C), except ignore_index", "[errors]") {
  nn::Linear lin(4, 3);
  Tensor x = randn({2, 4});
  auto loss_with = [&](std::vector<int64_t> t) {
    return nll_loss(log_softmax(lin.forward(x), -1), Tensor::from_vector(t, {2}));
  };
  expect_refusal(lin, [&] { loss_with({0, 3}).backward(); }, {"nll_loss", "target 3", "position 1", "3 classes"});
  expect_refusal(lin, [&] { loss_with({-1, 0}).backward(); }, {"nll_loss", "target -1", "position 0"});
  expect_refusal(lin, [&] { nll_loss(log_softmax(lin.forward(x), -1), Tensor::from_vector(std::vector<int64_t>{1}, {1})); },
                 {"nll_loss", "[1]", "[2, 3]"});
  expect_refusal(lin, [&] { nll_loss(log_softmax(lin.forward(x), -1), Tensor::from_vector(std::vector<float>{0, 1}, {2})); },
                 {"nll_loss", "I64", "F32"});
  expect_refusal(lin, [&] { cross_entropy(lin.forward(x), Tensor::from_vector(std::vector<int64_t>{7, 0}, {2})); },
                 {"target 7", "3 classes"});
  // ignore_index is skipped, not refused.
  CHECK_NOTHROW(loss_with({-100, 2}));
}

// ---------------------------------------------------------------- constructors

TEST_CASE("Conv2d refuses groups that do not divide the channels, and empty kernels", "[errors]") {
  auto with_groups = [](int64_t g) {
    nn::Conv2dConfig c;
    c.groups = g;
    return c;
  };
  CHECK_THROWS_AS(nn::Conv2d(6, 8, 3, with_groups(4)), Error);
  CHECK_THROWS_WITH(nn::Conv2d(6, 8, 3, with_groups(4)), Contains("Conv2d") && Contains("in_channels (6)") &&
                                                            Contains("groups (4)"));
  CHECK_THROWS_WITH(nn::Conv2d(8, 6, 3, with_groups(4)), Contains("Conv2d") && Contains("out_channels (6)") &&
                                                            Contains("groups (4)"));
  CHECK_THROWS_WITH(nn::Conv2d(8, 8, 3, with_groups(0)), Contains("Conv2d") && Contains("groups (0)"));
  CHECK_THROWS_WITH(nn::Conv2d(3, 8, {0, 3}), Contains("Conv2d") && Contains("(0, 3)"));
}

TEST_CASE("GroupNorm refuses num_groups that do not divide num_channels", "[errors]") {
  CHECK_THROWS_WITH(nn::GroupNorm(4, 6), Contains("GroupNorm") && Contains("num_channels (6)") &&
                                             Contains("num_groups (4)"));
  CHECK_THROWS_WITH(nn::GroupNorm(0, 6), Contains("GroupNorm") && Contains("num_groups (0)"));
}

TEST_CASE("Dropout refuses p outside [0, 1]", "[errors]") {
  CHECK_THROWS_AS(nn::Dropout(1.5), Error);
  CHECK_THROWS_WITH(nn::Dropout(1.5), Contains("Dropout") && Contains("1.5"));
  CHECK_THROWS_WITH(nn::Dropout(-0.1), Contains("Dropout") && Contains("-0.1"));
  CHECK_NOTHROW(nn::Dropout(0.0));
  CHECK_NOTHROW(nn::Dropout(1.0));
  CHECK_THROWS_WITH(dropout(randn({2}), 2.0, true), Contains("dropout") && Contains("2"));
}

TEST_CASE("other constructors refuse bad sizes naming the layer and the values", "[errors]") {
  CHECK_THROWS_WITH(nn::Linear(-1, 2), Contains("Linear") && Contains("in=-1"));
  CHECK_THROWS_WITH(nn::Embedding(0, 4), Contains("Embedding") && Contains("(0, 4)"));
  CHECK_THROWS_WITH(nn::Embedding(10, 4, 10), Contains("Embedding") && Contains("padding_idx 10"));
  CHECK_THROWS_WITH(nn::Embedding(10, 4, -11), Contains("Embedding") && Contains("padding_idx -11"));
  CHECK_THROWS_WITH(nn::LSTM(0, 4), Contains("LSTM") && Contains("input_size=0"));
  CHECK_THROWS_WITH(nn::LSTM(3, 4, 0), Contains("LSTM") && Contains("num_layers=0"));
  CHECK_THROWS_WITH(nn::GELU("fast"), Contains("GELU") && Contains("'fast'"));
  CHECK_THROWS_WITH(nn::AdaptiveAvgPool2d(2), Contains("AdaptiveAvgPool2d") && Contains("2"));
  CHECK_THROWS_WITH(nn::LayerNorm(Shape{}), Contains("LayerNorm"));
}

TEST_CASE("errors carry the file and line of the check", "[errors]") {
  nn::Linear lin(4, 3);
  CHECK_THROWS_WITH(lin.forward(randn({2, 5})), Contains("linear.cpp:"));
}
