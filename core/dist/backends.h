// Internal to core/dist/: the backends' factories and the watchdog they share.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "core/dist/communicator.h"

namespace peft::dist::detail {

// MPI_COMM_WORLD (core/dist/mpi_communicator.cpp); initialises MPI. Builds with MPI only.
std::unique_ptr<Communicator> make_mpi();

// Watches one collective at a time: begin(op) / end() around it; when one runs past the timeout,
// on_timeout(op, seconds) is called from the watchdog's thread (it ends the job).
class Watchdog {
 public:
  using Handler = void (*)(void* ctx, const char* op, double seconds);
  Watchdog(Handler on_timeout, void* ctx);
  ~Watchdog();
  void begin(const char* op, std::chrono::milliseconds timeout);
  void end();

 private:
  void loop();
  Handler on_timeout_;
  void* ctx_;
  std::atomic<const char*> op_{nullptr};
  std::atomic<int64_t> deadline_ns_{0}, start_ns_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// RAII: one watched collective.
class Watched {
 public:
  Watched(Watchdog& w, const char* op, std::chrono::milliseconds timeout) : w_(w) { w_.begin(op, timeout); }
  ~Watched() { w_.end(); }
  Watched(const Watched&) = delete;
  Watched& operator=(const Watched&) = delete;

 private:
  Watchdog& w_;
};

// A tensor a collective can take: defined, contiguous, with data; `reduced`: of a dtype the
// backends reduce (F32, F64, I64; a broadcast moves bytes of any dtype).
void check_collective_tensor(const Tensor& t, const char* op, bool reduced);

}  // namespace peft::dist::detail
