// kernels/cuda/index_check.cu — see the header: reset and host-side check of the bad-index record.
#include "kernels/cuda/index_check.cuh"

#include <limits>

#include "core/error.h"
#include "kernels/cuda/check.cuh"

namespace peft::kernels::cuda {

namespace {

__global__ void set_int64_kernel(int64_t* p, int64_t v) { *p = v; }

}  // namespace

void index_error_reset(int64_t* first_bad, cudaStream_t stream) {
  PEFT_CHECK(first_bad != nullptr, "index_error_reset: null device pointer");
  set_int64_kernel<<<1, 1, 0, stream>>>(first_bad, std::numeric_limits<int64_t>::max());
  PEFT_KERNEL_CHECK();
}

void index_error_check(const int64_t* first_bad, const int64_t* ids, int64_t bound, const char* what,
                       cudaStream_t stream) {
  PEFT_CHECK(first_bad != nullptr && ids != nullptr, what, ": index_error_check got a null device pointer");
  int64_t pos = 0;
  PEFT_CUDA_CHECK(cudaMemcpyAsync(&pos, first_bad, sizeof(pos), cudaMemcpyDeviceToHost, stream));
  PEFT_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (pos == std::numeric_limits<int64_t>::max()) return;
  int64_t id = 0;
  PEFT_CUDA_CHECK(cudaMemcpyAsync(&id, ids + pos, sizeof(id), cudaMemcpyDeviceToHost, stream));
  PEFT_CUDA_CHECK(cudaStreamSynchronize(stream));
  PEFT_ERROR(what, ": index ", id, " at position ", pos, " is out of range for ", bound, " rows");
}

}  // namespace peft::kernels::cuda
