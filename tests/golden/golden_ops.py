"""Op cases: one file per functional op configuration (tests/test_golden_ops.cpp).

Inputs are small and away from an op's singular points (log/sqrt/pow/div on positive or
non-zero values), so a case checks the op and not float32 rounding at a kink.
"""
import torch
import torch.nn.functional as F

from golden_common import case, leaf, run_backward


def randn(*shape):
    return torch.randn(*shape)


def positive(*shape):
    return torch.rand(*shape) * 2 + 0.5  # [0.5, 2.5)


def nonzero(*shape):
    return (torch.rand(*shape) + 0.5) * torch.sign(torch.randn(*shape))  # |v| in [0.5, 1.5)


def unary(fn, x):
    x = leaf(x)
    return run_backward({"x": x}, {"out": fn(x)})


def binary(fn, a, b):
    a, b = leaf(a), leaf(b)
    return run_backward({"a": a, "b": b}, {"out": fn(a, b)})


# ---- elementwise with broadcasting

case("add_broadcast")(lambda: binary(torch.add, randn(2, 3, 4), randn(3, 1)))
case("sub_broadcast")(lambda: binary(torch.sub, randn(4, 1), randn(2, 1, 5)))
case("mul_broadcast")(lambda: binary(torch.mul, randn(2, 3, 4), randn(4)))
case("div_broadcast")(lambda: binary(torch.div, randn(3, 4), nonzero(2, 1, 4)))
case("div_scalar_tensor")(lambda: binary(torch.div, randn(1), nonzero(2, 3)))  # a (1,) against (2, 3)
# Scalars in the C++ test: out = (x * 2.5 + (-1.25)) / 4.
case("mul_add_scalar")(lambda: unary(lambda x: (x * 2.5 + (-1.25)) / 4, randn(3, 5)))

# ---- unary

case("neg")(lambda: unary(torch.neg, randn(3, 4)))
case("exp")(lambda: unary(torch.exp, randn(3, 4)))
case("log")(lambda: unary(torch.log, positive(3, 4)))
case("sqrt")(lambda: unary(torch.sqrt, positive(3, 4)))
case("abs")(lambda: unary(torch.abs, nonzero(3, 4)))
case("relu")(lambda: unary(torch.relu, randn(4, 5)))
case("gelu_erf")(lambda: unary(lambda x: F.gelu(x, approximate="none"), randn(4, 5) * 2))
case("gelu_tanh")(lambda: unary(lambda x: F.gelu(x, approximate="tanh"), randn(4, 5) * 2))
case("sigmoid")(lambda: unary(torch.sigmoid, randn(4, 5) * 2))
case("tanh")(lambda: unary(torch.tanh, randn(4, 5) * 2))
# Exponents in the C++ test: 3 (any sign), 2.5 and -1.5 (positive base).
case("pow_scalar_3")(lambda: unary(lambda x: torch.pow(x, 3.0), randn(3, 4)))
case("pow_scalar_2_5")(lambda: unary(lambda x: torch.pow(x, 2.5), positive(3, 4)))
case("pow_scalar_neg_1_5")(lambda: unary(lambda x: torch.pow(x, -1.5), positive(3, 4)))
case("pow_tensor")(lambda: binary(torch.pow, positive(2, 3, 4), randn(3, 4)))

# ---- softmax family

case("softmax_dim1")(lambda: unary(lambda x: torch.softmax(x, 1), randn(4, 6) * 2))
case("log_softmax_dim1")(lambda: unary(lambda x: torch.log_softmax(x, 1), randn(4, 6) * 2))
case("softmax_3d_dim1")(lambda: unary(lambda x: torch.softmax(x, 1), randn(2, 5, 3) * 2))
case("log_softmax_3d_dim1")(lambda: unary(lambda x: torch.log_softmax(x, 1), randn(2, 5, 3) * 2))
case("softmax_3d_dim_last")(lambda: unary(lambda x: torch.softmax(x, -1), randn(2, 3, 5) * 2))

# ---- matmul / linear

case("matmul_2d")(lambda: binary(torch.matmul, randn(3, 4), randn(4, 5)))
case("matmul_batched_broadcast")(lambda: binary(torch.matmul, randn(2, 1, 3, 4), randn(3, 4, 5)))
case("matmul_batched_2d")(lambda: binary(torch.matmul, randn(2, 3, 4), randn(4, 5)))
case("matmul_1d_1d")(lambda: binary(torch.matmul, randn(4), randn(4)))
case("matmul_1d_2d")(lambda: binary(torch.matmul, randn(4), randn(4, 5)))
case("matmul_2d_1d")(lambda: binary(torch.matmul, randn(3, 4), randn(4)))
case("matmul_3d_1d")(lambda: binary(torch.matmul, randn(2, 3, 4), randn(4)))
case("matmul_1d_3d")(lambda: binary(torch.matmul, randn(4), randn(2, 4, 5)))


@case("linear_bias_3d")
def _linear_bias():
    x, w, b = leaf(randn(2, 3, 6)), leaf(randn(4, 6)), leaf(randn(4))
    return run_backward({"x": x, "weight": w, "bias": b}, {"out": F.linear(x, w, b)})


@case("linear_nobias")
def _linear_nobias():
    x, w = leaf(randn(5, 6)), leaf(randn(4, 6))
    return run_backward({"x": x, "weight": w}, {"out": F.linear(x, w)})


# ---- reductions

case("sum_all")(lambda: unary(torch.sum, randn(3, 4)))
case("sum_dim1")(lambda: unary(lambda x: torch.sum(x, [1]), randn(2, 3, 4)))
case("sum_dims02_keepdim")(lambda: unary(lambda x: torch.sum(x, [0, 2], keepdim=True), randn(2, 3, 4)))
case("mean_all")(lambda: unary(torch.mean, randn(3, 4)))
case("mean_dim_last_keepdim")(lambda: unary(lambda x: torch.mean(x, [-1], keepdim=True), randn(2, 3, 4)))
case("mean_dims02")(lambda: unary(lambda x: torch.mean(x, [0, 2]), randn(2, 3, 4)))
case("max_all")(lambda: unary(torch.max, randn(3, 4)))


def _max_dim(dim, keepdim):
    x = leaf(randn(3, 4, 5))
    values, indices = torch.max(x, dim, keepdim=keepdim)
    return run_backward({"x": x}, {"values": values, "indices": indices})


case("max_dim1")(lambda: _max_dim(1, False))
case("max_dim_last_keepdim")(lambda: _max_dim(-1, True))

# ---- shape ops


@case("cat_dim1")
def _cat():
    a, b, c = leaf(randn(2, 1, 3)), leaf(randn(2, 4, 3)), leaf(randn(2, 2, 3))
    return run_backward({"a": a, "b": b, "c": c}, {"out": torch.cat([a, b, c], 1)})


@case("stack_dim1")
def _stack():
    a, b = leaf(randn(2, 3)), leaf(randn(2, 3))
    return run_backward({"a": a, "b": b}, {"out": torch.stack([a, b], 1)})


@case("split_size2_dim1")
def _split():
    x = leaf(randn(3, 5, 2))
    parts = torch.split(x, 2, 1)  # sizes 2, 2, 1
    return run_backward({"x": x}, {"out.%d" % i: p for i, p in enumerate(parts)})


# ---- losses (the upstream gradient of a reduced loss is a random scalar)

def _class_targets(n, classes, ignore_index, ignored_rows):
    target = torch.randint(0, classes, (n,))
    for r in ignored_rows:
        target[r] = ignore_index
    return target


def _loss(kind, reduction, ignore_index):
    logits = randn(6, 5) * 2
    x = leaf(torch.log_softmax(logits, 1) if kind == "nll" else logits)
    ignored = [] if ignore_index is None else [1, 4]
    target = _class_targets(6, 5, -100 if ignore_index is None else ignore_index, ignored)
    fn = F.nll_loss if kind == "nll" else F.cross_entropy
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    out = fn(x, target, reduction=reduction, **kw)
    return run_backward({"x": x}, {"out": out}, {"target": target})


# ignore_index: None = PyTorch's default -100 with no ignored rows; 2 (a valid class) and -100
# with rows 1 and 4 set to it.
case("nll_loss_mean")(lambda: _loss("nll", "mean", None))
case("nll_loss_mean_ignore")(lambda: _loss("nll", "mean", -100))
case("nll_loss_sum_ignore2")(lambda: _loss("nll", "sum", 2))
case("nll_loss_none_ignore")(lambda: _loss("nll", "none", -100))
case("cross_entropy_mean")(lambda: _loss("ce", "mean", None))
case("cross_entropy_mean_ignore2")(lambda: _loss("ce", "mean", 2))
case("cross_entropy_sum_ignore")(lambda: _loss("ce", "sum", -100))
case("cross_entropy_none_ignore2")(lambda: _loss("ce", "none", 2))


def _mse(reduction):
    a, b = leaf(randn(3, 4)), leaf(randn(3, 4))
    return run_backward({"x": a, "target": b}, {"out": F.mse_loss(a, b, reduction=reduction)})


case("mse_loss_mean")(lambda: _mse("mean"))
case("mse_loss_sum")(lambda: _mse("sum"))
case("mse_loss_none")(lambda: _mse("none"))

# ---- embedding


def _embedding(padding_idx):
    w = leaf(randn(10, 4))
    ids = torch.tensor([[0, 3, 3, 9, 2], [2, 0, 7, 3, 1]], dtype=torch.int64)  # repeats, padding 0
    out = F.embedding(ids, w, padding_idx=padding_idx)
    return run_backward({"weight": w}, {"out": out}, {"ids": ids})


case("embedding")(lambda: _embedding(None))
case("embedding_padding_idx0")(lambda: _embedding(0))

# ---- conv2d. Options are repeated in the C++ test next to the case name.


def _conv(n, cin, h, w, cout, k, stride=1, padding=0, dilation=1, groups=1, bias=True):
    x = leaf(randn(n, cin, h, w))
    kh, kw = (k, k) if isinstance(k, int) else k
    wt = leaf(randn(cout, cin // groups, kh, kw) * 0.5)
    inputs = {"x": x, "weight": wt}
    b = None
    if bias:
        b = leaf(randn(cout))
        inputs["bias"] = b
    out = F.conv2d(x, wt, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return run_backward(inputs, {"out": out})


case("conv2d_3x3")(lambda: _conv(2, 3, 7, 6, 4, 3))
case("conv2d_kernel3x2_stride2x1_pad1x2")(lambda: _conv(2, 3, 7, 6, 4, (3, 2), stride=(2, 1), padding=(1, 2)))
case("conv2d_dilation2x1_pad2")(lambda: _conv(1, 2, 8, 7, 3, 3, dilation=(2, 1), padding=2))
case("conv2d_groups2_stride2_pad1")(lambda: _conv(2, 4, 7, 7, 6, 3, stride=2, padding=1, groups=2))
case("conv2d_depthwise")(lambda: _conv(1, 4, 6, 5, 8, (2, 3), padding=(1, 0), groups=4))
case("conv2d_1x1_nobias")(lambda: _conv(2, 5, 4, 3, 3, 1, bias=False))
case("conv2d_all_options")(lambda: _conv(2, 6, 9, 8, 3, (2, 3), stride=(2, 1), padding=(2, 1), dilation=(1, 2),
                                          groups=3))

# ---- pooling


def _avg_pool(h, w, k, stride, padding, ceil_mode, count_include_pad):
    x = leaf(randn(2, 3, h, w))
    out = F.avg_pool2d(x, k, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    return run_backward({"x": x}, {"out": out})


case("avg_pool2d_k2")(lambda: _avg_pool(6, 6, 2, 2, 0, False, True))
case("avg_pool2d_k3_s2_pad1_include")(lambda: _avg_pool(7, 6, 3, 2, 1, False, True))
case("avg_pool2d_k3_s2_pad1_exclude")(lambda: _avg_pool(7, 6, 3, 2, 1, False, False))
case("avg_pool2d_k3_s2_pad1_ceil_include")(lambda: _avg_pool(8, 7, 3, 2, 1, True, True))
case("avg_pool2d_k3_s2_pad1_ceil_exclude")(lambda: _avg_pool(8, 7, 3, 2, 1, True, False))
case("avg_pool2d_k2_s2_ceil")(lambda: _avg_pool(5, 5, 2, 2, 0, True, True))
case("avg_pool2d_k3x2_s2x1")(lambda: _avg_pool(7, 5, (3, 2), (2, 1), 0, False, True))
case("adaptive_avg_pool2d_1x1")(lambda: unary(lambda x: F.adaptive_avg_pool2d(x, 1), randn(2, 3, 4, 5)))

# ---- normalisation


@case("group_norm_3groups")
def _group_norm():
    x, w, b = leaf(randn(2, 6, 4, 3)), leaf(randn(6)), leaf(randn(6))
    return run_backward({"x": x, "weight": w, "bias": b}, {"out": F.group_norm(x, 3, w, b, 1e-5)})


@case("group_norm_noaffine_3d")
def _group_norm_noaffine():
    x = leaf(randn(3, 4, 5) * 3 + 1)
    return run_backward({"x": x}, {"out": F.group_norm(x, 2, eps=1e-5)})


@case("layer_norm_1dim")
def _layer_norm1():
    x, w, b = leaf(randn(2, 3, 5) * 2 + 1), leaf(randn(5)), leaf(randn(5))
    return run_backward({"x": x, "weight": w, "bias": b}, {"out": F.layer_norm(x, [5], w, b, 1e-5)})


@case("layer_norm_2dims")
def _layer_norm2():
    x, w, b = leaf(randn(2, 3, 5)), leaf(randn(3, 5)), leaf(randn(3, 5))
    return run_backward({"x": x, "weight": w, "bias": b}, {"out": F.layer_norm(x, [3, 5], w, b, 1e-5)})


@case("layer_norm_noaffine")
def _layer_norm_noaffine():
    x = leaf(randn(4, 6))
    return run_backward({"x": x}, {"out": F.layer_norm(x, [6], eps=1e-5)})


# ---- LSTM (the op: parameters under PyTorch's names, in _flat_weights order)


def _lstm(num_layers, batch_first, with_state, bias=True):
    seq, batch, inp, hid = 4, 3, 5, 6
    ref = torch.nn.LSTM(inp, hid, num_layers, bias=bias, batch_first=batch_first)
    x = leaf(randn(batch, seq, inp) if batch_first else randn(seq, batch, inp))
    inputs = {"x": x}
    inputs.update(ref.named_parameters())  # leaves, in _flat_weights order
    hx = None
    if with_state:
        hx = (leaf(randn(num_layers, batch, hid)), leaf(randn(num_layers, batch, hid)))
        inputs.update({"h0": hx[0], "c0": hx[1]})
    out, (h_n, c_n) = ref(x, hx)
    return run_backward(inputs, {"out": out, "h_n": h_n, "c_n": c_n})


case("lstm_2layers_seq_first")(lambda: _lstm(2, False, False))
case("lstm_2layers_seq_first_state")(lambda: _lstm(2, False, True))
case("lstm_2layers_batch_first")(lambda: _lstm(2, True, False))
case("lstm_2layers_batch_first_state")(lambda: _lstm(2, True, True))
case("lstm_1layer_nobias_state")(lambda: _lstm(1, False, True, bias=False))

# ---- strided views, shared inputs and large magnitudes: inputs that reach the kernels as
# non-contiguous views, a leaf used twice (gradient accumulation), and values where a naive
# softmax or variance would lose precision.

case("mul_self_accumulate")(lambda: unary(lambda x: x * x + x, randn(3, 4)))
case("matmul_transposed_b")(lambda: binary(lambda a, b: torch.matmul(a, b.t()), randn(3, 4), randn(5, 4)))
case("softmax_transposed")(lambda: unary(lambda x: torch.softmax(x.t(), 1), randn(5, 4)))
case("sum_transposed_dim0")(lambda: unary(lambda x: torch.sum(x.t(), [0]), randn(3, 4)))
case("linear_1d")(lambda: binary(F.linear, randn(6), randn(4, 6)))  # a: x (6), b: weight (4, 6)
case("log_softmax_large_logits")(lambda: unary(lambda x: torch.log_softmax(x, 1), randn(4, 6) * 50))


@case("cross_entropy_large_logits")
def _cross_entropy_large():
    x, target = leaf(randn(4, 6) * 50), torch.tensor([0, 3, 5, 1])
    return run_backward({"x": x}, {"out": F.cross_entropy(x, target)}, {"target": target})


case("layer_norm_offset50")(lambda: unary(lambda x: F.layer_norm(x, [8]), randn(3, 8) * 0.5 + 50))
case("group_norm_1group")(lambda: unary(lambda x: F.group_norm(x, 1), randn(2, 4, 3, 3)))  # PoolFormer's norm
case("adaptive_avg_pool2d_3d")(lambda: unary(lambda x: F.adaptive_avg_pool2d(x, 1), randn(3, 4, 5)))


@case("view_chain")
def _view_chain():
    """permute → strided slice → select → expand → reshape, then a broadcast multiply."""
    x = leaf(randn(3, 4, 5))
    y = x.permute(2, 0, 1)[1:5:2]  # (2, 3, 4), strided
    y = y.select(2, 1).unsqueeze(-1).expand(2, 3, 4)  # (2, 3) → (2, 3, 4)
    out = (y * x[:2, :3, :4]).reshape(-1)
    return run_backward({"x": x}, {"out": out})


@case("conv2d_channels_last_input")
def _conv_channels_last():
    x, w, b = leaf(randn(2, 5, 6, 3)), leaf(randn(4, 3, 3, 3) * 0.5), leaf(randn(4))  # x stored NHWC
    out = F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=1)
    return run_backward({"x": x, "weight": w, "bias": b}, {"out": out})
