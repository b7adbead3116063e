// kernels/cpu/lstm_cell.h — the elementwise part of one LSTM step, fused: the gate
// activations, the cell update and the output in one pass forward, and every gate gradient
// plus dc_prev in one pass backward (the CPU reference for kernels/cuda/lstm_cell.cuh). The
// matrix products that make the gate pre-activations stay GEMMs in the caller.
//
// Gate order is PyTorch's i, f, g, o along the 4H axis of each row:
//   z = gates_x + gates_h;  i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o)
//   c = f·c_prev + i·g;     h = o·tanh(c)
// Forward saves the activated gates (not the pre-activations): every local derivative is a
// function of them (σ' = σ(1-σ), tanh' = 1-tanh²), so backward needs no exp. tanh(c) is
// saved too, not c: backward needs only tanh(c), and a tanh is the cell's costliest flop
// (libm's tanhf was ~1/4 of a CPU training step when backward recomputed it).
// σ and tanh are the formulas of kernels/cpu/elementwise.cpp, so the cell matches the op chain
// it replaces to rounding. Every buffer is contiguous row-major; outputs are written with =.
#pragma once
#include <cstdint>

namespace peft::kernels::cpu {

// gates_h == nullptr: no recurrent term (a zero initial h). c_prev == nullptr: zeros.
template <class T>
void lstm_cell_forward(int64_t B, int64_t H,
                       const T* gates_x,  // (B, 4H)
                       const T* gates_h,  // (B, 4H) or nullptr
                       const T* c_prev,   // (B, H) or nullptr
                       T* h,              // (B, H)
                       T* c,              // (B, H)
                       T* act,            // (B, 4H): i, f, g, o after their activations
                       T* tanh_c);        // (B, H): tanh(c)

// From the gradients of h and c (either nullptr: zero) to the gradient of the gate
// pre-activations (the same for gates_x and gates_h) and of c_prev (nullptr: not wanted).
template <class T>
void lstm_cell_backward(int64_t B, int64_t H,
                        const T* act,     // (B, 4H) from forward
                        const T* tanh_c,  // (B, H) from forward
                        const T* c_prev,  // (B, H) or nullptr (zeros)
                        const T* dh,      // (B, H) or nullptr
                        const T* dc,      // (B, H) or nullptr
                        T* dgates,        // (B, 4H)
                        T* dc_prev);      // (B, H) or nullptr

}  // namespace peft::kernels::cpu
