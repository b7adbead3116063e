// Multi-layer LSTM composed from differentiable ops (linear, sigmoid, tanh, mul, add), so its
// backward is the autograd of those ops. The input projection of every time step is one
// GEMM per layer; only the recurrent product runs per step.
#include "core/dispatch.h"
#include "core/ops.h"

namespace peft {

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
  // No CUDA path yet: the composed ops would run there, but cuDNN's fused LSTM is the intended
  // kernel, and a per-step op chain on the GPU is slower than refusing clearly.
  detail::check_cpu("lstm", input);
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
  }
  if (hx) {
    Shape want{num_layers, B, H};
    PEFT_CHECK(hx->h.shape() == want && hx->c.shape() == want, "lstm: initial states must have shape ", shape_str(want),
               ", got h ", shape_str(hx->h.shape()), " and c ", shape_str(hx->c.shape()));
  }
  std::vector<Tensor> h_n, c_n;
  Tensor layer_in = x;
  for (int64_t l = 0; l < num_layers; ++l) {
    const Tensor& w_ih = params[l * per_layer];
    const Tensor& w_hh = params[l * per_layer + 1];
    Tensor b_ih = has_biases ? params[l * per_layer + 2] : Tensor();
    Tensor b_hh = has_biases ? params[l * per_layer + 3] : Tensor();
    Tensor h = hx ? hx->h.select(0, l) : Tensor::zeros({B, H}, x.dtype());
    Tensor c = hx ? hx->c.select(0, l) : Tensor::zeros({B, H}, x.dtype());
    Tensor gates_x = linear(layer_in, w_ih, b_ih);  // (T, B, 4H)
    std::vector<Tensor> outs;
    outs.reserve(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      Tensor gates = add(gates_x.select(0, t), linear(h, w_hh, b_hh));
      std::vector<Tensor> q = chunk(gates, 4, 1);
      Tensor i = sigmoid(q[0]), f = sigmoid(q[1]), g = tanh(q[2]), o = sigmoid(q[3]);
      c = add(mul(f, c), mul(i, g));
      h = mul(o, tanh(c));
      outs.push_back(h);
    }
    layer_in = T > 0 ? stack(outs, 0) : Tensor::zeros({0, B, H}, x.dtype());
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
