// Mixed precision plumbing that needs no GPU: Module::to(DType), PEFT's autocast_adapter_dtype
// (adapters on a BF16 base become F32), lora_linear / lora.Linear with adapters in another dtype
// than the base (checked here with an F64 base and F32 adapters, the same code path as BF16 +
// F32, since the CPU computes only in F32 / F64), and optim::MasterWeights (F32 masters for BF16
// parameters, whose conversions run on the CPU). The BF16 math itself runs only on CUDA: see
// test_cuda_ops_bf16 and test_cuda_training.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>
#include <memory>
#include <vector>

#include "models/mlp.h"
#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;

namespace {

Tensor seq_tensor(const Shape& shape, double start, double step, DType dt = DType::F32) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + step * static_cast<double>(i);
  return Tensor::from_vector(v, shape).to(dt);
}

std::vector<float> bf16_rounded(const std::vector<float>& v) {
  std::vector<float> out;
  for (float f : v) out.push_back(bf16_to_float(float_to_bf16(f)));
  return out;
}

}  // namespace

TEST_CASE("Module::to(DType) converts parameters and their gradients in place, rounding to nearest even",
          "[mixed]") {
  manual_seed(1);
  nn::Linear lin(5, 3);
  Tensor w = lin.param("weight"), b = lin.param("bias");
  const std::vector<float> w0 = w.to_vector<float>();
  w.set_grad(Tensor::ones({3, 5}));
  lin.to(DType::BF16);
  CHECK(lin.param("weight").is_same(w));  // same handle, new storage
  CHECK(w.dtype() == DType::BF16);
  CHECK(b.dtype() == DType::BF16);
  CHECK(w.grad().dtype() == DType::BF16);
  CHECK(w.requires_grad());
  CHECK(w.to_vector<float>() == bf16_rounded(w0));
  lin.to(DType::F32);
  CHECK(w.dtype() == DType::F32);
  CHECK(w.to_vector<float>() == bf16_rounded(w0));  // the rounding stays
  CHECK_THROWS_WITH(lin.to(DType::I64), Contains("to: can only convert to a floating point dtype, got I64"));
  CHECK(w.dtype() == DType::F32);
}

TEST_CASE("convert_in_place is all-or-nothing and converts a tensor listed twice once", "[mixed]") {
  Tensor a = seq_tensor({4}, 0.1, 0.3), c = seq_tensor({2}, 1, 1);
  const Device missing = Device::cuda(64);
  CHECK_THROWS(nn::convert_in_place({a, c}, missing, DType::BF16));
  CHECK(a.dtype() == DType::F32);
  CHECK(a.device() == Device::cpu());
  nn::convert_in_place({a, a, c}, std::nullopt, DType::F64);
  CHECK(a.dtype() == DType::F64);
  CHECK(c.to_vector<double>() == std::vector<double>{1, 2});
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 2}, {2});
  nn::convert_in_place({ids}, std::nullopt, DType::BF16);  // integer tensors keep their dtype
  CHECK(ids.dtype() == DType::I64);
}

TEST_CASE("get_peft_model on a BF16 base casts the adapters to F32 unless autocast_adapter_dtype is off",
          "[mixed][lora]") {
  LoraConfig cfg;
  cfg.r = 4;
  cfg.target_modules = ModuleSelector{"seq.0", "seq.2"};
  cfg.modules_to_save = std::vector<std::string>{"seq.4"};
  for (bool autocast : {true, false}) {
    INFO("autocast_adapter_dtype " << autocast);
    manual_seed(3);
    auto mlp = std::make_shared<samples::MLP>(16);
    mlp->to(DType::BF16);
    auto model = get_peft_model(mlp, cfg, "default", autocast);
    const DType adapters = autocast ? DType::F32 : DType::BF16;
    int n_lora = 0;
    for (const auto& [name, t] : model->named_parameters()) {
      INFO(name);
      const bool is_lora = name.find(".lora_") != std::string::npos;
      n_lora += is_lora;
      CHECK(t.dtype() == (is_lora ? adapters : DType::BF16));  // base and modules_to_save stay BF16
    }
    CHECK(n_lora == 4);
    model->add_adapter("second", cfg, autocast);
    for (const auto& [name, t] : model->named_parameters())
      if (name.find(".second") != std::string::npos)  // modules_to_save copies keep the base dtype, as in PEFT
        CHECK(t.dtype() == (name.find(".lora_") != std::string::npos ? adapters : DType::BF16));
  }
}

TEST_CASE("lora_linear with adapters in another dtype follows PEFT: branch in the adapters' dtype, sum cast back",
          "[mixed][lora]") {
  // F64 base, F32 adapters: y = x·Wᵀ + b + s·(f32(x)·Aᵀ)·Bᵀ, added in F64 and returned in F64.
  const int64_t N = 3, in = 5, out = 4, r = 2;
  const double s = 1.5;
  Tensor x = seq_tensor({N, in}, -0.7, 0.11, DType::F64).requires_grad_();
  Tensor w = seq_tensor({out, in}, 0.3, -0.05, DType::F64).requires_grad_();
  Tensor b = seq_tensor({out}, 0.2, 0.1, DType::F64).requires_grad_();
  Tensor A = seq_tensor({r, in}, 0.1, 0.07).requires_grad_();
  Tensor B = seq_tensor({out, r}, -0.2, 0.09).requires_grad_();
  Tensor y = lora_linear(x, w, b, A, B, s);
  CHECK(y.dtype() == DType::F64);
  const std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  const std::vector<double> av = A.to_vector<double>(), bbv = B.to_vector<double>();
  const std::vector<double> yv = y.to_vector<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < out; ++o) {
      double base = bv[o], low = 0;
      for (int64_t k = 0; k < r; ++k) {
        double u = 0;
        for (int64_t i = 0; i < in; ++i) u += static_cast<float>(xv[n * in + i]) * av[k * in + i];
        low += u * bbv[o * r + k];
      }
      for (int64_t i = 0; i < in; ++i) base += xv[n * in + i] * wv[o * in + i];
      CHECK(yv[n * out + o] == Approx(base + s * low).epsilon(1e-6));
    }
  sum(y).backward();
  CHECK(x.grad().dtype() == DType::F64);
  CHECK(A.grad().dtype() == DType::F32);
  CHECK(B.grad().dtype() == DType::F32);
  CHECK(w.grad().dtype() == DType::F64);
  // dB[o, k] = s · Σ_n u[n, k] (the upstream gradient is all ones).
  const std::vector<float> dB = B.grad().to_vector<float>();
  for (int64_t k = 0; k < r; ++k) {
    double su = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < in; ++i) su += static_cast<float>(xv[n * in + i]) * av[k * in + i];
    for (int64_t o = 0; o < out; ++o) CHECK(dB[o * r + k] == Approx(s * su).epsilon(1e-5));
  }
  // A BF16 base on the CPU is refused clearly (BF16 math runs on CUDA only).
  CHECK_THROWS_WITH(lora_linear(x.detach().to(DType::BF16), w.detach().to(DType::BF16), Tensor(), A, B, s),
                    Contains("BF16"));
}

TEST_CASE("lora.Linear with two F32 adapters on an F64 base keeps the sum in the promoted dtype", "[mixed][lora]") {
  manual_seed(5);
  auto base = std::make_shared<nn::Linear>(6, 3, true, DType::F64);
  LoraLayerSettings s1;
  s1.r = 2;
  s1.lora_alpha = 4;
  s1.init = LoraInit::Random;  // B non-zero, so both adapters contribute
  LoraLinear layer(base, "a", s1);
  layer.update_layer("b", s1);
  layer.set_adapter({"a", "b"});
  std::map<std::string, Tensor> ps;
  std::vector<Tensor> adapter_tensors;
  for (const auto& [name, t] : layer.named_parameters()) {
    ps[name] = t;
    if (name.rfind("lora_", 0) == 0) adapter_tensors.push_back(t);
  }
  nn::convert_in_place(adapter_tensors, std::nullopt, DType::F32);
  Tensor A[2], B[2];
  const char* names[2] = {"a", "b"};
  for (int k = 0; k < 2; ++k) {
    A[k] = ps.at(std::string("lora_A.") + names[k] + ".weight");
    B[k] = ps.at(std::string("lora_B.") + names[k] + ".weight");
    REQUIRE(A[k].dtype() == DType::F32);
  }
  Tensor x = seq_tensor({2, 6}, -0.5, 0.09, DType::F64);
  Tensor y = layer.forward(x);
  CHECK(y.dtype() == DType::F64);
  Tensor xf = x.to(DType::F32);
  Tensor want = linear(x, base->weight(), base->bias());
  for (int k = 0; k < 2; ++k) want = add(want, mul(linear(linear(xf, A[k]), B[k]), s1.scaling()).to(DType::F64));
  const std::vector<double> yv = y.to_vector<double>(), wv = want.to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) CHECK(yv[i] == Approx(wv[i]).epsilon(1e-12));
}

TEST_CASE("MasterWeights keeps F32 masters: updates below BF16's resolution accumulate", "[mixed][optim]") {
  Tensor p = Tensor::full({3}, 1.0, DType::BF16).requires_grad_();
  Tensor q = Tensor::full({2}, 2.0).requires_grad_();  // F32: its own master
  optim::SGDOptions o;
  o.lr = 1.0;
  optim::MasterWeights opt({p, q}, [o](std::vector<Tensor> m) { return std::make_unique<optim::SGD>(std::move(m), o); });
  CHECK(opt.masters()[1].is_same(q));
  CHECK(opt.masters()[0].dtype() == DType::F32);
  for (int step = 0; step < 10; ++step) {
    p.set_grad(Tensor::full({3}, 1e-3, DType::BF16));  // BF16(1e-3) = 0.00099945068359375
    q.set_grad(Tensor::full({2}, 0.5));
    opt.step();
    opt.zero_grad();
  }
  const double g = bf16_to_float(float_to_bf16(1e-3f));
  const float master = static_cast<float>(1.0 - 10 * g);  // F32 SGD, up to F32 rounding per step
  CHECK(opt.masters()[0].to_vector<float>()[0] == Approx(master).epsilon(1e-6));
  // A plain BF16 update would be stuck at 1.0 (1 - 1e-3 rounds back to 1); the rounded master moved.
  CHECK(p.dtype() == DType::BF16);
  CHECK(p.to_vector<float>()[0] == bf16_to_float(float_to_bf16(opt.masters()[0].to_vector<float>()[0])));
  CHECK(p.to_vector<float>()[0] < 1.0f);
  CHECK(q.to_vector<float>() == std::vector<float>{-3.f, -3.f});
  CHECK_FALSE(opt.masters()[0].grad().defined());  // dropped after the step
}

TEST_CASE("MasterWeights state round-trips its masters and refuses bad state without changing anything",
          "[mixed][optim]") {
  auto make_adamw = [](std::vector<Tensor> m) {
    optim::AdamWOptions o;
    o.lr = 0.01;
    return std::make_unique<optim::AdamW>(std::move(m), o);
  };
  Tensor p = seq_tensor({2, 2}, 0.5, 0.25, DType::BF16).requires_grad_();
  optim::MasterWeights opt({p}, make_adamw);
  p.set_grad(seq_tensor({2, 2}, 0.1, 0.1, DType::BF16));
  opt.step();
  optim::OptimizerState st = opt.state_dict();
  REQUIRE(st.count("0.master"));
  REQUIRE(st.count("0.exp_avg"));
  CHECK(st.at("0.master").dtype() == DType::F32);

  Tensor p2 = Tensor::zeros({2, 2}, DType::BF16).requires_grad_();
  optim::MasterWeights opt2({p2}, make_adamw);
  optim::OptimizerState bad = st;
  bad["0.master"] = Tensor::zeros({3});
  CHECK_THROWS_WITH(opt2.load_state_dict(bad), Contains("'0.master' has shape [3], expected [2, 2]"));
  bad = st;
  bad.erase("0.master");
  CHECK_THROWS_WITH(opt2.load_state_dict(bad), Contains("missing key '0.master'"));
  bad = st;
  bad["0.exp_avg"] = Tensor::zeros({5});
  CHECK_THROWS(opt2.load_state_dict(bad));
  CHECK(p2.to_vector<float>() == std::vector<float>{0, 0, 0, 0});
  CHECK(opt2.masters()[0].to_vector<float>() == std::vector<float>{0, 0, 0, 0});

  opt2.load_state_dict(st);
  CHECK(opt2.masters()[0].to_vector<float>() == opt.masters()[0].to_vector<float>());
  CHECK(p2.to_vector<float>() == p.to_vector<float>());
  // Both continue identically.
  p.set_grad(seq_tensor({2, 2}, -0.2, 0.05, DType::BF16));
  p2.set_grad(seq_tensor({2, 2}, -0.2, 0.05, DType::BF16));
  opt.step();
  opt2.step();
  CHECK(opt2.masters()[0].to_vector<float>() == opt.masters()[0].to_vector<float>());
  CHECK_THROWS_WITH(optim::MasterWeights({p}, nullptr), Contains("no factory"));
  // A parameter converted after construction would silently lose (or break) its master.
  nn::convert_in_place({p}, std::nullopt, DType::F32);
  p.set_grad(Tensor::ones({2, 2}));
  const std::vector<float> master_before = opt.masters()[0].to_vector<float>();
  CHECK_THROWS_WITH(opt.step(), Contains("MasterWeights: parameter 0 was BF16 when the optimizer was built and is F32 "
                                         "now; build the optimizer after Module::to"));
  CHECK(opt.masters()[0].to_vector<float>() == master_before);
}
