"""scaled_dot_product_attention cases (tests/test_attention.cpp): torch's SDPA in F32 on the
CPU with q, k, v gradients; boolean masks are stored as I64 0/1 ("mask_bool", 1 = attend),
additive ones as "mask". Metadata: is_causal "0"/"1", scale ("" = 1/sqrt(D)), gqa "0"/"1"."""
import torch
import torch.nn.functional as F

from golden_common import case, leaf, run_backward


def sdpa_case(Hq, Hkv, Tq, Tk, causal=False, scale=None, mask=None, B=2, D=8):
    q, k, v = leaf(torch.randn(B, Hq, Tq, D)), leaf(torch.randn(B, Hkv, Tk, D)), leaf(torch.randn(B, Hkv, Tk, D))
    extra = {}
    torch_mask = None
    if mask == "bool":
        m = torch.rand(B, 1, Tq, Tk) > 0.4
        m[..., 0] = True  # every row attends somewhere
        extra["mask_bool"] = m.to(torch.int64)
        torch_mask = m
    elif mask == "float":
        m = torch.randn(1, Hq, Tq, Tk)
        m[..., 1:] = torch.where(torch.rand(1, Hq, Tq, Tk - 1) < 0.3, torch.full_like(m[..., 1:], -1e9), m[..., 1:])
        extra["mask"] = m
        torch_mask = m
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=torch_mask, is_causal=causal, scale=scale,
                                         enable_gqa=Hq != Hkv)
    tensors = run_backward({"q": q, "k": k, "v": v}, {"out": out}, extra)
    meta = {"is_causal": "1" if causal else "0", "scale": "" if scale is None else repr(scale),
            "gqa": "1" if Hq != Hkv else "0"}
    return tensors, meta


case("sdpa_plain")(lambda: sdpa_case(2, 2, 5, 5))
case("sdpa_causal")(lambda: sdpa_case(2, 2, 6, 6, causal=True))
case("sdpa_causal_rect")(lambda: sdpa_case(2, 2, 3, 5, causal=True))
case("sdpa_scale")(lambda: sdpa_case(2, 2, 4, 4, scale=0.3))
case("sdpa_gqa")(lambda: sdpa_case(4, 2, 5, 5, causal=True))
case("sdpa_bool_mask")(lambda: sdpa_case(2, 2, 4, 6, mask="bool"))
case("sdpa_float_mask")(lambda: sdpa_case(2, 2, 4, 6, mask="float"))
