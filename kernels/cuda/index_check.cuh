// kernels/cuda/index_check.cuh — reporting out-of-range indices that only a kernel can see.
//
// Indices (embedding ids, class targets) live in device memory, so a launcher cannot validate
// them without a copy and a sync, and a kernel cannot throw. Kernels that take indices skip a bad
// one (writing 0 where they would have gathered) and record its position in a device int64:
// the smallest bad position wins (atomicMin), so the report is deterministic. The caller resets
// the record before the launches and checks it where it synchronises anyway (e.g. before reading
// a loss); the check throws peft::Error naming the index, its position and the bound.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

// *first_bad = INT64_MAX ("none"), queued on `stream`. first_bad: a device int64.
void index_error_reset(int64_t* first_bad, cudaStream_t stream);

// Waits for `stream`; when a kernel recorded a bad position p, reads ids[p] and throws
// "<what>: index <ids[p]> at position <p> is out of range for <bound> rows". ids: device (n).
void index_error_check(const int64_t* first_bad, const int64_t* ids, int64_t bound, const char* what,
                       cudaStream_t stream);

}  // namespace peft::kernels::cuda
