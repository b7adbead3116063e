// Module tree semantics against PyTorch's torch.nn.Module: naming and order of
// named_modules / named_parameters / state_dict, dotted lookup and replacement (and that
// forward runs the replacement), registration refusals, train/eval, load_state_dict (strict,
// non-strict, shape errors, nothing changed on error, copies into the existing tensors),
// shared parameters, and repr() equal to PyTorch's print(model) text.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

// The seed MLP: one child "seq" holding the layers.
class MLP : public nn::Module {
 public:
  explicit MLP(int64_t H = 32) {
    register_module("seq", std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
                               std::make_shared<nn::Linear>(20, H), std::make_shared<nn::ReLU>(),
                               std::make_shared<nn::Linear>(H, H), std::make_shared<nn::ReLU>(),
                               std::make_shared<nn::Linear>(H, 2), std::make_shared<nn::LogSoftmax>(-1)}));
  }
  std::string type_name() const override { return "MLP"; }
  Tensor forward(const Tensor& x) override { return child("seq")->forward(x); }
};

// A module with its own parameter, a buffer and a child (PyTorch orders state_dict keys
// as own parameters, own buffers, then children).
class WithBuffer : public nn::Module {
 public:
  WithBuffer() {
    register_parameter("scale", Tensor::ones({3}));
    register_buffer("running", Tensor::zeros({3}));
    register_module("lin", std::make_shared<nn::Linear>(3, 2));
  }
  std::string type_name() const override { return "WithBuffer"; }
};

// Registers a tensor it is given: lets two modules hold the same parameter (weight tying).
class Holder : public nn::Module {
 public:
  explicit Holder(const Tensor& w) { register_parameter("weight", w); }
  std::string type_name() const override { return "Holder"; }
};

class Bare : public nn::Module {
 public:
  std::string type_name() const override { return "Bare"; }
};

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& kv : v) out.push_back(kv.first);
  return out;
}

// Every parameter and buffer value, by state_dict key, copied out.
std::map<std::string, std::vector<double>> snapshot(const nn::Module& m) {
  std::map<std::string, std::vector<double>> out;
  for (auto& kv : m.state_dict()) out[kv.first] = kv.second.to_vector<double>();
  return out;
}

// A state dict with fresh (non-aliased) values: every entry is 0.5 + its index.
nn::StateDict fresh_values(const nn::Module& m) {
  nn::StateDict sd;
  double v = 0.5;
  for (auto& kv : m.state_dict()) sd.emplace_back(kv.first, Tensor::full(kv.second.shape(), v++));
  return sd;
}

}  // namespace

TEST_CASE("named_modules of the seed MLP is root then seq and its children, pre-order, with type names", "[module]") {
  auto model = std::make_shared<MLP>(2000);
  std::vector<std::pair<std::string, std::string>> got;
  for (auto& [name, m] : model->named_modules()) got.emplace_back(name, m->type_name());
  const std::vector<std::pair<std::string, std::string>> want = {
      {"", "MLP"},          {"seq", "Sequential"}, {"seq.0", "Linear"}, {"seq.1", "ReLU"},
      {"seq.2", "Linear"},  {"seq.3", "ReLU"},     {"seq.4", "Linear"}, {"seq.5", "LogSoftmax"}};
  CHECK(got == want);
  CHECK(model->named_modules().front().second.get() == model.get());
  // A prefix is prepended as PyTorch's named_modules(prefix=...).
  CHECK(model->named_modules("model")[2].first == "model.seq.0");
}

TEST_CASE("named_parameters of the seed MLP follow registration order with dotted names", "[module]") {
  auto model = std::make_shared<MLP>(8);
  CHECK(names_of(model->named_parameters()) ==
        std::vector<std::string>{"seq.0.weight", "seq.0.bias", "seq.2.weight", "seq.2.bias", "seq.4.weight",
                                 "seq.4.bias"});
  CHECK(model->named_parameters(/*recurse=*/false).empty());
  auto lin = model->get_submodule("seq.2");
  CHECK(names_of(lin->named_parameters(false)) == std::vector<std::string>{"weight", "bias"});
  CHECK(model->named_parameters()[2].second.is_same(lin->param("weight")));
  for (auto& p : model->parameters()) CHECK(p.requires_grad());
}

TEST_CASE("the seed MLP with H=2000 has 4,048,002 parameters (PyTorch's count)", "[module]") {
  // 20·2000+2000 + 2000·2000+2000 + 2000·2+2. (4,100,164 in DESIGN.md is the count after
  // LoRA r=8 on seq.0/seq.2 plus the modules_to_save copy of seq.4.)
  auto model = std::make_shared<MLP>(2000);
  int64_t n = 0;
  for (auto& p : model->parameters()) n += p.numel();
  CHECK(n == 4048002);
  CHECK(model->parameters().size() == 6);
}

TEST_CASE("get_submodule resolves dotted names and names the missing part when it fails", "[module]") {
  auto model = std::make_shared<MLP>();
  auto seq = model->child("seq");
  CHECK(model->get_submodule("") == model);
  CHECK(model->get_submodule("seq") == seq);
  CHECK(model->get_submodule("seq.2") == seq->child("2"));
  CHECK(model->get_submodule("seq.2")->type_name() == "Linear");
  CHECK_THROWS_AS(model->get_submodule("seq.9"), Error);
  CHECK_THROWS_WITH(model->get_submodule("seq.9"), Contains("`9`") && Contains("Sequential") && Contains("seq.9"));
  CHECK_THROWS_WITH(model->get_submodule("encoder.0"), Contains("`encoder`") && Contains("MLP"));
  // A parameter is not a submodule.
  CHECK_THROWS_WITH(model->get_submodule("seq.0.weight"), Contains("`weight`") && Contains("Linear"));
  CHECK_THROWS_WITH(model->child("nope"), Contains("nope"));
}

TEST_CASE("set_submodule replaces in place, keeps the order, and forward runs the replacement", "[module]") {
  manual_seed(3);
  auto model = std::make_shared<MLP>(16);
  auto seq = std::dynamic_pointer_cast<nn::Sequential>(model->child("seq"));
  REQUIRE(seq);
  Tensor x = Tensor::randn({5, 20});
  Tensor before;
  {
    NoGradGuard g;
    before = model->forward(x);
  }
  model->set_submodule("seq.1", std::make_shared<nn::Identity>());
  std::vector<std::string> order;
  for (auto& [name, m] : model->named_modules()) order.push_back(name + ":" + m->type_name());
  CHECK(order == std::vector<std::string>{":MLP", "seq:Sequential", "seq.0:Linear", "seq.1:Identity",
                                          "seq.2:Linear", "seq.3:ReLU", "seq.4:Linear", "seq.5:LogSoftmax"});
  NoGradGuard g;
  Tensor after = model->forward(x);
  // The same computation by hand, without the first ReLU.
  Tensor h = (*seq)[0]->forward(x);
  const std::vector<float> hv = h.to_vector<float>();
  REQUIRE(*std::min_element(hv.begin(), hv.end()) < 0);  // so dropping the ReLU matters
  Tensor want = (*seq)[5]->forward((*seq)[4]->forward(relu((*seq)[2]->forward(h))));
  CHECK(after.to_vector<float>() == want.to_vector<float>());
  CHECK(after.to_vector<float>() != before.to_vector<float>());
}

TEST_CASE("a Sequential whose ReLU is replaced by Identity passes negative values", "[module]") {
  auto seq = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Identity>(),
                                                                         std::make_shared<nn::ReLU>()});
  Tensor x = Tensor::from_vector(std::vector<float>{-2, -1, 0, 3}, {4});
  CHECK(seq->forward(x).to_vector<float>() == std::vector<float>{0, 0, 0, 3});
  seq->set_submodule("1", std::make_shared<nn::Identity>());
  CHECK(seq->forward(x).to_vector<float>() == std::vector<float>{-2, -1, 0, 3});
  CHECK(seq->size() == 2);
}

TEST_CASE("set_submodule refuses unknown names, the root and null, leaving the tree as it was", "[module]") {
  auto model = std::make_shared<MLP>();
  auto old = model->get_submodule("seq.1");
  CHECK_THROWS_WITH(model->set_submodule("seq.9", std::make_shared<nn::Identity>()), Contains("9"));
  CHECK_THROWS_WITH(model->set_submodule("enc.1", std::make_shared<nn::Identity>()), Contains("enc"));
  CHECK_THROWS_AS(model->set_submodule("", std::make_shared<nn::Identity>()), Error);
  CHECK_THROWS_AS(model->set_submodule("seq.1", nullptr), Error);
  CHECK(model->get_submodule("seq.1") == old);
  CHECK(model->named_modules().size() == 8);
}

TEST_CASE("register_* refuse names with a dot, empty names and names already taken", "[module]") {
  Bare m;
  m.register_parameter("w", Tensor::zeros({2}));
  m.register_buffer("b", Tensor::zeros({2}));
  m.register_module("c", std::make_shared<nn::ReLU>());
  CHECK_THROWS_WITH(m.register_parameter("a.b", Tensor::zeros({1})), Contains("\".\"") && Contains("a.b"));
  CHECK_THROWS_WITH(m.register_buffer("x.y", Tensor::zeros({1})), Contains("x.y"));
  CHECK_THROWS_WITH(m.register_module("p.q", std::make_shared<nn::ReLU>()), Contains("p.q"));
  CHECK_THROWS_AS(m.register_parameter("", Tensor::zeros({1})), Error);
  // Duplicates within and across the three tables.
  CHECK_THROWS_WITH(m.register_parameter("w", Tensor::zeros({1})), Contains("'w' already exists"));
  CHECK_THROWS_WITH(m.register_buffer("w", Tensor::zeros({1})), Contains("'w' already exists"));
  CHECK_THROWS_WITH(m.register_module("b", std::make_shared<nn::ReLU>()), Contains("'b' already exists"));
  CHECK_THROWS_WITH(m.register_parameter("c", Tensor::zeros({1})), Contains("'c' already exists"));
  CHECK_THROWS_AS(m.register_module<nn::Module>("d", nullptr), Error);
  CHECK(names_of(m.named_parameters()) == std::vector<std::string>{"w"});
  CHECK(names_of(m.named_buffers()) == std::vector<std::string>{"b"});
  CHECK(m.named_children().size() == 1);
}

TEST_CASE("tree walks on a module not owned by a shared_ptr throw peft::Error saying so", "[module]") {
  Bare on_stack;
  on_stack.register_module("act", std::make_shared<nn::ReLU>());
  CHECK_THROWS_WITH(on_stack.named_modules(), Contains("Bare.named_modules") && Contains("std::make_shared"));
  CHECK_THROWS_AS(on_stack.get_submodule("act"), Error);
  CHECK_THROWS_AS(on_stack.set_submodule("act", std::make_shared<nn::Identity>()), Error);
  // Walks that need no owner still work.
  CHECK(on_stack.named_parameters().empty());
  CHECK(on_stack.repr() == "Bare(\n  (act): ReLU()\n)");
}

TEST_CASE("train() and eval() propagate to every descendant", "[module]") {
  auto model = std::make_shared<MLP>();
  for (auto& [name, m] : model->named_modules()) CHECK(m->is_training());
  model->eval();
  for (auto& [name, m] : model->named_modules()) CHECK_FALSE(m->is_training());
  model->train();
  for (auto& [name, m] : model->named_modules()) CHECK(m->is_training());
  model->train(false);
  CHECK_FALSE(model->get_submodule("seq.4")->is_training());
}

TEST_CASE("eval() turns off a Dropout deep in the tree", "[module]") {
  auto seq = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Dropout>(0.5)})});
  Tensor x = Tensor::ones({1000});
  const std::vector<float> y = seq->forward(x).to_vector<float>();
  CHECK(std::count(y.begin(), y.end(), 0.0f) > 300);  // some dropped, the rest ×2
  CHECK(std::count(y.begin(), y.end(), 2.0f) > 300);
  seq->eval();
  CHECK(seq->forward(x).to_vector<float>() == x.to_vector<float>());
}

TEST_CASE("state_dict keys are own parameters, own buffers, then children, as PyTorch", "[module]") {
  auto model = std::make_shared<MLP>();
  CHECK(names_of(model->state_dict()) == names_of(model->named_parameters()));
  auto root_ptr = std::make_shared<Bare>();
  Bare& root = *root_ptr;
  root.register_module("a", std::make_shared<WithBuffer>());
  root.register_parameter("z", Tensor::zeros({1}));
  CHECK(names_of(root.state_dict()) ==
        std::vector<std::string>{"z", "a.scale", "a.running", "a.lin.weight", "a.lin.bias"});
  CHECK(names_of(root.named_parameters()) == std::vector<std::string>{"z", "a.scale", "a.lin.weight", "a.lin.bias"});
  CHECK(names_of(root.named_buffers()) == std::vector<std::string>{"a.running"});
  // state_dict entries are the module's own tensors (PyTorch returns them detached; values shared).
  CHECK(root.state_dict()[3].second.storage() == root.get_submodule("a.lin")->param("weight").storage());
}

TEST_CASE("load_state_dict strict: a missing key throws listing it and changes nothing", "[module]") {
  auto model = std::make_shared<MLP>();
  auto before = snapshot(*model);
  nn::StateDict sd = fresh_values(*model);
  sd.erase(sd.begin() + 3);  // seq.2.bias
  sd.erase(sd.begin());      // seq.0.weight
  CHECK_THROWS_WITH(model->load_state_dict(sd), Contains("Missing key(s)") && Contains("\"seq.0.weight\", \"seq.2.bias\""));
  CHECK(snapshot(*model) == before);
}

TEST_CASE("load_state_dict strict: an unexpected key throws listing it and changes nothing", "[module]") {
  auto model = std::make_shared<MLP>();
  auto before = snapshot(*model);
  nn::StateDict sd = fresh_values(*model);
  sd.emplace_back("seq.6.weight", Tensor::zeros({2}));
  sd.emplace_back("head.bias", Tensor::zeros({2}));
  CHECK_THROWS_WITH(model->load_state_dict(sd),
                    Contains("Unexpected key(s)") && Contains("\"seq.6.weight\", \"head.bias\"") && !Contains("Missing"));
  CHECK(snapshot(*model) == before);
}

TEST_CASE("load_state_dict non-strict returns missing and unexpected keys and loads the rest", "[module]") {
  auto model = std::make_shared<MLP>();
  auto before = snapshot(*model);
  nn::StateDict sd = fresh_values(*model);
  const std::vector<double> new_w0 = sd[0].second.to_vector<double>();
  sd.erase(sd.begin() + 5);  // seq.4.bias
  sd.emplace_back("extra", Tensor::zeros({1}));
  nn::LoadResult r = model->load_state_dict(sd, /*strict=*/false);
  CHECK(r.missing_keys == std::vector<std::string>{"seq.4.bias"});
  CHECK(r.unexpected_keys == std::vector<std::string>{"extra"});
  auto after = snapshot(*model);
  CHECK(after["seq.0.weight"] == new_w0);
  CHECK(after["seq.4.bias"] == before["seq.4.bias"]);
  // A complete dict loads with nothing reported.
  nn::LoadResult full = model->load_state_dict(fresh_values(*model), true);
  CHECK(full.missing_keys.empty());
  CHECK(full.unexpected_keys.empty());
}

TEST_CASE("load_state_dict: a shape mismatch names the key and both shapes, strict or not, and changes nothing",
          "[module]") {
  auto model = std::make_shared<MLP>(8);
  auto before = snapshot(*model);
  nn::StateDict sd = fresh_values(*model);
  sd[5].second = Tensor::zeros({3});  // seq.4.bias is (2): the earlier entries are valid
  for (bool strict : {true, false}) {
    CHECK_THROWS_WITH(model->load_state_dict(sd, strict),
                      Contains("size mismatch for seq.4.bias") && Contains("[3]") && Contains("[2]"));
    CHECK(snapshot(*model) == before);
  }
  sd[5].second = Tensor::zeros({2});
  sd[0].second = Tensor::zeros({20, 8});  // transposed weight
  CHECK_THROWS_WITH(model->load_state_dict(sd),
                    Contains("seq.0.weight") && Contains("[20, 8]") && Contains("[8, 20]"));
  CHECK(snapshot(*model) == before);
}

TEST_CASE("load_state_dict: an integer tensor for a float parameter is refused and changes nothing", "[module]") {
  auto model = std::make_shared<MLP>(4);
  auto before = snapshot(*model);
  nn::StateDict sd = fresh_values(*model);
  sd[5].second = Tensor::zeros({2}, DType::I64);
  CHECK_THROWS_WITH(model->load_state_dict(sd), Contains("seq.4.bias") && Contains("I64"));
  CHECK(snapshot(*model) == before);
}

TEST_CASE("load_state_dict copies into the existing tensors, so optimizers keep working", "[module]") {
  auto model = std::make_shared<MLP>(4);
  std::vector<TensorImpl*> impls;
  for (auto& p : model->parameters()) impls.push_back(p.unsafe_impl());
  optim::SGD opt(model->parameters(), {/*lr=*/1.0});
  nn::StateDict sd = fresh_values(*model);
  model->load_state_dict(sd);
  auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(params[i].unsafe_impl() == impls[i]);
    CHECK(params[i].requires_grad());
    CHECK(params[i].to_vector<double>() == sd[i].second.to_vector<double>());
    CHECK(params[i].storage() != sd[i].second.storage());  // a copy, not an alias
  }
  // The optimizer, built before the load, updates the loaded values.
  Tensor x = Tensor::ones({1, 20});
  sum(model->forward(x)).backward();
  const std::vector<double> w0 = params[0].to_vector<double>();
  const std::vector<double> g0 = params[0].grad().to_vector<double>();
  opt.step();
  const std::vector<double> w1 = params[0].to_vector<double>();
  for (size_t i = 0; i < w0.size(); ++i) CHECK(w1[i] == Approx(w0[i] - g0[i]).margin(1e-6));
}

TEST_CASE("a parameter shared by two modules is listed once by named_parameters", "[module]") {
  auto root_ptr = std::make_shared<Bare>();
  Bare& root = *root_ptr;
  auto enc = root.register_module("enc", std::make_shared<nn::Linear>(4, 3));
  root.register_module("dec", std::make_shared<Holder>(enc->weight()));
  CHECK(names_of(root.named_parameters()) == std::vector<std::string>{"enc.weight", "enc.bias"});
  CHECK(root.parameters().size() == 2);
  // state_dict keeps both names (as PyTorch's), both the same tensor.
  auto sd = root.state_dict();
  CHECK(names_of(sd) == std::vector<std::string>{"enc.weight", "enc.bias", "dec.weight"});
  CHECK(sd[0].second.is_same(sd[2].second));
  // A module registered twice is listed once by named_modules, under its first name.
  auto act = std::make_shared<nn::ReLU>();
  auto twice = std::make_shared<Bare>();
  twice->register_module("a", act);
  twice->register_module("b", act);
  std::vector<std::string> names;
  for (auto& [name, m] : twice->named_modules()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"", "a"});
}

TEST_CASE("zero_grad drops every parameter's gradient", "[module]") {
  auto model = std::make_shared<MLP>(4);
  sum(model->forward(Tensor::ones({2, 20}))).backward();
  for (auto& p : model->parameters()) CHECK(p.grad().defined());
  model->zero_grad();
  for (auto& p : model->parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("repr of the seed MLP equals PyTorch's print(model)", "[module][repr]") {
  auto model = std::make_shared<MLP>(2000);
  const std::string want =
      "MLP(\n"
      "  (seq): Sequential(\n"
      "    (0): Linear(in_features=20, out_features=2000, bias=True)\n"
      "    (1): ReLU()\n"
      "    (2): Linear(in_features=2000, out_features=2000, bias=True)\n"
      "    (3): ReLU()\n"
      "    (4): Linear(in_features=2000, out_features=2, bias=True)\n"
      "    (5): LogSoftmax(dim=-1)\n"
      "  )\n"
      ")";
  CHECK(model->repr() == want);
  std::ostringstream os;
  os << *model;
  CHECK(os.str() == want);
}

TEST_CASE("repr of single layers equals PyTorch's", "[module][repr]") {
  // Strings printed by torch 1.13 (print(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)), ...).
  nn::Conv2dConfig c;
  c.stride = {2, 2};
  c.padding = {1, 1};
  c.groups = 2;
  CHECK(nn::Conv2d(4, 8, 3, c).repr() == "Conv2d(4, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=2)");
  nn::Conv2dConfig c2;
  c2.stride = {1, 2};
  c2.padding = {0, 1};
  c2.dilation = {2, 2};
  c2.bias = false;
  CHECK(nn::Conv2d(3, 6, {3, 5}, c2).repr() ==
        "Conv2d(3, 6, kernel_size=(3, 5), stride=(1, 2), padding=(0, 1), dilation=(2, 2), bias=False)");
  CHECK(nn::Conv2d(3, 6, 1).repr() == "Conv2d(3, 6, kernel_size=(1, 1), stride=(1, 1))");
  CHECK(nn::LSTM(10, 20).repr() == "LSTM(10, 20)");
  CHECK(nn::LSTM(10, 20, 2, /*bias=*/false, /*batch_first=*/true).repr() ==
        "LSTM(10, 20, num_layers=2, bias=False, batch_first=True)");
  CHECK(nn::GroupNorm(2, 8).repr() == "GroupNorm(2, 8, eps=1e-05, affine=True)");
  CHECK(nn::GroupNorm(2, 8, 1e-6, false).repr() == "GroupNorm(2, 8, eps=1e-06, affine=False)");
  CHECK(nn::LayerNorm(16).repr() == "LayerNorm((16,), eps=1e-05, elementwise_affine=True)");
  CHECK(nn::LayerNorm(Shape{4, 5}, 1e-6, false).repr() == "LayerNorm((4, 5), eps=1e-06, elementwise_affine=False)");
  CHECK(nn::LayerNorm2d(64).repr() == "LayerNorm2d((64,), eps=1e-06, elementwise_affine=True)");  // timm's
  CHECK(nn::Dropout().repr() == "Dropout(p=0.5, inplace=False)");
  CHECK(nn::Dropout(0.1).repr() == "Dropout(p=0.1, inplace=False)");
  CHECK(nn::Dropout(0.0).repr() == "Dropout(p=0.0, inplace=False)");
  CHECK(nn::Dropout(1.0).repr() == "Dropout(p=1.0, inplace=False)");
  CHECK(nn::Dropout(1e-5).repr() == "Dropout(p=1e-05, inplace=False)");
  CHECK(nn::Embedding(10, 3, 0).repr() == "Embedding(10, 3, padding_idx=0)");
  CHECK(nn::Embedding(10, 3, -1).repr() == "Embedding(10, 3, padding_idx=9)");
  CHECK(nn::Embedding(10, 3).repr() == "Embedding(10, 3)");
  CHECK(nn::GELU().repr() == "GELU(approximate='none')");
  CHECK(nn::GELU("tanh").repr() == "GELU(approximate='tanh')");
  CHECK(nn::Identity().repr() == "Identity()");
  CHECK(nn::Flatten().repr() == "Flatten(start_dim=1, end_dim=-1)");
  CHECK(nn::AvgPool2d(3, 1, 1).repr() == "AvgPool2d(kernel_size=3, stride=1, padding=1)");
  AvgPool2dOptions pool;  // stride left at 0 = kernel, PyTorch's stride=None
  CHECK(nn::AvgPool2d(pool).repr() == "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  CHECK(nn::AdaptiveAvgPool2d(1).repr() == "AdaptiveAvgPool2d(output_size=1)");
  CHECK(nn::Softmax(1).repr() == "Softmax(dim=1)");
  CHECK(nn::Tanh().repr() == "Tanh()");
  CHECK(nn::Sigmoid().repr() == "Sigmoid()");
}

TEST_CASE("repr of containers equals PyTorch's, empty ones on one line", "[module][repr]") {
  nn::ModuleList list{std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(2, 3)};
  CHECK(list.repr() == "ModuleList(\n  (0): ReLU()\n  (1): Linear(in_features=2, out_features=3, bias=True)\n)");
  nn::ModuleDict dict;
  dict.insert("a", std::make_shared<nn::ReLU>());
  CHECK(dict.repr() == "ModuleDict(\n  (a): ReLU()\n)");
  CHECK(nn::Sequential().repr() == "Sequential()");
  CHECK(nn::ModuleList().repr() == "ModuleList()");
}

namespace {
class WithExtra : public nn::Module {
 public:
  explicit WithExtra(std::string extra, bool child) : extra_(std::move(extra)) {
    if (child) register_module("act", std::make_shared<nn::ReLU>());
  }
  std::string type_name() const override { return "WithExtra"; }
  std::string extra_repr() const override { return extra_; }

 private:
  std::string extra_;
};
}  // namespace

TEST_CASE("repr puts extra_repr lines before children and splits multi-line extra_repr as PyTorch", "[module][repr]") {
  CHECK(WithExtra("k=1", false).repr() == "WithExtra(k=1)");
  CHECK(WithExtra("k=1", true).repr() == "WithExtra(\n  k=1\n  (act): ReLU()\n)");
  CHECK(WithExtra("a=1\nb=2", false).repr() == "WithExtra(\n  a=1\n  b=2\n)");
  CHECK(WithExtra("a=1\nb=2", true).repr() == "WithExtra(\n  a=1\n  b=2\n  (act): ReLU()\n)");
  Bare outer;
  outer.register_module("inner", std::make_shared<WithExtra>("a=1\nb=2", true));
  CHECK(outer.repr() == "Bare(\n  (inner): WithExtra(\n    a=1\n    b=2\n    (act): ReLU()\n  )\n)");
}

TEST_CASE("float_repr prints floats as Python's repr()", "[module][repr]") {
  CHECK(nn::float_repr(0.0) == "0.0");
  CHECK(nn::float_repr(1.0) == "1.0");
  CHECK(nn::float_repr(0.5) == "0.5");
  CHECK(nn::float_repr(0.1) == "0.1");
  CHECK(nn::float_repr(1e-5) == "1e-05");
  CHECK(nn::float_repr(1e-6) == "1e-06");
  CHECK(nn::float_repr(1.5e-7) == "1.5e-07");
  CHECK(nn::float_repr(0.0001) == "0.0001");
  CHECK(nn::float_repr(0.001) == "0.001");
  CHECK(nn::float_repr(-2.5) == "-2.5");
  CHECK(nn::float_repr(123456.0) == "123456.0");
  CHECK(nn::float_repr(1e16) == "1e+16");
  CHECK(nn::float_repr(1e15) == "1000000000000000.0");
  CHECK(nn::float_repr(0.1 + 0.2) == "0.30000000000000004");
}
