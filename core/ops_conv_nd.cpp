// conv1d and conv3d, both built on conv2d (core/ops_conv.cpp) rather than on kernels of their own:
//  - conv1d is a conv2d over a unit height: (N, C, L) → (N, C, 1, L) is a view, so no data moves.
//  - conv3d is a sum over the kernel's depth taps. For tap j, the input depth planes that tap reads
//    for every output depth (d·sd − pd + j·dd) are a strided slice of the depth-padded input; folding
//    that slice into the batch gives an ordinary 2-D convolution with the weight's tap-j plane:
//      y[:, :, d] = Σ_j conv2d(x_pad[:, :, d·sd + j·dd], W[:, :, j])
//    That costs kd conv2d calls on N·Do images (the FLOPs of a direct 3-D convolution) plus kd
//    copies of the input slices, and inherits conv2d's CPU kernels, cuDNN path and gradients.
#include "core/ops.h"
#include "core/profiler.h"

namespace peft {

namespace {

// One value per spatial dimension: empty → `dflt`, a single value → repeated.
std::vector<int64_t> per_dim(const std::vector<int64_t>& v, size_t dims, int64_t dflt, const char* op, const char* what) {
  if (v.empty()) return std::vector<int64_t>(dims, dflt);
  if (v.size() == 1) return std::vector<int64_t>(dims, v[0]);
  PEFT_CHECK(v.size() == dims, op, ": ", what, " needs 1 or ", dims, " values, got ", v.size());
  return v;
}

struct Resolved {
  std::vector<int64_t> stride, padding, dilation;
};

Resolved resolve(const ConvNdOptions& o, size_t dims, const char* op) {
  Resolved r{per_dim(o.stride, dims, 1, op, "stride"), per_dim(o.padding, dims, 0, op, "padding"),
             per_dim(o.dilation, dims, 1, op, "dilation")};
  for (size_t i = 0; i < dims; ++i)
    PEFT_CHECK(r.stride[i] > 0 && r.dilation[i] > 0 && r.padding[i] >= 0, op,
               ": stride and dilation must be positive and padding non-negative, got stride ", shape_str(r.stride),
               ", padding ", shape_str(r.padding), ", dilation ", shape_str(r.dilation));
  return r;
}

// The checks PyTorch makes, with this op's name and shapes (conv2d would name itself otherwise).
void check_shapes(const char* op, const Tensor& x, const Tensor& w, const Tensor& b, int64_t groups, int64_t dims) {
  const int64_t rank = dims + 2;
  PEFT_CHECK(x.dim() == rank, op, ": expected ", rank, "-D input (N, C, ...), got ", shape_str(x.shape()));
  PEFT_CHECK(w.dim() == rank, op, ": expected ", rank, "-D weight (O, C/groups, ...), got ", shape_str(w.shape()));
  const int64_t C = x.size(1), O = w.size(0);
  PEFT_CHECK(groups >= 1 && C % groups == 0 && O % groups == 0, op, ": groups ", groups, " must divide in_channels ", C,
             " and out_channels ", O);
  PEFT_CHECK(w.size(1) * groups == C, op, ": weight of shape ", shape_str(w.shape()), " with groups=", groups,
             " expects input to have ", w.size(1) * groups, " channels, but got input of shape ", shape_str(x.shape()));
  PEFT_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == O), op, ": bias shape ", shape_str(b.shape()),
             " does not match ", O, " output channels");
}

}  // namespace

Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b, const ConvNdOptions& o) {
  PEFT_PROFILE_OP("conv1d", x);
  check_shapes("conv1d", x, w, b, o.groups, 1);
  const Resolved r = resolve(o, 1, "conv1d");
  const int64_t L = x.size(2), k = w.size(2);
  const int64_t Lo = (L + 2 * r.padding[0] - r.dilation[0] * (k - 1) - 1) / r.stride[0] + 1;
  PEFT_CHECK(L + 2 * r.padding[0] - r.dilation[0] * (k - 1) - 1 >= 0 && Lo > 0, "conv1d: input of size ",
             shape_str(x.shape()), " is too small for kernel ", k, " with padding ", r.padding[0], " and dilation ",
             r.dilation[0]);
  Conv2dOptions o2;
  o2.stride = {1, r.stride[0]};
  o2.padding = {0, r.padding[0]};
  o2.dilation = {1, r.dilation[0]};
  o2.groups = o.groups;
  return conv2d(x.unsqueeze(2), w.unsqueeze(2), b, o2).squeeze(2);
}

Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const ConvNdOptions& o) {
  PEFT_PROFILE_OP("conv3d", x);
  check_shapes("conv3d", x, w, b, o.groups, 3);
  const Resolved r = resolve(o, 3, "conv3d");
  const int64_t N = x.size(0), C = x.size(1), D = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t kd = w.size(2), sd = r.stride[0], pd = r.padding[0], dd = r.dilation[0];
  const int64_t span = D + 2 * pd - dd * (kd - 1) - 1;  // last start position of the depth window
  PEFT_CHECK(span >= 0, "conv3d: input of size ", shape_str(x.shape()), " is too small for kernel depth ", kd,
             " with padding ", pd, " and dilation ", dd);
  const int64_t Do = span / sd + 1;
  // Depth first, so a tap's planes (N, Do, C, H, W) fold into N·Do images with one reshape.
  Tensor xt = x.permute({0, 2, 1, 3, 4});
  if (pd > 0) {
    Tensor z = Tensor::zeros({N, pd, C, H, W}, x.dtype(), x.device());
    xt = cat({z, xt, z}, 1);
  }
  Conv2dOptions o2;
  o2.stride = {r.stride[1], r.stride[2]};
  o2.padding = {r.padding[1], r.padding[2]};
  o2.dilation = {r.dilation[1], r.dilation[2]};
  o2.groups = o.groups;
  Tensor y;
  for (int64_t j = 0; j < kd; ++j) {
    const int64_t start = j * dd;
    Tensor planes = xt.slice(1, start, start + (Do - 1) * sd + 1, sd).contiguous().reshape({N * Do, C, H, W});
    // The bias joins once, with the first tap.
    Tensor yj = conv2d(planes, w.select(2, j), j == 0 ? b : Tensor(), o2);
    y = j == 0 ? yj : add(y, yj);
  }
  const int64_t O = w.size(0), Ho = y.size(2), Wo = y.size(3);
  return y.reshape({N, Do, O, Ho, Wo}).permute({0, 2, 1, 3, 4}).contiguous();
}

}  // namespace peft
