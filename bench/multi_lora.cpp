// Multi-adapter LoRA serving benchmark (issue "fused LoRA kernels", multi-adapter part): a batch
// of `batch` decode rows (one token each) spread round-robin over `adapters` LoRA adapters of one
// Linear (in → out, rank r). Two ways to add every row's adapter branch to the base output y:
//   loop: PEFT's _mixed_batch_forward — per adapter, gather its rows, two GEMMs, scatter back;
//   bgmv: lora_multi — one shrink + one expand pass over the batch from a table of weight pointers.
// Prints one JSON line per case: median / min ms of the LoRA part (y given), the base GEMM alone,
// and the ratio loop / bgmv. On CUDA every timed step ends with a device synchronise.
//   usage: bench_multi_lora [--device cpu|cuda] [--in N] [--out N] [--r N] [--adapters N] [--batch N]
//                           [--repeats N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "peft.h"

using namespace peft;

namespace {

double median_ms(int repeats, const std::function<void()>& step, Device dev, double* min_out) {
  auto sync = [&] {
    if (dev.is_cuda()) cuda::synchronize(dev);
  };
  for (int i = 0; i < 3; ++i) step();
  sync();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    sync();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  *min_out = ms.front();
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu";
  int64_t in = 4096, out = 4096, r = 16, n_adapters = 32, batch = 64;
  int repeats = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--device") device = v;
    else if (k == "--in") in = std::atoll(v);
    else if (k == "--out") out = std::atoll(v);
    else if (k == "--r") r = std::atoll(v);
    else if (k == "--adapters") n_adapters = std::atoll(v);
    else if (k == "--batch") batch = std::atoll(v);
    else if (k == "--repeats") repeats = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const Device dev = Device::parse(device);
  if (dev.is_cuda() && cuda_device_count() == 0) {
    std::printf("{\"skipped\": \"no CUDA device\"}\n");
    return 0;
  }
  NoGradGuard no_grad;
  Generator gen(1);
  Tensor x = Tensor::randn({batch, in}, DType::F32, &gen).to(dev);
  Tensor w = mul(Tensor::randn({out, in}, DType::F32, &gen), 0.02).to(dev);
  std::vector<Tensor> A, B;
  std::vector<double> scales;
  for (int64_t a = 0; a < n_adapters; ++a) {
    A.push_back(mul(Tensor::randn({r, in}, DType::F32, &gen), 0.02).to(dev));
    B.push_back(mul(Tensor::randn({out, r}, DType::F32, &gen), 0.02).to(dev));
    scales.push_back(2.0);
  }
  std::vector<int64_t> ids;
  std::vector<std::string> names;
  for (int64_t n = 0; n < batch; ++n) {
    ids.push_back(n % n_adapters);
    names.push_back(std::to_string(n % n_adapters));
  }
  const std::vector<RowGroup> groups = group_rows(names);
  Tensor y = linear(x, w);

  Tensor sink;
  double base_min = 0, loop_min = 0, bgmv_min = 0;
  const double base_ms = median_ms(repeats, [&] { sink = linear(x, w); }, dev, &base_min);
  const double loop_ms = median_ms(repeats, [&] {
    std::vector<Tensor> parts;
    for (const RowGroup& g : groups) {
      const size_t a = static_cast<size_t>(std::atoll(g.adapter.c_str()));
      parts.push_back(mul(linear(linear(select_rows(x, g.rows), A[a]), B[a]), scales[a]));
    }
    sink = add(y, assemble_rows(parts, groups));
  }, dev, &loop_min);
  const double bgmv_ms = median_ms(repeats, [&] { sink = lora_multi(y, x, A, B, scales, ids); }, dev, &bgmv_min);
  // The two paths agree (same math, different summation order).
  std::vector<Tensor> parts;
  for (const RowGroup& g : groups) {
    const size_t a = static_cast<size_t>(std::atoll(g.adapter.c_str()));
    parts.push_back(mul(linear(linear(select_rows(x, g.rows), A[a]), B[a]), scales[a]));
  }
  const double diff = max(abs(sub(add(y, assemble_rows(parts, groups)), lora_multi(y, x, A, B, scales, ids))))
                          .item();
  std::printf("{\"impl\": \"peft.cpp\", \"case\": \"multi_lora\", \"device\": \"%s\", \"in\": %lld, \"out\": %lld, "
              "\"r\": %lld, \"adapters\": %lld, \"batch\": %lld, \"base_ms\": %.4f, \"loop_ms\": %.4f, "
              "\"loop_min_ms\": %.4f, \"bgmv_ms\": %.4f, \"bgmv_min_ms\": %.4f, \"loop_over_bgmv\": %.2f, "
              "\"max_abs_diff\": %.3g, \"repeats\": %d}\n",
              dev.str().c_str(), static_cast<long long>(in), static_cast<long long>(out), static_cast<long long>(r),
              static_cast<long long>(n_adapters), static_cast<long long>(batch), base_ms, loop_ms, loop_min, bgmv_ms,
              bgmv_min, loop_ms / bgmv_ms, diff, repeats);
  (void)base_min;
  return 0;
}
