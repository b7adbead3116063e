// The meta device: tensors with shapes and no memory (MetaDeviceGuard), as PyTorch's
// torch.device("meta") — models built on it count their parameters without allocating them, and
// nothing can read or write their (absent) data.
#include <catch2/catch.hpp>

#include "adapters/lora_config.h"
#include "adapters/peft_model.h"
#include "core/ops.h"
#include "layers/container.h"
#include "layers/linear.h"

using namespace peft;

TEST_CASE("meta device: parse, print, default device and guards", "[meta]") {
  CHECK(Device::parse("meta").is_meta());
  CHECK(Device::meta().str() == "meta");
  CHECK_FALSE(Device::meta().is_cpu());
  CHECK(default_device().is_cpu());
  {
    MetaDeviceGuard outer;
    CHECK(default_device().is_meta());
    {
      MetaDeviceGuard inner;
      CHECK(default_device().is_meta());
    }
    CHECK(default_device().is_meta());  // the inner guard restores the outer's state
    // An explicit device wins; host values (from_vector) stay on the CPU.
    CHECK(Tensor::zeros({2}, DType::F32, Device::cpu()).device().is_cpu());
    CHECK(Tensor::from_vector(std::vector<float>{1, 2}, {2}).device().is_cpu());
  }
  CHECK(default_device().is_cpu());
}

TEST_CASE("meta device: tensors have shapes, no data; reading them throws", "[meta]") {
  // 2^40 bytes: only a tensor without memory can be made this large.
  Tensor t = Tensor::empty({1 << 20, 1 << 18}, DType::F32, Device::meta());
  CHECK(t.device().is_meta());
  CHECK(t.numel() == (int64_t{1} << 38));
  CHECK(t.storage()->data() == nullptr);
  CHECK(t.transpose(0, 1).shape() == Shape{1 << 18, 1 << 20});  // views are metadata only
  REQUIRE_THROWS_WITH(t.raw_data(), Catch::Contains("meta tensor") && Catch::Contains("has no data"));
  Tensor small = Tensor::ones({2, 3}, DType::F32, Device::meta());  // fill_ has nothing to write
  small.fill_(3);
  small.copy_(Tensor::ones({2, 3}));  // copy_ into meta: nothing written, shapes still checked
  REQUIRE_THROWS(small.copy_(Tensor::ones({4})));
  REQUIRE_THROWS_WITH(small.to(Device::cpu()), Catch::Contains("has no data"));
  REQUIRE_THROWS_WITH(Tensor::ones({3}).copy_(Tensor::ones({3}, DType::F32, Device::meta())),
                      Catch::Contains("has no data"));
  REQUIRE_THROWS_WITH(relu(small), Catch::Contains("meta"));
  REQUIRE_THROWS_WITH(Tensor::ones({1}, DType::F32, Device::meta()).item(), Catch::Contains("has no data"));
  CHECK(Tensor::ones({2, 3}).to(Device::meta()).device().is_meta());
}

TEST_CASE("meta device: a model built under the guard counts as on the CPU, LoRA included", "[meta]") {
  auto build = [] {
    auto seq = std::make_shared<nn::Sequential>();
    seq->push_back(std::make_shared<nn::Linear>(1000, 2000));
    seq->push_back(std::make_shared<nn::Linear>(2000, 10));
    return seq;
  };
  std::shared_ptr<nn::Sequential> cpu_model = build(), meta_model;
  {
    MetaDeviceGuard meta;
    meta_model = build();
  }
  for (const auto& [name, p] : meta_model->named_parameters()) {
    INFO(name);
    CHECK(p.device().is_meta());
  }
  LoraConfig cfg;
  cfg.target_modules = {"0", "1"};
  cfg.r = 4;
  auto pm_cpu = get_peft_model(cpu_model, cfg);
  auto pm_meta = get_peft_model(meta_model, cfg);
  CHECK(pm_meta->get_nb_trainable_parameters() == pm_cpu->get_nb_trainable_parameters());
  const auto named = pm_meta->named_parameters();
  REQUIRE(named.size() == pm_cpu->named_parameters().size());
  for (const auto& [name, p] : named) {
    INFO(name);
    CHECK(p.device().is_meta());  // LoRA weights follow the base weight's device
  }
  // Running it is refused with the reason, not a crash on a null pointer.
  REQUIRE_THROWS_WITH(pm_meta->forward(Tensor::ones({1, 1000})), Catch::Contains("meta"));
}
