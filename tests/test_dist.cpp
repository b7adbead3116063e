// peft::dist and DataParallel (issue 17): the shard rule, the one-process group, and — in builds
// with MPI and with mpirun on PATH — 2 and 3 ranks on the CPU: every collective, DataParallel's
// gradients, equality of `mpirun -np K mlp_lora` with one process (global batch 64), and the
// faults (a throwing rank, a hung rank, mismatched models) ending the job with a clear error.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "peft.h"
#include "program_runner.h"

using namespace peft;
namespace fs = std::filesystem;
using peft::testing::run;

namespace {

// mpirun with the flags CI needs (root in a container, more ranks than cores), or "" when absent.
std::string mpirun() {
  if (!dist::built_with_mpi()) {
    WARN("this build has no MPI (install libopenmpi-dev and reconfigure): the multi-process checks are skipped");
    return "";
  }
  if (run("command -v mpirun").status != 0) {
    WARN("mpirun is not on PATH (Debian: openmpi-bin): the multi-process checks are skipped");
    return "";
  }
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none";
}

}  // namespace

TEST_CASE("dist: shards split a batch as evenly as possible, first ranks one more", "[dist]") {
  CHECK(dist::shard(64, 0, 1) == std::make_pair<int64_t, int64_t>(0, 64));
  CHECK(dist::shard(64, 0, 3) == std::make_pair<int64_t, int64_t>(0, 22));
  CHECK(dist::shard(64, 1, 3) == std::make_pair<int64_t, int64_t>(22, 43));
  CHECK(dist::shard(64, 2, 3) == std::make_pair<int64_t, int64_t>(43, 64));
  CHECK(dist::shard(2, 2, 3) == std::make_pair<int64_t, int64_t>(2, 2));  // more ranks than items: empty shards
  for (int k = 1; k <= 5; ++k) {
    int64_t covered = 0;
    for (int r = 0; r < k; ++r) {
      auto [b, e] = dist::shard(37, r, k);
      CHECK(b == covered);
      covered = e;
    }
    CHECK(covered == 37);
  }
  REQUIRE_THROWS_WITH(dist::shard(10, 3, 3), Catch::Contains("rank 3 of 3"));
}

TEST_CASE("dist: outside mpirun the world is one process and DataParallel changes nothing", "[dist]") {
  dist::Communicator& w = dist::world();
  CHECK(w.size() == 1);
  CHECK(w.rank() == 0);
  CHECK(w.backend() == "single");
  Tensor t = Tensor::full({3}, 2.0);
  w.all_reduce_(t, dist::ReduceOp::Average);
  CHECK(t.to_vector<double>() == std::vector<double>{2, 2, 2});
  Tensor strided = Tensor::ones({2, 3}).transpose(0, 1);
  REQUIRE_THROWS_WITH(w.all_reduce_(strided), Catch::Contains("contiguous"));
  auto m = std::make_shared<nn::Linear>(3, 2);
  mean(m->forward(Tensor::ones({4, 3}))).backward();
  const auto before = m->param("weight").grad().to_vector<double>();
  DataParallel dp(*m, w);
  dp.sync_gradients(4, 4);
  CHECK(m->param("weight").grad().to_vector<double>() == before);
  CHECK(dp.bytes_per_step() == (2 * 3 + 2) * 4);
  CHECK(dp.reduce_mean(1.5, 4, 4) == 1.5);
}

TEST_CASE("dist under mpirun: collectives and DataParallel's gradients on 2 and 3 ranks", "[dist][mpi]") {
  const std::string mpi = mpirun();
  if (mpi.empty()) return;
  for (int k : {2, 3}) {
    DYNAMIC_SECTION(k << " ranks") {
      auto r = run(mpi + " -np " + std::to_string(k) + " " + PEFT_DIST_WORKER + " collectives");
      INFO(r.output);
      CHECK(r.status == 0);
      CHECK_THAT(r.output, Catch::Contains("collectives ok on " + std::to_string(k) + " ranks (mpi)"));
      r = run(mpi + " -np " + std::to_string(k) + " " + PEFT_DIST_WORKER + " sync");
      INFO(r.output);
      CHECK(r.status == 0);
      CHECK_THAT(r.output, Catch::Contains("sync ok"));
    }
  }
}

TEST_CASE("dist under mpirun: mlp_lora data-parallel saves the one-process adapter within 1e-5", "[dist][mpi][samples]") {
  const std::string mpi = mpirun();
  const std::string bin = peft::testing::sample_binary("mlp_lora");
  if (mpi.empty() || bin.empty()) return;
  const fs::path root = fs::temp_directory_path() / ("peft_dist_" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto one = run(bin + " --epochs 2 --out " + (root / "one").string());
  INFO(one.output);
  REQUIRE(one.status == 0);
  const NamedTensors want = io::load_file((root / "one" / "adapter_model.safetensors").string());
  for (int k : {2, 3}) {
    DYNAMIC_SECTION(k << " ranks") {
      const fs::path out = root / ("np" + std::to_string(k));
      auto r = run(mpi + " -np " + std::to_string(k) + " " + bin + " --epochs 2 --out " + out.string());
      INFO(r.output);
      REQUIRE(r.status == 0);
      CHECK_THAT(r.output, Catch::Contains("data-parallel: world size " + std::to_string(k) + " (mpi)"));
      CHECK_THAT(r.output, Catch::Contains("bytes of gradients all-reduced per step"));
      const NamedTensors got = io::load_file((out / "adapter_model.safetensors").string());
      REQUIRE(got.size() == want.size());
      for (const auto& [name, w] : want) {
        INFO(name);
        const Tensor g = io::find_tensor(got, name);
        REQUIRE(g.shape() == w.shape());
        CHECK(max(abs(sub(g, w))).item() <= 1e-5);
      }
    }
  }
  fs::remove_all(root);
}

TEST_CASE("dist under mpirun: a failing, hung or mismatched rank ends the job with a clear error", "[dist][mpi]") {
  const std::string mpi = mpirun();
  if (mpi.empty()) return;
  const std::string np2 = mpi + " -np 2 ";
  SECTION("a rank that throws") {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run(np2 + PEFT_DIST_WORKER + " throw");
    INFO(r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Contains("peft.dist: rank 1 of 2: ") && Catch::Contains("a deliberate failure"));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));
  }
  SECTION("a rank that hangs: the others' collective times out") {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run("PEFT_DIST_TIMEOUT=2 " + np2 + "-x PEFT_DIST_TIMEOUT " + PEFT_DIST_WORKER + " hang");
    INFO(r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Contains("rank 0 of 2: all_reduce_ did not complete within"));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));  // rank 1 would sleep 120 s
  }
  SECTION("a bad PEFT_DIST_TIMEOUT is reported before MPI starts") {
    auto r = run("PEFT_DIST_TIMEOUT=abc " + np2 + "-x PEFT_DIST_TIMEOUT " + PEFT_DIST_WORKER + " collectives");
    INFO(r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Contains("PEFT_DIST_TIMEOUT must be a number of seconds in (0, 1e6], got 'abc'"));
  }
  SECTION("ranks whose models differ") {
    auto r = run(np2 + PEFT_DIST_WORKER + " mismatch");
    INFO(r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Contains("the ranks' models differ (ranks 1 differ from rank 0): rank 0 has "
                                         "\"(nothing)\" where rank 1 has \"parameter 1.weight [3, 3] F32 cpu trainable\""));
  }
}
