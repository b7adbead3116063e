// A program test_dist.cpp runs under mpirun: one scenario per run, named by argv[1].
//   collectives  every collective checked on every rank (exit 0 when all agree)
//   throw        rank 1 throws after start-up: run_guarded must end the job, naming rank 1
//   hang         rank 1 sleeps; the others wait in all_reduce_ until the watchdog ends the job
//   mismatch     rank 1's model has an extra parameter: DataParallel refuses on every rank
//   sync         DataParallel gradients: Σ (local/global)·grad, with ranks holding different shards
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "peft.h"

using namespace peft;

namespace {

int collectives(dist::Communicator& c) {
  const int r = c.rank(), k = c.size();
  Tensor f = Tensor::full({5}, r + 1.0);
  c.all_reduce_(f, dist::ReduceOp::Sum);
  PEFT_CHECK(f.to_vector<double>() == std::vector<double>(5, k * (k + 1) / 2.0), "sum: ", f.to_string());
  Tensor a = Tensor::full({3}, 2.0 * r, DType::F64);
  c.all_reduce_(a, dist::ReduceOp::Average);
  PEFT_CHECK(a.to_vector<double>() == std::vector<double>(3, k - 1.0), "average: ", a.to_string());
  Tensor m = Tensor::from_vector(std::vector<int64_t>{r, -r}, {2});
  c.all_reduce_(m, dist::ReduceOp::Max);
  PEFT_CHECK(m.to_vector<int64_t>() == (std::vector<int64_t>{k - 1, 0}), "max: ", m.to_string());
  Tensor b = Tensor::full({4}, r == 1 ? 7.0 : -1.0);
  c.broadcast_(b, 1);
  PEFT_CHECK(b.to_vector<double>() == std::vector<double>(4, 7.0), "broadcast: ", b.to_string());
  Tensor h = Tensor::full({3}, r == 0 ? 1.5 : 0.0).to(DType::BF16);  // a broadcast moves bytes of any dtype
  c.broadcast_(h, 0);
  PEFT_CHECK(h.to(DType::F32).to_vector<double>() == std::vector<double>(3, 1.5), "BF16 broadcast");
  const auto g = c.all_gather(static_cast<uint64_t>(10 + r));
  for (int i = 0; i < k; ++i) PEFT_CHECK(g[static_cast<size_t>(i)] == static_cast<uint64_t>(10 + i), "all_gather");
  PEFT_CHECK(c.broadcast_string(r == 0 ? "from rank 0" : "x") == "from rank 0", "broadcast_string");
  c.barrier();
  if (r == 0) std::printf("collectives ok on %d ranks (%s)\n", k, c.backend().c_str());
  return 0;
}

std::shared_ptr<nn::Sequential> model(bool extra) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::make_shared<nn::Linear>(4, 3));
  if (extra) s->push_back(std::make_shared<nn::Linear>(3, 3));
  return s;
}

int sync(dist::Communicator& c) {
  manual_seed(1234 + static_cast<uint64_t>(c.rank()));  // different weights: the constructor must broadcast rank 0's
  auto m = model(false);
  DataParallel dp(*m, c);
  // Rank r's loss: the mean of (w·x) over its examples; x = r + 1 everywhere.
  const int64_t global = 10;
  auto [b, e] = dist::shard(global, c.rank(), c.size());
  Tensor x = Tensor::full({e - b, 4}, c.rank() + 1.0);
  if (e > b) mean(m->forward(x)).backward();
  dp.sync_gradients(e - b, global);
  // Expected: Σ_r (n_r / global) · d mean(W x_r + b)/dW = Σ_r n_r (r + 1) / (3 · global) per entry of W.
  double want = 0;
  for (int r = 0; r < c.size(); ++r) {
    auto [rb, re] = dist::shard(global, r, c.size());
    want += static_cast<double>(re - rb) * (r + 1) / (3.0 * global);
  }
  const Tensor gw = m->child("0")->param("weight").grad();
  for (double v : gw.to_vector<double>()) PEFT_CHECK(std::abs(v - want) < 1e-6, "weight grad ", v, " expected ", want);
  Tensor w = m->child("0")->param("weight").detach().clone();
  Tensor w0 = w.clone();
  c.broadcast_(w0, 0);
  PEFT_CHECK(max(abs(sub(w, w0))).item() == 0, "weights differ from rank 0's after the constructor");
  // A parameter used on rank 0 only gets the global gradient everywhere; one no rank used keeps none.
  auto two = std::make_shared<nn::Sequential>();
  two->push_back(std::make_shared<nn::Linear>(2, 1));
  two->push_back(std::make_shared<nn::Linear>(2, 1));
  two->push_back(std::make_shared<nn::Linear>(2, 1));
  DataParallel dp2(*two, c);
  if (c.rank() == 0) sum(two->child("1")->forward(Tensor::ones({1, 2}))).backward();
  sum(two->child("0")->forward(Tensor::ones({1, 2}))).backward();
  dp2.sync_gradients(1, c.size());
  PEFT_CHECK(two->child("1")->param("weight").grad().defined(), "rank 0's gradient did not reach rank ", c.rank());
  PEFT_CHECK(std::abs(two->child("1")->param("bias").grad().item() - 1.0 / c.size()) < 1e-6, "weighted grad");
  PEFT_CHECK(!two->child("2")->param("weight").grad().defined(), "an unused parameter got a gradient");
  if (c.rank() == 0) std::printf("sync ok: grad %.6f, %lld bytes per step\n", want, static_cast<long long>(dp.bytes_per_step()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string scenario = argc > 1 ? argv[1] : "";
  return dist::run_guarded([&]() -> int {
    dist::Communicator& c = dist::world();
    if (scenario == "collectives") return collectives(c);
    if (scenario == "sync") return sync(c);
    if (scenario == "throw") {
      c.barrier();
      PEFT_CHECK(c.rank() != 1, "a deliberate failure on this rank");
      Tensor t = Tensor::ones({2});
      c.all_reduce_(t);  // the others wait here until rank 1's error ends the job
      return 0;
    }
    if (scenario == "hang") {
      c.barrier();
      if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(120));
      Tensor t = Tensor::ones({2});
      c.all_reduce_(t);
      return 0;
    }
    if (scenario == "mismatch") {
      auto m = model(c.rank() == 1);
      DataParallel dp(*m, c);
      return 0;
    }
    std::fprintf(stderr, "usage: dist_worker collectives|sync|throw|hang|mismatch\n");
    return 2;
  });
}
