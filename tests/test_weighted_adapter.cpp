// add_weighted_adapter: "cat" and full-rank "svd" reproduce the weighted sum of the
// adapters' deltas exactly; "linear" is PEFT's approximation (exact for one adapter);
// PEFT's refusals.
#include <catch2/catch.hpp>

#include <peft/peft.h>

using namespace peft;

namespace {

class TwoLinear : public nn::Module {
 public:
  TwoLinear() {
    register_module("lin0", std::make_shared<nn::Linear>(10, 12));
    register_module("lin1", std::make_shared<nn::Linear>(12, 4));
  }
  std::string type_name() const override { return "TwoLinear"; }
  Tensor forward(const Tensor& x) override { return child("lin1")->forward(relu(child("lin0")->forward(x))); }
};

LoraConfig random_config(int64_t r, double alpha) {
  LoraConfig c;
  c.target_modules = {"lin0", "lin1"};
  c.r = r;
  c.lora_alpha = alpha;
  c.init_lora_weights = LoraInit::Random;
  return c;
}

double max_abs_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }

std::shared_ptr<PeftModel> two_adapters(int64_t r1, int64_t r2) {
  manual_seed(3);
  auto pm = get_peft_model(std::make_shared<TwoLinear>(), random_config(r1, 8));
  pm->add_adapter("other", random_config(r2, 4));
  return pm;
}

}  // namespace

TEST_CASE("cat and full-rank svd combinations reproduce the weighted sum of deltas", "[lora][weighted]") {
  auto pm = two_adapters(4, 2);
  auto lin0 = std::dynamic_pointer_cast<LoraLayer>(pm->model()->get_submodule("lin0"));
  REQUIRE(lin0 != nullptr);
  Tensor expected = add(mul(lin0->get_delta_weight("default"), 0.7), mul(lin0->get_delta_weight("other"), -1.3));

  pm->add_weighted_adapter({"default", "other"}, {0.7, -1.3}, "cat", "cat");
  CHECK(pm->peft_config().at("cat").r == 6);
  CHECK(max_abs_diff(lin0->get_delta_weight("cat"), expected) < 1e-5);

  pm->add_weighted_adapter({"default", "other"}, {0.7, -1.3}, "svd", "svd", 6);
  CHECK(max_abs_diff(lin0->get_delta_weight("svd"), expected) < 1e-4);

  // New adapters are frozen and not active.
  for (const auto& kv : lin0->adapter_parameters("svd")) CHECK_FALSE(kv.second.requires_grad());
  CHECK(pm->active_adapters() == std::vector<std::string>{"default"});
}

TEST_CASE("linear combination of a single adapter equals its weighted delta", "[lora][weighted]") {
  auto pm = two_adapters(4, 4);
  auto lin1 = std::dynamic_pointer_cast<LoraLayer>(pm->model()->get_submodule("lin1"));
  pm->add_weighted_adapter({"other"}, {2.0}, "twice", "linear");
  CHECK(max_abs_diff(lin1->get_delta_weight("twice"), mul(lin1->get_delta_weight("other"), 2.0)) < 1e-5);
  // Two adapters of equal rank: PEFT's formula A = Σ sign·√|ws|·A_i, B = Σ √|ws|·B_i.
  pm->add_weighted_adapter({"default", "other"}, {1.0, 1.0}, "lin", "linear");
  auto A0 = lin1->child("lora_A")->child("default")->param("weight");
  auto A1 = lin1->child("lora_A")->child("other")->param("weight");
  const double s0 = lin1->scaling("default"), s1 = lin1->scaling("other");
  Tensor expected_A = add(mul(A0, std::sqrt(s0)), mul(A1, std::sqrt(s1)));
  CHECK(max_abs_diff(lin1->child("lora_A")->child("lin")->param("weight"), expected_A) < 1e-6);
}

TEST_CASE("add_weighted_adapter refuses unknown adapters, mixed ranks for linear and bad types", "[lora][weighted][errors]") {
  auto pm = two_adapters(4, 2);
  CHECK_THROWS_WITH(pm->add_weighted_adapter({"default", "nope"}, {1, 1}, "x", "cat"),
                    Catch::Contains("Adapter nope does not exist"));
  CHECK_THROWS_WITH(pm->add_weighted_adapter({"default", "other"}, {1, 1}, "x", "linear"),
                    Catch::Contains("All adapters must have the same r value"));
  CHECK_THROWS_WITH(pm->add_weighted_adapter({"default", "other"}, {1, 1}, "x", "ties_magic"),
                    Catch::Contains("Invalid combination_type: ties_magic"));
  CHECK(pm->peft_config().count("x") == 0);
}

TEST_CASE("add_weighted_adapter refuses options that do not apply and leaves the model as it was",
          "[lora][weighted][errors]") {
  auto pm = two_adapters(4, 4);
  auto refused = [&](WeightedAdapterOptions o, const std::string& message) {
    INFO(o.combination_type << ": " << message);
    CHECK_THROWS_WITH(pm->add_weighted_adapter({"default", "other"}, {1, 1}, "x", o), Catch::Contains(message));
    CHECK(pm->peft_config().count("x") == 0);
    CHECK_FALSE(pm->model()->get_submodule("lin0")->child("lora_A")->has_child("x"));
  };
  WeightedAdapterOptions o;
  o.combination_type = "linear";
  o.density = 0.5;
  refused(o, "density applies to ties");
  o.combination_type = "ties";
  o.density.reset();
  refused(o, "needs a density");
  o.density = -0.1;
  refused(o, "Density should be >= 0, got -0.1");
  o.combination_type = "dare_linear";
  o.density = 0.0;
  refused(o, "would divide by zero");
  o.combination_type = "ties";
  o.density = 0.5;
  o.majority_sign_method = "median";
  refused(o, "Unimplemented mask method \"median\"");
  o.combination_type = "magnitude_prune";
  o.majority_sign_method = "frequency";
  refused(o, "majority_sign_method applies to ties, dare_ties");
  o.majority_sign_method = "total";
  o.svd_rank = 2;
  refused(o, "apply to the *svd combination types");
  o.combination_type = "svd";
  o.density.reset();
  o.svd_clamp = 1.5;
  refused(o, "svd_clamp is a quantile in [0, 1]");
}

TEST_CASE("a layer that cannot be combined takes the new adapter away again", "[lora][weighted][errors]") {
  // Both adapters have r = 4, so PEFT's rank check passes, but rank_pattern gives lin1 rank 2 in
  // one of them: ties merges A's of one shape only.
  manual_seed(3);
  LoraConfig a = random_config(4, 8);
  a.rank_pattern = {{"lin1", 2}};
  auto pm = get_peft_model(std::make_shared<TwoLinear>(), a);
  pm->add_adapter("other", random_config(4, 4));
  WeightedAdapterOptions o;
  o.combination_type = "ties";
  o.density = 0.5;
  CHECK_THROWS_WITH(pm->add_weighted_adapter({"default", "other"}, {1, 1}, "x", o),
                    Catch::Contains("layer 'lin1' has ranks 2 and 4"));
  CHECK(pm->peft_config().count("x") == 0);
  CHECK_FALSE(pm->model()->get_submodule("lin0")->child("lora_A")->has_child("x"));
  // cat and svd combine those layers.
  o.combination_type = "ties_svd";
  pm->add_weighted_adapter({"default", "other"}, {1, 1}, "y", o);
  CHECK(pm->peft_config().at("y").r == 4);
}
