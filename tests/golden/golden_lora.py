"""LoRA layer cases (tests/test_lora_layers.cpp). So that the script runs on Debian's torch alone,
PEFT's LoRA math is written out here in torch, line by line after src/peft/tuners/lora/layer.py
(Linear, Embedding, _ConvNd forward), dora.py (DoraLinearLayer, DoraEmbeddingLayer,
_DoraConvNdLayer) and variants.py (Dora*Variant.forward: base_result reuse when there is no
dropout). Checked once against PEFT 0.21.2's own layers (get_peft_model with these configs and
these weights loaded): identical outputs and gradients, to the bit, for every case.

Every tensor of the LoRA layer is stored as "state_dict.<key>" under the key PEFT's layer (and
ours) gives it ("base_layer.weight", "lora_A.default.weight", "lora_embedding_A.default",
"lora_magnitude_vector.default.weight", ...), so the C++ test loads them by name. The base layer
is frozen, as get_peft_model leaves it: gradients are stored for x (float inputs) and for the
adapter parameters only. Adapter weights are random (as init_lora_weights=False) and DoRA
magnitudes are perturbed away from their initial norms, so every term of the math matters;
"weight_norm" is ||W + s·B·A|| as PEFT computes it when it initialises the magnitude.
Layer configurations are repeated in the C++ test next to the case name.
"""
import math

import torch
import torch.nn.functional as F

from golden_common import case, leaf

ADAPTER = "default"


def key(container, param="weight"):
    return "%s.%s.%s" % (container, ADAPTER, param) if param else "%s.%s" % (container, ADAPTER)


def run_lora(params, trainable, x, forward, extra_fn=None):
    """params: state-dict key -> tensor; trainable: keys that get gradients; forward(p, x) -> out;
    extra_fn(p) -> dict of further tensors to store."""
    p = {k: (leaf(v) if k in trainable else v.detach().clone()) for k, v in params.items()}
    xin = leaf(x) if x.is_floating_point() else x
    out = forward(p, xin)
    grad_out = torch.randn(out.shape)
    out.backward(grad_out)
    tensors = {"x": xin.detach(), "out": out.detach(), "grad_out": grad_out}
    if x.is_floating_point():
        tensors["grad.x"] = xin.grad
    for k, v in p.items():
        tensors["state_dict." + k] = v.detach()
        if k in trainable:
            assert v.grad is not None, k
            tensors["grad." + k] = v.grad
    for k, v in (extra_fn(p) if extra_fn else {}).items():
        tensors[k] = v.detach()
    return tensors


def scaling(r, alpha, use_rslora=False):
    return alpha / math.sqrt(r) if use_rslora else alpha / r


# ---------------------------------------------------------------- Linear

def linear_params(in_f, out_f, r, bias=True, lora_bias=False):
    base = torch.nn.Linear(in_f, out_f, bias=bias)
    p = {"base_layer.weight": base.weight}
    if bias:
        p["base_layer.bias"] = base.bias
    p[key("lora_A")] = torch.randn(r, in_f) / math.sqrt(in_f)
    p[key("lora_B")] = torch.randn(out_f, r) / math.sqrt(r)
    if lora_bias:
        p[key("lora_B", "bias")] = torch.randn(out_f)
    return p


def lora_linear_forward(s):
    def fwd(p, x):
        # Linear.forward, vanilla LoRA, dropout = Identity
        result = F.linear(x, p["base_layer.weight"], p.get("base_layer.bias"))
        lora_A = lambda h: F.linear(h, p[key("lora_A")])  # noqa: E731
        lora_B = lambda h: F.linear(h, p[key("lora_B")], p.get(key("lora_B", "bias")))  # noqa: E731
        return result + lora_B(lora_A(x)) * s
    return fwd


def adapter_keys(p):
    return {k for k in p if k.startswith("lora_")}


@case("lora_linear")
def _lora_linear():  # Linear(6, 4), r=3, lora_alpha=6
    p = linear_params(6, 4, 3)
    return run_lora(p, adapter_keys(p), torch.randn(2, 3, 6), lora_linear_forward(scaling(3, 6)))


@case("lora_linear_rslora")
def _lora_linear_rslora():  # Linear(5, 4), r=4, lora_alpha=3, use_rslora: s = 3/√4
    p = linear_params(5, 4, 4)
    return run_lora(p, adapter_keys(p), torch.randn(3, 5), lora_linear_forward(scaling(4, 3, use_rslora=True)))


@case("lora_linear_lora_bias")
def _lora_linear_lora_bias():  # Linear(5, 3), r=2, lora_alpha=5, lora_bias
    p = linear_params(5, 3, 2, lora_bias=True)
    return run_lora(p, adapter_keys(p), torch.randn(4, 5), lora_linear_forward(scaling(2, 5)))


# ---------------------------------------------------------------- Conv2d

def conv_params(in_c, out_c, k, r, bias=True, lora_bias=False, groups=1, **conv):
    base = torch.nn.Conv2d(in_c, out_c, k, groups=groups, bias=bias, **conv)
    p = {"base_layer.weight": base.weight}
    if bias:
        p["base_layer.bias"] = base.bias
    kh, kw = base.kernel_size
    # lora_A = Conv2d(in, r, kernel, stride, padding, bias=False); lora_B = Conv2d(r, out, 1, groups=groups)
    p[key("lora_A")] = torch.randn(r, in_c, kh, kw) / math.sqrt(in_c * kh * kw)
    p[key("lora_B")] = torch.randn(out_c, r // groups, 1, 1) / math.sqrt(r // groups)
    if lora_bias:
        p[key("lora_B", "bias")] = torch.randn(out_c)
    return p


def lora_conv_forward(s, stride=1, padding=0, dilation=1, groups=1):
    def fwd(p, x):
        # _ConvNd.forward, vanilla LoRA, dropout = Identity
        result = F.conv2d(x, p["base_layer.weight"], p.get("base_layer.bias"), stride, padding, dilation, groups)
        after_A = F.conv2d(x, p[key("lora_A")], None, stride, padding)
        return result + F.conv2d(after_A, p[key("lora_B")], p.get(key("lora_B", "bias")), groups=groups) * s
    return fwd


@case("lora_conv2d_3x3")
def _lora_conv2d_3x3():  # Conv2d(4, 6, 3, stride=2, padding=1), r=2, lora_alpha=4
    p = conv_params(4, 6, 3, 2, stride=2, padding=1)
    return run_lora(p, adapter_keys(p), torch.randn(2, 4, 7, 6), lora_conv_forward(scaling(2, 4), stride=2, padding=1))


@case("lora_conv2d_1x1")
def _lora_conv2d_1x1():  # Conv2d(5, 7, 1, bias=False), r=3, lora_alpha=6 (the fused lora_linear path)
    p = conv_params(5, 7, 1, 3, bias=False)
    return run_lora(p, adapter_keys(p), torch.randn(2, 5, 4, 3), lora_conv_forward(scaling(3, 6)))


@case("lora_conv2d_1x1_lora_bias")
def _lora_conv2d_1x1_lora_bias():  # Conv2d(5, 7, 1), r=3, lora_alpha=4, lora_bias (fused path + LoRA bias)
    p = conv_params(5, 7, 1, 3, lora_bias=True)
    return run_lora(p, adapter_keys(p), torch.randn(2, 5, 3, 4), lora_conv_forward(scaling(3, 4)))


@case("lora_conv2d_groups2")
def _lora_conv2d_groups2():  # Conv2d(4, 6, 3, padding=1, groups=2), r=4, lora_alpha=4
    p = conv_params(4, 6, 3, 4, groups=2, padding=1)
    return run_lora(p, adapter_keys(p), torch.randn(2, 4, 5, 5), lora_conv_forward(scaling(4, 4), padding=1, groups=2))


# ---------------------------------------------------------------- Embedding

def embedding_params(num, dim, r):
    base = torch.nn.Embedding(num, dim)
    return {"base_layer.weight": base.weight, key("lora_embedding_A", None): torch.randn(r, num),
            key("lora_embedding_B", None): torch.randn(dim, r)}


def lora_embedding_forward(s, padding_idx=None):
    def fwd(p, ids):
        # Embedding.forward, vanilla LoRA (no dropout); _embed uses the base's padding_idx
        result = F.embedding(ids, p["base_layer.weight"], padding_idx)
        embedding_A = p[key("lora_embedding_A", None)].T
        embedding_B = p[key("lora_embedding_B", None)].T
        after_A = F.embedding(ids, embedding_A, padding_idx)
        return result + (after_A @ embedding_B) * s
    return fwd


EMBEDDING_IDS = torch.tensor([[1, 2, 4, 2], [7, 9, 0, 4]], dtype=torch.int64)


@case("lora_embedding")
def _lora_embedding():  # Embedding(10, 5, padding_idx=2), r=3, lora_alpha=6
    p = embedding_params(10, 5, 3)
    with torch.no_grad():
        p["base_layer.weight"][2].zero_()  # nn.Embedding's padding row
    return run_lora(p, adapter_keys(p), EMBEDDING_IDS, lora_embedding_forward(scaling(3, 6), padding_idx=2))


# ---------------------------------------------------------------- DoRA

MAG = key("lora_magnitude_vector")


def perturbed(norm):
    return norm * (1 + 0.1 * torch.randn(norm.shape))


def dora_linear_norm(p, s):
    # DoraLinearLayer.get_weight_norm (fan_in_fan_out=False) with lora_weight = B @ A
    weight = p["base_layer.weight"] + s * (p[key("lora_B")] @ p[key("lora_A")])
    return torch.linalg.norm(weight, dim=1)


def dora_linear_forward(s):
    def fwd(p, x):
        W, b = p["base_layer.weight"], p.get("base_layer.bias")
        A, B = p[key("lora_A")], p[key("lora_B")]
        result = F.linear(x, W, b)
        # DoraLinearVariant.forward: dropout is Identity → base_result = result
        x_eye = torch.eye(A.shape[1], dtype=x.dtype)
        lora_weight = F.linear(F.linear(x_eye, A), B).T
        weight_norm = torch.linalg.norm(W + s * lora_weight.detach(), dim=1).detach()
        mag_norm_scale = (p[MAG] / weight_norm).view(1, -1)
        lora_result = F.linear(F.linear(x, A), B)
        base_result = result - b if b is not None else result
        return result + ((mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * s)
    return fwd


def dora_linear_case(in_f, out_f, r, alpha, x, bias=True):
    s = scaling(r, alpha)
    p = linear_params(in_f, out_f, r, bias=bias)
    p[MAG] = perturbed(dora_linear_norm(p, s))
    return run_lora(p, adapter_keys(p), x, dora_linear_forward(s), lambda q: {"weight_norm": dora_linear_norm(q, s)})


@case("lora_dora_linear")
def _lora_dora_linear():  # Linear(6, 5), r=3, lora_alpha=3, use_dora
    return dora_linear_case(6, 5, 3, 3, torch.randn(2, 3, 6))


@case("lora_dora_linear_nobias")
def _lora_dora_linear_nobias():  # Linear(4, 3, bias=False), r=2, lora_alpha=4, use_dora
    return dora_linear_case(4, 3, 2, 4, torch.randn(5, 4), bias=False)


def dora_conv_lora_weight(p):
    A, B, W = p[key("lora_A")], p[key("lora_B")], p["base_layer.weight"]
    r = A.shape[0]
    return torch.mm(B.view([-1, r]), A.view([r, -1])).reshape(W.shape)


def dora_conv_norm(p, s, lora_weight):
    # _DoraConvNdLayer.get_weight_norm → (1, out, 1, 1)
    weight = p["base_layer.weight"] + s * lora_weight
    return weight.norm(p=2, dim=(1, 2, 3), keepdim=True).transpose(1, 0)


@case("lora_dora_conv2d")
def _lora_dora_conv2d():  # Conv2d(4, 6, 3, padding=1), r=2, lora_alpha=4, use_dora
    s = scaling(2, 4)
    p = conv_params(4, 6, 3, 2, padding=1)
    p[MAG] = perturbed(dora_conv_norm(p, s, dora_conv_lora_weight(p)))

    def fwd(q, x):
        W, b = q["base_layer.weight"], q["base_layer.bias"]
        result = F.conv2d(x, W, b, 1, 1)
        lora_weight = dora_conv_lora_weight(q)
        weight_norm = dora_conv_norm(q, s, lora_weight.detach()).detach()
        mag_norm_scale = q[MAG] / weight_norm
        base_result = result - b.view(1, -1, 1, 1)  # _DoraConvNdLayer.forward, base_result given
        lora = F.conv2d(F.conv2d(x, q[key("lora_A")], None, 1, 1), q[key("lora_B")])
        return result + ((mag_norm_scale - 1) * base_result + mag_norm_scale * lora * s)

    return run_lora(p, adapter_keys(p), torch.randn(2, 4, 5, 5), fwd,
                    lambda q: {"weight_norm": dora_conv_norm(q, s, dora_conv_lora_weight(q))})


def dora_embedding_norm(p, s):
    # DoraEmbeddingLayer (fan_in_fan_out=True): ||Wᵀ + s·B·A|| over dim 1 → (dim)
    lora_weight = p[key("lora_embedding_B", None)] @ p[key("lora_embedding_A", None)]
    return torch.linalg.norm(p["base_layer.weight"].T + s * lora_weight, dim=1)


@case("lora_dora_embedding")
def _lora_dora_embedding():  # Embedding(10, 5), r=3, lora_alpha=3, use_dora
    s = scaling(3, 3)
    p = embedding_params(10, 5, 3)
    p[MAG] = perturbed(dora_embedding_norm(p, s))

    def fwd(q, ids):
        result = F.embedding(ids, q["base_layer.weight"])
        embedding_A = q[key("lora_embedding_A", None)].T
        embedding_B = q[key("lora_embedding_B", None)].T
        lora_weight = (embedding_A @ embedding_B).T
        weight_norm = torch.linalg.norm(q["base_layer.weight"].T + s * lora_weight.detach(), dim=1).detach()
        mag_norm_scale = q[MAG] / weight_norm
        result_dora = mag_norm_scale * (F.embedding(ids, embedding_A) @ embedding_B) * s
        return mag_norm_scale * result + result_dora  # DoraEmbeddingVariant.forward

    return run_lora(p, adapter_keys(p), EMBEDDING_IDS, fwd, lambda q: {"weight_norm": dora_embedding_norm(q, s)})
