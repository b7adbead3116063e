// lora.Conv1d / lora.Conv3d against PEFT 0.21.2 (tests/golden/golden_peft_conv_nd.py): PEFT's adapter
// files loaded with PeftModel::from_pretrained onto the same tiny model (two Conv3d, two Conv1d, one
// grouped), then outputs with the adapter on and off, merged outputs, and the gradients of every
// trainable parameter after one backward; plus what PEFT refuses, refused here with the model left
// as it was.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <unistd.h>

#include "adapters/lora_conv_nd.h"
#include "cli_test_util.h"
#include "golden_util.h"
#include "io/safetensors.h"
#include "layers/conv_nd.h"
#include "peft.h"

using namespace peft;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

// golden_peft_conv_nd.py's ConvNdNet.
class ConvNdNet : public nn::Module {
 public:
  PEFT_MODULE_CLONE(ConvNdNet)
  explicit ConvNdNet(int64_t c1_kernel = 3) {
    nn::ConvNdConfig c3;
    c3.stride = {2, 1, 2};
    c3.padding = {1, 0, 1};
    register_module("c3", std::make_shared<nn::Conv3d>(2, 4, std::vector<int64_t>{3, 2, 3}, c3));
    nn::ConvNdConfig c3b;
    c3b.padding = {1, 0, 0};
    c3b.bias = false;
    register_module("c3b", std::make_shared<nn::Conv3d>(4, 4, std::vector<int64_t>{2, 1, 1}, c3b));
    nn::ConvNdConfig c1;
    c1.stride = {2};
    c1.padding = {1};
    register_module("c1", std::make_shared<nn::Conv1d>(4, 6, c1_kernel, c1));
    nn::ConvNdConfig c1g;
    c1g.padding = {1};
    c1g.groups = 2;
    register_module("c1g", std::make_shared<nn::Conv1d>(6, 6, 3, c1g));
  }
  std::string type_name() const override { return "ConvNdNet"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = child("c3b")->forward(child("c3")->forward(x));
    h = h.reshape({h.size(0), h.size(1), -1});
    return child("c1g")->forward(relu(child("c1")->forward(h)));
  }
};

std::string case_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/peft_conv_nd/" + name; }

std::shared_ptr<ConvNdNet> base_model(const golden::Case& io) {
  auto m = std::make_shared<ConvNdNet>();
  m->load_state_dict(io.with_prefix("base."));  // strict: the names are PyTorch's
  m->eval();
  return m;
}

const golden::Tol kTol{1e-5, 1e-4};

void run_case(const std::string& name) {
  INFO("PEFT golden case " << name);
  golden::Case io("peft_conv_nd/" + name + "/io");
  const Tensor x = io.get("x");
  std::vector<std::string> warnings;
  auto pm = PeftModel::from_pretrained(base_model(io), case_dir(name), std::nullopt, "default", false, &warnings);
  CHECK(warnings.empty());
  CHECK(pm->model()->get_submodule("c1")->type_name() == "lora.Conv1d");
  {
    NoGradGuard g;
    golden::expect_close(io, "out", pm->forward(x), kTol);
    {
      DisableAdapterGuard off(*pm);
      golden::expect_close(io, "out_base", pm->forward(x), kTol);
    }
    golden::expect_close(io, "out", pm->forward(x), kTol);
  }

  // The files written here load back to the same outputs, under PEFT's keys.
  const fs::path out = fs::temp_directory_path() / ("peft_conv_nd_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(out);
  pm->save_pretrained(out.string());
  {
    NamedTensors ours = io::load_file((out / "adapter_model.safetensors").string());
    NamedTensors theirs = io::load_file(case_dir(name) + "/adapter_model.safetensors");
    std::map<std::string, Shape> our_shapes, their_shapes;
    for (const auto& [k, t] : ours) our_shapes[k] = t.shape();
    for (const auto& [k, t] : theirs) their_shapes[k] = t.shape();
    CHECK(our_shapes == their_shapes);
    auto again = PeftModel::from_pretrained(base_model(io), out.string());
    NoGradGuard g;
    golden::expect_close(io, "out", again->forward(x), kTol);
  }
  fs::remove_all(out);

  // One backward on a trainable load: the gradient of every trainable parameter is PEFT's.
  auto tr = PeftModel::from_pretrained(base_model(io), case_dir(name), std::nullopt, "default", true);
  Tensor y = tr->forward(x);
  golden::expect_close(io, "out", y, kTol);
  y.backward(io.get("grad_out"));
  std::set<std::string> trainable, expected;
  for (const auto& [n, t] : io.with_prefix("grad.")) expected.insert(n);
  for (auto& [n, p] : tr->named_parameters()) {
    if (!p.requires_grad()) continue;
    trainable.insert(n);
    INFO("parameter " << n);
    REQUIRE(p.grad().defined());
    golden::expect_close(io, "grad." + n, p.grad(), golden::Tol{1e-5, 1e-4});
  }
  CHECK(trainable == expected);

  if (io.has("out_merged")) {
    nn::ModulePtr merged = tr->merge_and_unload();
    CHECK(merged->get_submodule("c3")->type_name() == "Conv3d");
    NoGradGuard g;
    golden::expect_close(io, "out_merged", merged->forward(x), kTol);
  }
}

LoraConfig config(std::vector<std::string> targets, int64_t r = 4) {
  LoraConfig c;
  c.target_modules = std::move(targets);
  c.r = r;
  c.lora_alpha = 8;
  c.init_lora_weights = LoraInit::Random;  // B ≠ 0, so merging changes the weights
  return c;
}

double max_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return static_cast<double>(max(abs(sub(a, b))).item<float>());
}

std::map<std::string, std::vector<float>> weights(nn::Module& m) {
  std::map<std::string, std::vector<float>> out;
  for (auto& [n, p] : m.named_parameters()) out[n] = p.contiguous().to_vector<float>();
  return out;
}

}  // namespace

TEST_CASE("lora.Conv1d / lora.Conv3d load PEFT adapters and match PEFT's outputs, merges and gradients",
          "[lora][conv_nd][golden]") {
  for (const char* name : {"plain", "groups", "dora", "lora_bias"}) run_case(name);
}

TEST_CASE("target_modules picks Conv1d and Conv3d as lora.Conv1d / lora.Conv3d with PEFT's lora_A / lora_B",
          "[lora][conv_nd]") {
  auto pm = get_peft_model(std::make_shared<ConvNdNet>(), config({"c3", "c1g"}));
  nn::ModulePtr c3 = pm->model()->get_submodule("c3");
  CHECK(c3->type_name() == "lora.Conv3d");
  CHECK(pm->model()->get_submodule("c3.lora_A.default")->repr() ==
        "Conv3d(2, 4, kernel_size=(3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1), bias=False)");
  CHECK(pm->model()->get_submodule("c3.lora_B.default")->repr() ==
        "Conv3d(4, 4, kernel_size=(1, 1, 1), stride=(1, 1, 1), bias=False)");
  CHECK(pm->model()->get_submodule("c1g.lora_B.default")->repr() ==
        "Conv1d(4, 6, kernel_size=(1,), stride=(1,), groups=2, bias=False)");
  CHECK(pm->model()->get_submodule("c1g.lora_A.default")->param("weight").shape() == Shape{4, 6, 3});
}

TEST_CASE("merge then unmerge restores Conv1d / Conv3d weights; a 1x1x1 Conv3d merges (PEFT 0.21.2 cannot)",
          "[lora][conv_nd]") {
  auto net = std::make_shared<ConvNdNet>();
  const auto before = weights(*net);
  auto pm = get_peft_model(net, config({"c3", "c3b", "c1"}));
  pm->eval();
  Tensor x = Tensor::randn({2, 2, 4, 5, 6});
  NoGradGuard g;
  Tensor y = pm->forward(x);
  pm->merge_adapter();
  CHECK(max_diff(pm->forward(x), y) < 1e-5);
  pm->unmerge_adapter();
  CHECK(max_diff(pm->forward(x), y) < 1e-5);
  for (const auto& [n, w] : weights(*pm->base_model()->model())) {
    if (n.find("lora_") != std::string::npos) continue;
    std::string base_name = n;  // "c3.base_layer.weight" → "c3.weight"
    const auto pos = base_name.find("base_layer.");
    if (pos != std::string::npos) base_name.erase(pos, 11);
    INFO(n);
    REQUIRE(before.count(base_name));
    const auto& b = before.at(base_name);
    double d = 0;
    for (size_t i = 0; i < w.size(); ++i) d = std::max(d, static_cast<double>(std::abs(w[i] - b[i])));
    CHECK(d < 1e-6);
  }
  // A Conv3d with a 1×1×1 kernel: PEFT's get_delta_weight mistakes it for a 2-D 1×1 and fails in a
  // matmul; here it merges to the unmerged output.
  auto seq = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Conv3d>(3, 5, 1)});
  auto pm2 = get_peft_model(seq, config({"0"}));
  pm2->eval();
  Tensor x2 = Tensor::randn({2, 3, 2, 3, 3});
  Tensor y2 = pm2->forward(x2);
  nn::ModulePtr merged = pm2->merge_and_unload();
  CHECK(max_diff(merged->forward(x2), y2) < 1e-5);
}

TEST_CASE("lora.Conv1d / lora.Conv3d refuse what PEFT refuses and leave the model as it was", "[lora][conv_nd][errors]") {
  SECTION("a rank not divisible by the base's groups") {
    auto net = std::make_shared<ConvNdNet>();
    const auto before = weights(*net);
    CHECK_THROWS_WITH(get_peft_model(net, config({"c1", "c1g"}, 3)),
                      Contains("Targeting a Conv1d with groups=2 and rank 3. Currently, support is limited to conv "
                               "layers where the rank is divisible by groups."));
    CHECK(net->get_submodule("c1")->type_name() == "Conv1d");
    CHECK(net->get_submodule("c1g")->type_name() == "Conv1d");
    CHECK(weights(*net) == before);
  }
  SECTION("merging a grouped convolution") {
    auto pm = get_peft_model(std::make_shared<ConvNdNet>(), config({"c1", "c1g"}));
    const auto before = weights(*pm);
    CHECK_THROWS_WITH(pm->merge_adapter(), Contains("Merging is not supported for _ConvNd layers with groups > 1!"));
    // As in PEFT the model-level merge has already merged c1 when c1g refuses; c1g is unchanged.
    for (const auto& [n, w] : weights(*pm))
      if (n.find("c1g.") != std::string::npos) CHECK(w == before.at(n));
    auto layer = std::dynamic_pointer_cast<LoraLayer>(pm->model()->get_submodule("c1g"));
    REQUIRE(layer);
    CHECK_FALSE(layer->merged());
  }
  SECTION("a dilated base: lora_A has no dilation in PEFT, so the branch shapes differ") {
    nn::ConvNdConfig c;
    c.dilation = {2};
    auto seq = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Conv1d>(2, 3, 3, c)});
    auto pm = get_peft_model(seq, config({"0"}));
    CHECK_THROWS_WITH(pm->forward(Tensor::randn({1, 2, 9})), Contains("not its dilation [2]"));
  }
  SECTION("an adapter file whose shapes do not fit the model") {
    golden::Case io("peft_conv_nd/plain/io");
    auto net = std::make_shared<ConvNdNet>(/*c1_kernel=*/5);
    const auto before = weights(*net);
    CHECK_THROWS_WITH(PeftModel::from_pretrained(net, case_dir("plain")), Contains("c1.lora_A"));
    CHECK(weights(*net) == before);
  }
  SECTION("DoRA with lora_bias") {
    LoraConfig c = config({"c1"});
    c.use_dora = true;
    c.lora_bias = true;
    auto net = std::make_shared<ConvNdNet>();
    CHECK_THROWS_WITH(get_peft_model(net, c), Contains("lora_bias=True is not supported for DoRA"));
    CHECK(net->get_submodule("c1")->type_name() == "Conv1d");
  }
}

TEST_CASE("peft merge merges Conv1d / Conv3d adapters (3-D / 5-D weights) to PEFT's merged outputs", "[cli][conv_nd]") {
  const fs::path d = fs::temp_directory_path() / ("peft_conv_nd_cli_" + std::to_string(::getpid()));
  fs::create_directories(d);
  for (const std::string name : {"plain", "dora", "lora_bias", "groups"}) {
    INFO("case " << name);
    golden::Case io("peft_conv_nd/" + name + "/io");
    const std::string base = (d / (name + "_base.safetensors")).string(), out = (d / (name + ".safetensors")).string();
    io::save_file(io.with_prefix("base."), base);
    cli_test::Result r = cli_test::run_cli({"merge", "--base", base, "--adapter", case_dir(name), "--out", out});
    INFO(r.out);
    if (name == "groups") {  // PEFT cannot merge a grouped convolution either
      CHECK(r.code == 1);
      CHECK(cli_test::contains(r.out, "merging is not supported for Conv1d layers with groups > 1"));
      continue;
    }
    REQUIRE(r.code == 0);
    auto net = std::make_shared<ConvNdNet>();
    net->load_state_dict(io::load_file(out));
    NoGradGuard g;
    golden::expect_close(io, "out_merged", net->forward(io.get("x")), kTol);
  }
  fs::remove_all(d);
}
