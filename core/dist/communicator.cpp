#include "core/dist/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <mutex>

#include "core/dist/backends.h"
#include "core/error.h"

namespace peft::dist {

namespace {

// One process: every collective is the identity.
class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce_(Tensor& t, ReduceOp) override { detail::check_collective_tensor(t, "all_reduce_", true); }
  void broadcast_(Tensor& t, int root) override {
    detail::check_collective_tensor(t, "broadcast_", false);
    PEFT_CHECK(root == 0, "broadcast_: root ", root, " is not a rank of a one-process group");
  }
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  std::string broadcast_string(const std::string& s, int root) override {
    PEFT_CHECK(root == 0, "broadcast_string: root ", root, " is not a rank of a one-process group");
    return s;
  }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "peft.dist: rank 0 of 1: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(code);
  }
};

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return end && *end == 0 ? static_cast<int>(x) : def;
}

// The job size an MPI launcher announced (OpenMPI, PMI / Slurm, PMIx); 0 when none did.
int launcher_size() {
  for (const char* k : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (int n = env_int(k, 0); n > 0) return n;
  return 0;
}

// PEFT_DIST_TIMEOUT, checked before MPI starts (a bad value must not leave MPI half set up).
std::chrono::milliseconds timeout_from_env() {
  const char* t = std::getenv("PEFT_DIST_TIMEOUT");
  if (!t || !*t) return std::chrono::milliseconds(300000);
  char* end = nullptr;
  const double s = std::strtod(t, &end);
  // Up to ~11.5 days: the watchdog adds it to a steady-clock time in nanoseconds.
  PEFT_CHECK(end && *end == 0 && s > 0 && s <= 1e6, "PEFT_DIST_TIMEOUT must be a number of seconds in (0, 1e6], got '",
             t, "'");
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

// Set once world() has made the group: run_guarded reports through it without making one.
std::atomic<Communicator*> made_world{nullptr};

std::unique_ptr<Communicator> make_world() {
  const std::chrono::milliseconds timeout = timeout_from_env();
  const int announced = launcher_size();
  std::unique_ptr<Communicator> c;
  if (announced > 0 && built_with_mpi()) {
    c = detail::make_mpi();
  } else {
    PEFT_CHECK(announced <= 1, "this process was started by an MPI launcher as one of ", announced,
               " ranks, but this build of peft.cpp has no MPI (install libopenmpi-dev and rebuild; PEFT_MPI=ON makes "
               "it required); refusing to run ", announced, " unrelated copies");
    c = std::make_unique<SingleCommunicator>();
  }
  c->set_timeout(timeout);
  return c;
}

}  // namespace

bool built_with_mpi() {
#ifdef PEFT_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool built_with_nccl() {
#ifdef PEFT_WITH_NCCL
  return true;
#else
  return false;
#endif
}

Communicator& world() {
  static std::unique_ptr<Communicator> w;
  static std::once_flag once;
  std::call_once(once, [] {
    w = make_world();
    made_world = w.get();
  });
  return *w;
}

int local_rank() {
  for (const char* k : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (int r = env_int(k, -1); r >= 0) return r;
  return 0;
}

int run_guarded(const std::function<int()>& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    Communicator* w = made_world.load();  // never starts MPI from an error path
    if (w && w->size() > 1) w->abort(e.what(), 1);  // ends every rank, naming this one
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

std::pair<int64_t, int64_t> shard(int64_t n, int rank, int world_size) {
  PEFT_CHECK(world_size > 0 && rank >= 0 && rank < world_size && n >= 0, "shard: rank ", rank, " of ", world_size,
             " ranks, ", n, " items");
  const int64_t base = n / world_size, extra = n % world_size, r = rank;
  const int64_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

std::unique_ptr<Communicator> make_nccl(Communicator&, Device) {
  PEFT_ERROR("make_nccl: the NCCL backend is not implemented yet (issue 17); DataParallel on CUDA tensors uses MPI, "
             "staging each gradient bucket through the host");
}

namespace detail {

#ifndef PEFT_WITH_MPI
std::unique_ptr<Communicator> make_mpi() { PEFT_ERROR("this build of peft.cpp has no MPI backend"); }
#endif

void check_collective_tensor(const Tensor& t, const char* op, bool reduced) {
  PEFT_CHECK(t.defined(), op, ": undefined tensor");
  PEFT_CHECK(t.is_contiguous(), op, ": the tensor must be contiguous (shape ", shape_str(t.shape()), ")");
  if (reduced)
    PEFT_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::I64, op, ": dtype ",
               dtype_name(t.dtype()), " is not reduced (F32, F64, I64)");
  PEFT_CHECK(!t.device().is_meta(), op, ": a meta tensor has no data");
}

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Watchdog::Watchdog(Handler on_timeout, void* ctx) : on_timeout_(on_timeout), ctx_(ctx), thread_([this] { loop(); }) {}

Watchdog::~Watchdog() {
  stop_ = true;
  thread_.join();
}

void Watchdog::begin(const char* op, std::chrono::milliseconds timeout) {
  const int64_t t = now_ns();
  start_ns_ = t;
  op_ = op;
  deadline_ns_ = t + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
}

void Watchdog::end() { deadline_ns_ = 0; }

void Watchdog::loop() {
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const int64_t d = deadline_ns_;
    // Re-read after the clock: a collective that ended (or a new one that began) meanwhile is not a timeout.
    if (d != 0 && now_ns() > d && deadline_ns_ == d)
      on_timeout_(ctx_, op_.load(), static_cast<double>(now_ns() - start_ns_) * 1e-9);
  }
}

}  // namespace detail

}  // namespace peft::dist
