// The MPI backend of peft::dist (builds with PEFT_WITH_MPI): MPI_COMM_WORLD, initialised with
// MPI_THREAD_MULTIPLE so the watchdog thread may call MPI_Abort while the main thread waits in a
// collective; finalised when the process exits. CUDA tensors are staged through the host (NCCL
// is the GPU path).
#ifdef PEFT_WITH_MPI
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>

#include "core/dist/backends.h"
#include "core/error.h"

namespace peft::dist::detail {

namespace {

// Every MPI call is checked (MPI_ERRORS_RETURN is set on the communicator).
void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  PEFT_ERROR("MPI: ", what, " failed: ", std::string(msg, static_cast<size_t>(len)));
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I64: return MPI_INT64_T;
    default: PEFT_ERROR("MPI: dtype ", dtype_name(d), " is not reduced");
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_), "MPI_Init_thread");
      owns_mpi_ = true;
    } else {
      MPI_Query_thread(&thread_level_);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    watchdog_ = std::make_unique<Watchdog>(&MpiCommunicator::on_timeout, this);
  }
  ~MpiCommunicator() override {
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_mpi_ && !finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce_(Tensor& t, ReduceOp op) override {
    check_collective_tensor(t, "all_reduce_", true);
    Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
    {
      Watched w(*watchdog_, "all_reduce_", timeout());
      // MPI counts are int: large tensors go in chunks.
      char* p = static_cast<char*>(host.raw_data());
      const size_t elem = dtype_size(host.dtype());
      for (int64_t done = 0, n = host.numel(); done < n;) {
        const int count = static_cast<int>(std::min<int64_t>(n - done, INT_MAX / 2));
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, p + static_cast<size_t>(done) * elem, count, mpi_type(host.dtype()),
                                op == ReduceOp::Max ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce");
        done += count;
      }
    }
    if (op == ReduceOp::Average) {
      NoGradGuard g;
      if (host.dtype() == DType::I64) {
        int64_t* v = host.data_ptr<int64_t>();
        for (int64_t i = 0; i < host.numel(); ++i) v[i] /= size_;
      } else {
        host.mul_(1.0 / size_);
      }
    }
    if (!host.is_same(t)) {
      NoGradGuard g;
      t.copy_(host);
    }
  }

  void broadcast_(Tensor& t, int root) override {
    check_collective_tensor(t, "broadcast_", false);
    PEFT_CHECK(root >= 0 && root < size_, "broadcast_: root ", root, " is not a rank of ", size_);
    Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
    {
      // Bytes, whatever the dtype (BF16 / F16 weights included).
      Watched w(*watchdog_, "broadcast_", timeout());
      char* p = static_cast<char*>(host.raw_data());
      for (int64_t done = 0, n = static_cast<int64_t>(host.nbytes()); done < n;) {
        const int count = static_cast<int>(std::min<int64_t>(n - done, INT_MAX / 2));
        check_mpi(MPI_Bcast(p + done, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
        done += count;
      }
    }
    if (!host.is_same(t)) {
      NoGradGuard g;
      t.copy_(host);
    }
  }

  std::vector<uint64_t> all_gather(uint64_t value) override {
    std::vector<uint64_t> out(static_cast<size_t>(size_));
    Watched w(*watchdog_, "all_gather", timeout());
    check_mpi(MPI_Allgather(&value, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather");
    return out;
  }

  std::string broadcast_string(const std::string& s, int root) override {
    PEFT_CHECK(root >= 0 && root < size_, "broadcast_string: root ", root, " is not a rank of ", size_);
    Watched w(*watchdog_, "broadcast_string", timeout());
    uint64_t n = s.size();
    check_mpi(MPI_Bcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD), "MPI_Bcast");
    PEFT_CHECK(n < (uint64_t{1} << 31), "broadcast_string: ", n, " bytes is too long");
    std::string out = rank_ == root ? s : std::string(static_cast<size_t>(n), '\0');
    if (n > 0) check_mpi(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD), "MPI_Bcast");
    return out;
  }

  void barrier() override {
    Watched w(*watchdog_, "barrier", timeout());
    check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "peft.dist: rank %d of %d: %s\n", rank_, size_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; should it, the process still ends
  }

 private:
  static void on_timeout(void* self_v, const char* op, double seconds) {
    auto* self = static_cast<MpiCommunicator*>(self_v);
    std::fprintf(stderr,
                 "peft.dist: rank %d of %d: %s did not complete within %.1f s (another rank failed, exited or is "
                 "stuck; PEFT_DIST_TIMEOUT sets the limit); ending the job\n",
                 self->rank_, self->size_, op ? op : "a collective", seconds);
    std::fflush(stderr);
    // From this thread MPI_Abort is only legal with MPI_THREAD_MULTIPLE; otherwise the process
    // exits, and the launcher ends the job when a rank exits without MPI_Finalize.
    if (self->thread_level_ >= MPI_THREAD_MULTIPLE) MPI_Abort(MPI_COMM_WORLD, 124);
    std::_Exit(124);
  }

  int rank_ = 0, size_ = 1, thread_level_ = 0;
  bool owns_mpi_ = false;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi() { return std::make_unique<MpiCommunicator>(); }

}  // namespace peft::dist::detail
#endif  // PEFT_WITH_MPI
