// DataParallel: data-parallel training of a Module across the ranks of a peft::dist group
// (PyTorch's DistributedDataParallel, without its autograd hooks). Every rank holds the whole
// model; each runs forward and backward on its shard of the global batch (dist::shard), then
// sync_gradients() makes every trainable parameter's gradient the gradient of the global batch,
// and the identical optimizer steps keep the ranks' weights equal.
//
//   peft::DataParallel dp(*model, peft::dist::world());   // broadcasts rank 0's weights, checks the parameter sets
//   auto [b, e] = peft::dist::shard(global_batch, comm.rank(), comm.size());
//   loss = loss_fn(model(x[b:e]), y[b:e]);                 // the mean over this rank's examples
//   loss.backward();
//   dp.sync_gradients(e - b, global_batch);                // now the global batch mean's gradient
//   opt.step();
//
// Gradients travel in buckets of `bucket_bytes` (one flat F32/F64 all-reduce per bucket), after
// backward (this engine's autograd has no per-parameter hooks to overlap them with it yet).
// Buffers are broadcast from rank 0 at construction only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dist/communicator.h"
#include "layers/module.h"

namespace peft {

class DataParallel {
 public:
  struct Stats {
    int64_t steps = 0, bytes = 0, all_reduces = 0;  // totals over sync_gradients calls
    double seconds = 0;                             // wall time inside sync_gradients
  };

  // Checks that every rank has the same parameters and buffers (names, shapes, dtypes, which are
  // trainable) — a mismatch is a peft::Error on every rank, naming the first difference — then
  // copies rank 0's parameters and buffers to the others.
  DataParallel(nn::Module& model, dist::Communicator& comm, int64_t bucket_bytes = 25 << 20);

  // After backward: every trainable parameter's gradient becomes Σ_ranks (local / global) · grad,
  // i.e. the gradient of the mean over the global batch when each rank's loss is the mean over
  // its `local_examples` of the `global_examples`. A parameter without a gradient on this rank
  // counts as zero where another rank has one; one that no rank gave a gradient keeps none.
  void sync_gradients(int64_t local_examples, int64_t global_examples);

  // Σ_ranks (local / global) · value: a loss for logging, averaged like the gradients.
  double reduce_mean(double value, int64_t local_examples, int64_t global_examples);

  dist::Communicator& comm() { return comm_; }
  // Bytes of gradients each rank all-reduces per step.
  int64_t bytes_per_step() const { return bytes_per_step_; }
  const Stats& stats() const { return stats_; }

 private:
  nn::Module& model_;
  dist::Communicator& comm_;
  int64_t bucket_bytes_, bytes_per_step_ = 0;
  std::vector<Tensor> trainable_;
  Stats stats_;
};

}  // namespace peft
