// CUDA availability as the rest of the engine sees it. On a machine without a GPU the CUDA
// checks are reported as skipped (and pass); the CUDA sources still compiled and linked.
#include <catch2/catch.hpp>

#include <peft/peft.h>

#ifdef PEFT_WITH_CUDA
#include "kernels/cuda/runtime.cuh"
#endif

TEST_CASE("CUDA device discovery never throws and agrees with the build", "[cuda]") {
  const int n = peft::cuda_device_count();
  CHECK(n >= 0);
  if (!peft::built_with_cuda()) {
    CHECK(n == 0);
    WARN("skipped: built without CUDA (PEFT_CUDA=OFF or no nvcc)");
    return;
  }
  if (n == 0) {
    WARN("skipped: no CUDA device");
    return;
  }
#ifdef PEFT_WITH_CUDA
  for (int i = 0; i < n; ++i) CHECK(std::string(peft::cuda::device_name(i)).size() > 0);
  CHECK(std::string(peft::cuda::device_name(n)).empty());
#endif
}

TEST_CASE("Device parses cpu, cuda and cuda:N and refuses anything else", "[cuda][device]") {
  CHECK(peft::Device::parse("cpu").is_cpu());
  CHECK(peft::Device::parse("cuda") == peft::Device::cuda(0));
  CHECK(peft::Device::parse("cuda:3") == peft::Device::cuda(3));
  CHECK(peft::Device::parse("cuda:3").str() == "cuda:3");
  CHECK_THROWS_WITH(peft::Device::parse("gpu"), Catch::Contains("cannot parse 'gpu'"));
  CHECK_THROWS_WITH(peft::Device::parse("cuda:x"), Catch::Contains("cannot parse"));
  CHECK_THROWS_AS(peft::Device::parse("cuda:"), peft::Error);
}
