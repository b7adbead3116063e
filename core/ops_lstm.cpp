// The LSTM: lstm_cell, one time step's elementwise work as a single op over the fused kernels
// of kernels/cpu/lstm_cell.h and kernels/cuda/lstm_cell.cuh, and lstm, the multi-layer
// recurrence built from it on either device. Per layer, the input projection of every time step
// is one GEMM (both biases folded into it); each step then runs one GEMM for the recurrent
// product and one lstm_cell, and backward is the autograd of those ops.
#include <algorithm>
#include <tuple>

#include "core/autograd.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "kernels/cpu/lstm_cell.h"

namespace peft {

namespace kc = kernels::cpu;
using detail::data_or_null;
using detail::ptr_or_null;

namespace {

// The T steps of a (T, ...) tensor as T views recorded by ONE node, whose backward stacks the
// step gradients into one (T, ...) gradient. Per-step select() would record a SliceBackward
// per step that materialises a zero (T, ...) tensor each: O(T²) memory traffic in backward.
std::vector<Tensor> unbind_steps(const Tensor& a) {
  const Tensor d = a.detach();
  std::vector<Tensor> steps;
  steps.reserve(static_cast<size_t>(d.shape()[0]));
  for (int64_t t = 0; t < d.shape()[0]; ++t) steps.push_back(d.select(0, t));
  if (!steps.empty())
    autograd::record("UnbindBackward", {a}, steps,
                     [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {stack(g, 0)}; });
  return steps;
}

}  // namespace

std::pair<Tensor, Tensor> lstm_cell(const Tensor& gates_x_in, const Tensor& gates_h_in, const Tensor& c_prev_in) {
  detail::check_float_inputs_any_device("lstm_cell", {&gates_x_in, &gates_h_in, &c_prev_in});
  PEFT_CHECK(gates_x_in.dim() == 2 && gates_x_in.shape()[1] % 4 == 0, "lstm_cell: gates_x must be (batch, 4 * hidden), got ",
             shape_str(gates_x_in.shape()));
  const int64_t B = gates_x_in.shape()[0], H = gates_x_in.shape()[1] / 4;
  PEFT_CHECK(!gates_h_in.defined() || gates_h_in.shape() == gates_x_in.shape(), "lstm_cell: gates_h has shape ",
             shape_str(gates_h_in.shape()), ", expected ", shape_str(gates_x_in.shape()), " as gates_x");
  const Shape state_shape{B, H};
  PEFT_CHECK(!c_prev_in.defined() || c_prev_in.shape() == state_shape, "lstm_cell: c_prev has shape ",
             shape_str(c_prev_in.shape()), ", expected ", shape_str(state_shape));
  // Views (a step of a (T, B, 4H) projection, a layer of h_0) become plain row-major buffers.
  const Tensor gx = detail::contiguous_detached(gates_x_in);
  const Tensor gh = gates_h_in.defined() ? detail::contiguous_detached(gates_h_in) : Tensor();
  const Tensor cp = c_prev_in.defined() ? detail::contiguous_detached(c_prev_in) : Tensor();
  const Device dev = gx.device();
  const DType dt = gx.dtype();
  Tensor h = Tensor::empty({B, H}, dt, dev), c = Tensor::empty({B, H}, dt, dev);
  Tensor act = Tensor::empty({B, 4 * H}, dt, dev), tanh_c = Tensor::empty({B, H}, dt, dev);
  if (dev.is_cuda()) {
    cuda_ops::lstm_cell_forward(B, H, gx.raw_data(), ptr_or_null(gh), ptr_or_null(cp), h.raw_data(), c.raw_data(),
                                act.raw_data(), tanh_c.raw_data(), dt, dev);
  } else {
    PEFT_DISPATCH_FLOAT(dt, "lstm_cell", [&] {
      kc::lstm_cell_forward<scalar_t>(B, H, gx.data_ptr<scalar_t>(), data_or_null<scalar_t>(gh),
                                      data_or_null<scalar_t>(cp), h.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                                      act.data_ptr<scalar_t>(), tanh_c.data_ptr<scalar_t>());
    });
  }
  const bool gx_grad = gates_x_in.requires_grad(), gh_grad = gates_h_in.defined() && gates_h_in.requires_grad();
  const bool cp_grad = c_prev_in.defined() && c_prev_in.requires_grad();
  // Saved: the activated gates, tanh(c) and c_prev (f's gradient); never an output itself.
  autograd::record(
      "LstmCellBackward", {gates_x_in, gates_h_in, c_prev_in}, {h, c},
      [act, tanh_c, cp, B, H, gx_grad, gh_grad, cp_grad](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        const Device dev = act.device();
        const DType dt = act.dtype();
        // The engine fills unused outputs with zeros; an undefined one still reads as zero.
        const Tensor dh = g.size() > 0 && g[0].defined() ? detail::contiguous_detached(g[0]) : Tensor();
        const Tensor dc = g.size() > 1 && g[1].defined() ? detail::contiguous_detached(g[1]) : Tensor();
        Tensor dgates = Tensor::empty({B, 4 * H}, dt, dev);
        Tensor dc_prev = cp_grad ? Tensor::empty({B, H}, dt, dev) : Tensor();
        if (dev.is_cuda()) {
          cuda_ops::lstm_cell_backward(B, H, act.raw_data(), tanh_c.raw_data(), ptr_or_null(cp), ptr_or_null(dh),
                                       ptr_or_null(dc), dgates.raw_data(), ptr_or_null(dc_prev), dt, dev);
        } else {
          PEFT_DISPATCH_FLOAT(dt, "lstm_cell_backward", [&] {
            kc::lstm_cell_backward<scalar_t>(B, H, act.data_ptr<scalar_t>(), tanh_c.data_ptr<scalar_t>(),
                                             data_or_null<scalar_t>(cp), data_or_null<scalar_t>(dh),
                                             data_or_null<scalar_t>(dc), dgates.data_ptr<scalar_t>(),
                                             data_or_null<scalar_t>(dc_prev));
          });
        }
        // z = gates_x + gates_h: both get dz (the engine copies before it would alias a .grad).
        return {gx_grad ? dgates : Tensor(), gh_grad ? dgates : Tensor(), dc_prev};
      });
  return {h, c};
}

LSTMResult lstm(const Tensor& input, const std::optional<LSTMState>& hx, const std::vector<Tensor>& params,
                bool has_biases, int64_t num_layers, bool batch_first) {
  PEFT_CHECK(input.dim() == 3, "lstm: expected 3-D input (", batch_first ? "batch, seq, feature" : "seq, batch, feature",
             "), got ", shape_str(input.shape()));
  const size_t per_layer = has_biases ? 4 : 2;
  PEFT_CHECK(num_layers >= 1 && params.size() == per_layer * static_cast<size_t>(num_layers), "lstm: expected ",
             per_layer * static_cast<size_t>(std::max<int64_t>(num_layers, 0)), " parameter tensors for ", num_layers,
             " layers, got ", params.size());
  // One dtype and device for everything, checked here so the error names lstm, not linear.
  PEFT_CHECK(is_floating(input.dtype()), "lstm: expected a floating point input, got ", dtype_name(input.dtype()));
  auto check_like_input = [&](const Tensor& t, const char* what) {
    PEFT_CHECK(t.dtype() == input.dtype() && t.device() == input.device(), "lstm: input is ",
               dtype_name(input.dtype()), " on ", input.device().str(), " but ", what, " of shape ",
               shape_str(t.shape()), " is ", dtype_name(t.dtype()), " on ", t.device().str());
  };
  for (const Tensor& p : params) check_like_input(p, "a parameter");
  if (hx) {
    check_like_input(hx->h, "h_0");
    check_like_input(hx->c, "c_0");
  }
  Tensor x = batch_first ? input.transpose(0, 1) : input;  // (T, B, in)
  const int64_t T = x.shape()[0], B = x.shape()[1];
  const int64_t H = params[1].shape()[1];
  for (int64_t l = 0; l < num_layers; ++l) {
    const Tensor& w_ih = params[l * per_layer];
    const Tensor& w_hh = params[l * per_layer + 1];
    const int64_t in = l == 0 ? x.shape()[2] : H;
    PEFT_CHECK(w_ih.dim() == 2 && w_ih.shape()[0] == 4 * H && w_ih.shape()[1] == in, "lstm: weight_ih_l", l,
               " has shape ", shape_str(w_ih.shape()), ", expected [", 4 * H, ", ", in, "]");
    PEFT_CHECK(w_hh.dim() == 2 && w_hh.shape()[0] == 4 * H && w_hh.shape()[1] == H, "lstm: weight_hh_l", l,
               " has shape ", shape_str(w_hh.shape()), ", expected [", 4 * H, ", ", H, "]");
    if (has_biases)
      for (int64_t k = 2; k < 4; ++k) {
        const Tensor& b = params[l * per_layer + static_cast<size_t>(k)];
        PEFT_CHECK(b.dim() == 1 && b.shape()[0] == 4 * H, "lstm: ", k == 2 ? "bias_ih_l" : "bias_hh_l", l,
                   " has shape ", shape_str(b.shape()), ", expected [", 4 * H, "]");
      }
  }
  if (hx) {
    Shape want{num_layers, B, H};
    PEFT_CHECK(hx->h.shape() == want && hx->c.shape() == want, "lstm: initial states must have shape ", shape_str(want),
               ", got h ", shape_str(hx->h.shape()), " and c ", shape_str(hx->c.shape()));
  }
  const Device dev = input.device();
  std::vector<Tensor> h_n, c_n;
  Tensor layer_in = x;
  for (int64_t l = 0; l < num_layers; ++l) {
    const Tensor& w_ih = params[l * per_layer];
    const Tensor& w_hh = params[l * per_layer + 1];
    // b_ih + b_hh is added once, in the projection of all steps, instead of b_hh once per step;
    // autograd still gives each bias the gradient of the gates.
    Tensor bias = has_biases ? add(params[l * per_layer + 2], params[l * per_layer + 3]) : Tensor();
    // Undefined: a zero initial state, which lstm_cell reads as zeros without a GEMM on h = 0.
    Tensor h = hx ? hx->h.select(0, l) : Tensor();
    Tensor c = hx ? hx->c.select(0, l) : Tensor();
    std::vector<Tensor> steps = unbind_steps(linear(layer_in, w_ih, bias));  // T × (B, 4H)
    std::vector<Tensor> outs;
    outs.reserve(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      std::tie(h, c) = lstm_cell(steps[static_cast<size_t>(t)], h.defined() ? linear(h, w_hh) : Tensor(), c);
      outs.push_back(h);
    }
    if (!h.defined()) h = Tensor::zeros({B, H}, x.dtype(), dev);  // T == 0 without initial states
    if (!c.defined()) c = Tensor::zeros({B, H}, x.dtype(), dev);
    layer_in = T > 0 ? stack(outs, 0) : Tensor::zeros({0, B, H}, x.dtype(), dev);
    h_n.push_back(h);
    c_n.push_back(c);
  }
  LSTMResult r;
  r.output = batch_first ? layer_in.transpose(0, 1) : layer_in;
  r.state.h = stack(h_n, 0);
  r.state.c = stack(c_n, 0);
  return r;
}

}  // namespace peft
