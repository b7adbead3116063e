// kernels/cuda/lstm_cell.cuh — the fused LSTM cell on the GPU, the twin of
// kernels/cpu/lstm_cell.h (same arguments, same formulas, same nullptr conventions): one
// launch computes the four gate activations, the new cell and the output of one time step;
// one launch computes every gate gradient and dc_prev. The gate pre-activations come from
// cuBLAS GEMMs in the caller. Device pointers, contiguous row-major; the launchers check their
// arguments, queue on `stream` and return without synchronising.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

// Gate order i, f, g, o along 4H. gates_h / c_prev == nullptr: zeros.
template <class T>
void lstm_cell_forward(int64_t B, int64_t H,
                       const T* gates_x,  // (B, 4H)
                       const T* gates_h,  // (B, 4H) or nullptr
                       const T* c_prev,   // (B, H) or nullptr
                       T* h,              // (B, H), written with =
                       T* c,              // (B, H), written with =
                       T* act,            // (B, 4H), the activated gates, written with =
                       T* tanh_c,         // (B, H), tanh(c) for backward, written with =
                       cudaStream_t stream);

// dh / dc == nullptr: zero; dc_prev == nullptr: not wanted.
template <class T>
void lstm_cell_backward(int64_t B, int64_t H,
                        const T* act,     // (B, 4H) from forward
                        const T* tanh_c,  // (B, H) from forward
                        const T* c_prev,  // (B, H) or nullptr
                        const T* dh,      // (B, H) or nullptr
                        const T* dc,      // (B, H) or nullptr
                        T* dgates,        // (B, 4H), written with =
                        T* dc_prev,       // (B, H) or nullptr, written with =
                        cudaStream_t stream);

}  // namespace peft::kernels::cuda
