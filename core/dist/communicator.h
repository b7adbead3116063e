// peft::dist — the process group of a data-parallel job (DESIGN.md: core/dist/). Programs run
// the same binary under `mpirun -np K`; the engine uses existing communication libraries:
//   - MPI (Debian's OpenMPI): CPU tensors, and the bootstrap of the others. Optional at build
//     time (PEFT_MPI, like cuDNN): without it the library is single-process, and a program that
//     mpirun started with K > 1 refuses to run instead of running K unrelated copies;
//   - NCCL (CUDA tensors, its unique id broadcast over MPI, one GPU per rank by node-local rank):
//     declared (make_nccl) but not implemented yet — it refuses by name; CUDA tensors go through
//     MPI staged on the host meanwhile.
//
//   auto& comm = peft::dist::world();          // MPI under mpirun, else one process
//   comm.all_reduce_(t, peft::dist::ReduceOp::Sum);
//
// Faults end the whole job, never hang it: every collective runs under a watchdog
// (timeout(), PEFT_DIST_TIMEOUT seconds, default 300) that ends the job naming the rank and the
// collective; run_guarded() turns an exception on any rank into the job's end with "rank R of
// K: <message>".
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft::dist {

enum class ReduceOp { Sum, Average, Max };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "single", "mpi" or "nccl".
  virtual std::string backend() const = 0;
  // In place, on every rank, on tensors of the same shape and dtype (F32, F64 or I64; contiguous).
  // MPI stages CUDA tensors through the host; NCCL takes CUDA tensors only.
  virtual void all_reduce_(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // t on every rank becomes root's t.
  virtual void broadcast_(Tensor& t, int root = 0) = 0;
  // value of every rank, in rank order.
  virtual std::vector<uint64_t> all_gather(uint64_t value) = 0;
  // root's bytes on every rank (sizes may differ before the call).
  virtual std::string broadcast_string(const std::string& s, int root = 0) = 0;
  virtual void barrier() = 0;
  // Ends every process of the job after printing "peft.dist: rank R of K: message" on stderr.
  [[noreturn]] virtual void abort(const std::string& message, int code = 1) = 0;

  // Collectives that take longer end the job (a peer failed or is stuck).
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

 protected:
  std::chrono::milliseconds timeout_{300000};
};

// The job's process group, made on first use: MPI when the process was started by an MPI
// launcher (mpirun's environment) in a build with MPI, else a one-process group. Started by
// mpirun with K > 1 in a build without MPI: peft::Error. PEFT_DIST_TIMEOUT (seconds) sets the
// collectives' timeout.
Communicator& world();
// Whether this build has the MPI / NCCL backends.
bool built_with_mpi();
bool built_with_nccl();
// This process's rank among those on its node (OMPI_COMM_WORLD_LOCAL_RANK; 0 outside mpirun):
// the GPU a rank uses.
int local_rank();

// An NCCL communicator over the same ranks as `bootstrap` (MPI), on `device` (a CUDA device;
// usually Device::cuda(local_rank())). Not implemented yet: peft::Error naming it.
std::unique_ptr<Communicator> make_nccl(Communicator& bootstrap, Device device);

// Runs fn; returns its exit code. An exception on any rank prints "rank R of K: <what>" and ends
// the whole job (MPI_Abort) with exit code 1 — the other ranks do not wait for it in a collective.
int run_guarded(const std::function<int()>& fn);

// Rank `rank`'s part [begin, end) of n items split as evenly as possible over `world` ranks (the
// first n % world ranks get one more): the distributed sampler's shard of a global batch.
std::pair<int64_t, int64_t> shard(int64_t n, int rank, int world);

}  // namespace peft::dist
