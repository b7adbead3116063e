// The op-table machinery shared by test_cuda_ops (F32 / TF32 rows) and test_cuda_ops_bf16 (BF16
// rows): a row names an op, its tolerance and fresh CPU inputs; run_op_row runs it on a device in a
// dtype, forward and backward, and brings the output and every input's gradient back to the CPU.
#pragma once
#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cuda_kernel_util.h"
#include "peft.h"

namespace peft::testing {

struct OpRow {
  std::string name;
  Tol tol;
  std::function<std::vector<Tensor>()> inputs;               // CPU tensors; float ones get gradients
  std::function<Tensor(const std::vector<Tensor>&)> forward;  // the op under test
  bool tf32 = false;
  bool cudnn = true;  // false: conv2d through the direct kernels even when cuDNN is built in
};

inline Conv2dOptions conv_opts(std::pair<int64_t, int64_t> stride, std::pair<int64_t, int64_t> padding,
                               std::pair<int64_t, int64_t> dilation = {1, 1}, int64_t groups = 1) {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = padding;
  o.dilation = dilation;
  o.groups = groups;
  return o;
}

struct OpResult {
  Tensor out;
  std::vector<Tensor> grads;  // per input; undefined for integer inputs
};

// Runs one row on `dev` with its float inputs converted to `dt` (integer ones as they are), as
// fresh leaves, backward from upstream(out.shape()) converted likewise; the row's TF32 and cuDNN
// switches hold only for the call. Output and gradients come back to the CPU in their own dtype.
inline OpResult run_op_row(const OpRow& row, const std::vector<Tensor>& cpu_inputs, Device dev, DType dt,
                           const std::function<Tensor(const Shape&)>& upstream) {
  std::vector<Tensor> in;
  for (const Tensor& t : cpu_inputs) {
    Tensor d = (is_floating(t.dtype()) ? t.to(dt) : t).to(dev).detach();
    if (is_floating(d.dtype())) d.requires_grad_();
    in.push_back(d);
  }
  const bool prev = cuda::allow_tf32(), prev_cudnn = cuda::cudnn_enabled();
  cuda::set_allow_tf32(row.tf32);
  cuda::set_cudnn_enabled(row.cudnn);
  Tensor out;
  try {
    out = row.forward(in);
    out.backward(upstream(out.shape()).to(dt).to(dev));
  } catch (...) {
    cuda::set_allow_tf32(prev);
    cuda::set_cudnn_enabled(prev_cudnn);
    throw;
  }
  cuda::set_allow_tf32(prev);
  cuda::set_cudnn_enabled(prev_cudnn);
  OpResult res;
  res.out = out.detach().to(Device::cpu());
  for (const Tensor& t : in) res.grads.push_back(t.grad().defined() ? t.grad().to(Device::cpu()) : Tensor());
  return res;
}

inline void compare_tensors(const Tensor& got, const Tensor& want, Tol tol, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  check_close(got.to_vector<double>(), want.to_vector<double>(), tol, what);
}

}  // namespace peft::testing
