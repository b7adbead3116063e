// PEFT's mixed-batch inference (PeftModel::forward(x, adapter_names)): each row runs its own
// adapter. PEFT's numbers are pinned by the golden cases in test_peft_interop ("out_mixed"); here:
// agreement with running each adapter alone, and every refusal PEFT makes, with the model left
// usable afterwards.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "cuda_kernel_util.h"
#include "models/mlp.h"
#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

LoraConfig config(std::vector<std::string> targets, int64_t r, bool to_save = true) {
  LoraConfig c;
  c.r = r;
  c.lora_alpha = 2.0 * static_cast<double>(r);
  c.init_lora_weights = LoraInit::Random;  // B non-zero: every adapter changes the output
  c.target_modules = ModuleSelector(targets);
  if (to_save) c.modules_to_save = std::vector<std::string>{"seq.4"};
  return c;
}

// The seed MLP (hidden 12) with adapters "a" (seq.0, seq.2) and "b" (seq.2 only), both with a
// seq.4 copy, the copies moved away from the original so that every path shows in the output.
std::shared_ptr<PeftModel> two_adapter_model() {
  manual_seed(11);
  auto pm = get_peft_model(std::make_shared<samples::MLP>(12), config({"seq.0", "seq.2"}, 4), "a");
  pm->add_adapter("b", config({"seq.2"}, 2));
  {
    NoGradGuard g;
    Generator gen(5);
    for (auto& [n, p] : pm->named_parameters())
      if (n.find("modules_to_save") != std::string::npos) p.add_(mul(Tensor::randn(p.shape(), p.dtype(), &gen), 0.2));
  }
  pm->eval();
  return pm;
}

Tensor rows_of(const Tensor& t, const std::vector<int64_t>& rows) { return select_rows(t, rows); }

void check_equal(const Tensor& a, const Tensor& b, double margin = 1e-6) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (size_t i = 0; i < av.size(); ++i) CHECK(av[i] == Approx(bv[i]).margin(margin).epsilon(1e-5));
}

// lora_multi_reference's products have terms up to ~100 (randn weights, in = 37, r = 16) summed
// in F32 by the op: ~1e-5 absolute rounding, far more than 1e-6 near zero.
constexpr double kMultiMargin = 1e-4;

}  // namespace

TEST_CASE("a mixed batch gives each row the output of its adapter alone; __base__ rows the base model's",
          "[mixed_batch][lora]") {
  auto pm = two_adapter_model();
  Generator gen(2);
  Tensor x = Tensor::rand({7, 20}, DType::F32, &gen);
  const std::vector<std::string> names = {"b", "a", kBaseAdapterName, "a", "b", "b", kBaseAdapterName};
  NoGradGuard g;
  Tensor mixed = pm->forward(x, names);
  pm->set_adapter("a");
  Tensor out_a = pm->forward(x);
  pm->set_adapter("b");
  Tensor out_b = pm->forward(x);
  Tensor out_base;
  {
    auto off = pm->disable_adapter();
    out_base = pm->forward(x);
  }
  check_equal(rows_of(mixed, {1, 3}), rows_of(out_a, {1, 3}));
  check_equal(rows_of(mixed, {0, 4, 5}), rows_of(out_b, {0, 4, 5}));
  check_equal(rows_of(mixed, {2, 6}), rows_of(out_base, {2, 6}));
  CHECK(pm->active_adapters() == std::vector<std::string>{"b"});  // a mixed batch changes no state
  // One adapter for every row is the plain forward with that adapter.
  check_equal(pm->forward(x, std::vector<std::string>(7, "b")), out_b);
  // Disabled adapters: the base model for every row, whatever the names.
  auto off = pm->disable_adapter();
  check_equal(pm->forward(x, names), out_base);
}

TEST_CASE("mixed batches are refused as PEFT refuses them, and leave the model usable", "[mixed_batch][lora]") {
  auto pm = two_adapter_model();
  Tensor x = Tensor::ones({3, 20});
  NoGradGuard g;
  const Tensor before = pm->forward(x);
  CHECK_THROWS_WITH(pm->forward(x, {"a", "c", "zz"}), Contains("Trying to infer with non-existing adapter(s): c, zz"));
  CHECK_THROWS_WITH(pm->forward(x, {"a", "b"}),
                    Contains("Length of `adapter_names` should be the same as the number of inputs, but got 2 and 3 "
                             "respectively."));
  pm->train();
  CHECK_THROWS_WITH(pm->forward(x, {"a", "a", "a"}), Contains("Cannot pass `adapter_names` when the model is in "
                                                                "training mode."));
  pm->eval();
  pm->set_adapter("a");
  pm->merge_adapter();
  CHECK_THROWS_WITH(pm->forward(x, {"a", "b", "a"}), Contains("Cannot pass `adapter_names` when there are merged "
                                                                "adapters, please call `unmerge_adapter` first."));
  pm->unmerge_adapter();
  check_equal(pm->forward(x), before);  // the scope closed on every error: a plain forward again
  CHECK(MixedBatchScope::current() == nullptr);
}

TEST_CASE("a mixed batch whose adapters' dtype lora_multi does not take falls back to the row groups",
          "[mixed_batch][lora]") {
  auto pm = two_adapter_model();
  std::vector<Tensor> adapters;  // F64 adapters on an F32 base: PEFT keeps them F64 (autocast only widens 16-bit)
  for (const auto& [n, p] : pm->named_parameters())
    if (n.find(".lora_") != std::string::npos) adapters.push_back(p);
  nn::convert_in_place(adapters, std::nullopt, DType::F64);
  CHECK_FALSE(lora_multi_supported(DType::F64, DType::F32, Device::cpu()));
  Generator gen(4);
  Tensor x = Tensor::rand({4, 20}, DType::F32, &gen);
  NoGradGuard g;
  Tensor mixed = pm->forward(x, {"a", "b", kBaseAdapterName, "a"});
  pm->set_adapter("a");
  Tensor out_a = pm->forward(x);
  check_equal(rows_of(mixed, {0, 3}), rows_of(out_a, {0, 3}));
  CHECK(mixed.dtype() == DType::F32);
}

TEST_CASE("mixed batches refuse DoRA adapters and modules_to_save of unsupported types", "[mixed_batch][lora]") {
  manual_seed(3);
  LoraConfig dora = config({"seq.0"}, 2, false);
  dora.use_dora = true;
  auto pm = get_peft_model(std::make_shared<samples::MLP>(8), dora, "d");
  pm->eval();
  Tensor x = Tensor::ones({2, 20});
  CHECK_THROWS_WITH(pm->forward(x, {"d", kBaseAdapterName}), Contains("Cannot pass `adapter_names` when DoRA is "
                                                                      "enabled."));
  CHECK_NOTHROW(pm->forward(x, {kBaseAdapterName, kBaseAdapterName}));  // DoRA adapters not named: fine

  // A ReLU trained in full through modules_to_save cannot be split by rows (PEFT: Linear, Embedding, Conv).
  LoraConfig relu_save = config({"seq.0"}, 2, false);
  relu_save.modules_to_save = std::vector<std::string>{"seq.1"};
  auto pm2 = get_peft_model(std::make_shared<samples::MLP>(8), relu_save, "r");
  pm2->eval();
  CHECK_THROWS_WITH(pm2->forward(x, {"r", kBaseAdapterName}),
                    Contains("Mixed batching is only supported for the following modules: Linear, Embedding, Conv2d"));
}

TEST_CASE("row grouping and reassembly helpers", "[mixed_batch]") {
  const std::vector<RowGroup> g = group_rows({"x", "y", "x", "z", "y"});
  REQUIRE(g.size() == 3);
  CHECK(g[0].adapter == "x");
  CHECK(g[0].rows == std::vector<int64_t>{0, 2});
  CHECK(g[1].rows == std::vector<int64_t>{1, 4});
  CHECK(g[2].rows == std::vector<int64_t>{3});
  Tensor px = Tensor::from_vector(std::vector<float>{0, 20}, {2, 1});
  Tensor py = Tensor::from_vector(std::vector<float>{10, 40}, {2, 1});
  Tensor pz = Tensor::from_vector(std::vector<float>{30}, {1, 1});
  CHECK(assemble_rows({px, py, pz}, g).to_vector<float>() == std::vector<float>{0, 10, 20, 30, 40});
  CHECK_THROWS_WITH(assemble_rows({px, py}, g), Contains("2 parts for 3 row groups"));
}

namespace {
// The reference: each row through its own adapter with plain ops, in double.
Tensor lora_multi_reference(const Tensor& y, const Tensor& x, const std::vector<Tensor>& A, const std::vector<Tensor>& B,
                            const std::vector<double>& s, const std::vector<int64_t>& ids) {
  std::vector<Tensor> rows;
  for (size_t n = 0; n < ids.size(); ++n) {
    Tensor yr = y.select(0, static_cast<int64_t>(n)).to(DType::F64);
    if (ids[n] >= 0) {
      const size_t a = static_cast<size_t>(ids[n]);
      Tensor xr = x.select(0, static_cast<int64_t>(n)).to(DType::F64);
      Tensor u = matmul(A[a].to(DType::F64), xr);
      yr = add(yr, mul(matmul(B[a].to(DType::F64), u), s[a]));
    }
    rows.push_back(yr);
  }
  return stack(rows, 0);
}

struct MultiCase {
  Tensor y, x;
  std::vector<Tensor> A, B;
  std::vector<double> s = {0.5, 2.0, -1.25};
  std::vector<int64_t> ids = {2, -1, 0, 0, 1, -1, 2};
};

MultiCase multi_case(DType y_dtype = DType::F32) {
  Generator gen(9);
  MultiCase c;
  const int64_t N = 7, in = 37, out = 29;
  const int64_t ranks[3] = {4, 1, 16};  // ranks differ per adapter
  c.x = Tensor::randn({N, in}, DType::F32, &gen);
  c.y = Tensor::randn({N, out}, DType::F32, &gen).to(y_dtype);
  for (int64_t r : ranks) {
    c.A.push_back(Tensor::randn({r, in}, DType::F32, &gen));
    c.B.push_back(Tensor::randn({out, r}, DType::F32, &gen));
  }
  return c;
}
}  // namespace

TEST_CASE("lora_multi adds each row's own adapter branch (ranks differ, -1 rows untouched)", "[mixed_batch][ops]") {
  for (DType yt : {DType::F32, DType::F64}) {
    INFO("y dtype " << dtype_name(yt));
    MultiCase c = multi_case(yt);
    Tensor got = lora_multi(c.y, c.x, c.A, c.B, c.s, c.ids);
    CHECK(got.dtype() == yt);
    Tensor want = lora_multi_reference(c.y, c.x, c.A, c.B, c.s, c.ids);
    check_equal(got, want, kMultiMargin);
    // Rows without an adapter are copied bit for bit.
    CHECK(got.select(0, 1).to_vector<double>() == c.y.select(0, 1).to_vector<double>());
  }
  // A transposed (non-contiguous) x gives the same answer.
  MultiCase c = multi_case();
  Tensor xt = c.x.t().contiguous().t();
  check_equal(lora_multi(c.y, xt, c.A, c.B, c.s, c.ids), lora_multi(c.y, c.x, c.A, c.B, c.s, c.ids), 0);
}

TEST_CASE("lora_multi refuses bad input clearly and changes nothing", "[mixed_batch][ops]") {
  MultiCase c = multi_case();
  const std::vector<float> y0 = c.y.to_vector<float>();
  std::vector<int64_t> bad_ids = c.ids;
  bad_ids[3] = 3;
  CHECK_THROWS_WITH(lora_multi(c.y, c.x, c.A, c.B, c.s, bad_ids), Contains("row 3 has adapter id 3, expected -1 (none) "
                                                                           "or an index below 3"));
  CHECK_THROWS_WITH(lora_multi(c.y, c.x, c.A, c.B, c.s, {0, 1}), Contains("2 row adapter ids for 7 rows"));
  std::vector<Tensor> B2 = c.B;
  B2[1] = Tensor::zeros({29, 2});
  CHECK_THROWS_WITH(lora_multi(c.y, c.x, c.A, B2, c.s, c.ids), Contains("adapter 1 has lora_A [1, 37] and lora_B [29, "
                                                                        "2]; expected (r, 37) and (29, r)"));
  std::vector<Tensor> A64 = c.A;
  A64[0] = A64[0].to(DType::F64);
  CHECK_THROWS_WITH(lora_multi(c.y, c.x, A64, c.B, c.s, c.ids), Contains("adapter 0 is F64 / F32 but x is F32"));
  CHECK_THROWS_WITH(lora_multi(c.y, c.x, c.A, c.B, {1.0}, c.ids), Contains("3 lora_A, 3 lora_B and 1 scales"));
  CHECK_THROWS_WITH(lora_multi(c.y.to(DType::BF16), c.x, c.A, c.B, c.s, c.ids),
                    Contains("lora_multi: unsupported dtypes on cpu: adapters F32, output BF16"));
  Tensor Ag = c.A[0].detach().requires_grad_();
  CHECK_THROWS_WITH(lora_multi(c.y, c.x, {Ag, c.A[1], c.A[2]}, c.B, c.s, c.ids), Contains("inference only"));
  {
    NoGradGuard g;  // under no_grad a trainable weight is fine
    CHECK_NOTHROW(lora_multi(c.y, c.x, {Ag, c.A[1], c.A[2]}, c.B, c.s, c.ids));
  }
  CHECK(c.y.to_vector<float>() == y0);
}

TEST_CASE("lora_multi on CUDA matches the CPU, with F32 / BF16 outputs", "[mixed_batch][ops][cuda][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const Device d = Device::cuda(0);
  MultiCase c = multi_case();
  auto to_dev = [&](const std::vector<Tensor>& v) {
    std::vector<Tensor> r;
    for (const Tensor& t : v) r.push_back(t.to(d));
    return r;
  };
  Tensor cpu = lora_multi(c.y, c.x, c.A, c.B, c.s, c.ids);
  check_equal(lora_multi(c.y.to(d), c.x.to(d), to_dev(c.A), to_dev(c.B), c.s, c.ids), cpu, kMultiMargin);
  // BF16 base output, F32 adapters (autocast_adapter_dtype): the branch is rounded to BF16 and
  // added in BF16, so compare with BF16's resolution (2^-8 relative).
  Tensor yb = c.y.to(DType::BF16);
  Tensor got = lora_multi(yb.to(d), c.x.to(d), to_dev(c.A), to_dev(c.B), c.s, c.ids);
  CHECK(got.dtype() == DType::BF16);
  const std::vector<double> gv = got.to_vector<double>(), wv = lora_multi_reference(yb, c.x, c.A, c.B, c.s, c.ids)
                                                                  .to_vector<double>();
  for (size_t i = 0; i < gv.size(); ++i) CHECK(gv[i] == Approx(wv[i]).margin(2e-2).epsilon(1.6e-2));
  // A whole seed-MLP mixed batch on the GPU equals the CPU's.
  auto pm = two_adapter_model();
  Tensor x = Tensor::rand({6, 20});
  const std::vector<std::string> names = {"a", "b", kBaseAdapterName, "b", "a", "a"};
  NoGradGuard g;
  Tensor want = pm->forward(x, names);
  pm->to(d);
  check_equal(pm->forward(x.to(d), names), want);
}
