"""PEFT 0.21.2's LoRA on transformers' Conv1D (GPT-2's projections) for tests/test_lora_conv1d.cpp.

    /tmp/venv/bin/python tests/golden/golden_peft_conv1d_mha.py

A tiny GPT-2-like block (TinyGPT: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj are Conv1D, head is
an nn.Linear) gets a PEFT adapter per case; lora_A / lora_B (and DoRA's magnitude) are then set to
seeded random values, as after training, and saved with save_pretrained. Writes
tests/golden/data/peft_conv1d_mha/<case>/ (adapter_model.safetensors, adapter_config.json) and
<case>.safetensors holding:
  base.<key>          the base model's state dict (the C++ side builds the model from it)
  x, g                an input (2, 5, 8) and the output cotangent used for the backward
  out_base            the base model's output
  grad_base.<key>     d(sum(out_base·g)) / d(base parameter), and grad_base.x (the plain Conv1D backward)
  out_lora            the adapted model's output
  out_disabled        the output inside disable_adapter()
  grad.<peft key>     d(sum(out_lora·g)) / d(lora parameter), PEFT's state-dict names
  out_merged          the output after merge_adapter()
  merged.<key>        the base weights then (the (in, out) Conv1D layout)
  init.<peft key>     (pissa only) lora_A / lora_B right after get_peft_model, and
  residual.<key>      the base weight PiSSA left (W - scaling·(B·A)ᵀ, in Conv1D's layout)
The header's __metadata__ "warnings" lists PEFT's fan_in_fan_out warnings in order (JSON).

Case "mha" (tests/test_lora_mha.cpp): TinyAttn, a batch-first nn.MultiheadAttention (8 wide, 2 heads)
and a Linear head, with PEFT's lora.MultiheadAttention on "mha"; the same tensors (no grad_base / init /
residual, no warnings), merged.mha.in_proj_weight / merged.mha.out_proj.weight, and out_unloaded (the
model merge_and_unload returns).
"""
import json
import os
import sys
import warnings
import zlib

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
from make_golden import write_safetensors  # noqa: E402

from peft import LoraConfig, get_peft_model  # noqa: E402

OUT = os.path.join(HERE, "data", "peft_conv1d_mha")


class TinyGPT(nn.Module):
    """h = x + c_proj(q·σ(k) + v) with (q, k, v) = c_attn(x); y = head(h + mlp.c_proj(gelu_tanh(mlp.c_fc(h))))."""

    def __init__(self):
        super().__init__()
        self.attn = nn.ModuleDict({"c_attn": Conv1D(24, 8), "c_proj": Conv1D(8, 8)})
        self.mlp = nn.ModuleDict({"c_fc": Conv1D(16, 8), "c_proj": Conv1D(8, 16)})
        self.head = nn.Linear(8, 4)
        with torch.no_grad():  # transformers' init leaves biases at 0: give them values to pin
            for m in self.modules():
                if isinstance(m, Conv1D):
                    m.weight.normal_(0, 0.3)
                    m.bias.normal_(0, 0.1)

    def forward(self, x):
        q, k, v = self.attn["c_attn"](x).split(8, dim=-1)
        h = x + self.attn["c_proj"](q * torch.sigmoid(k) + v)
        h = h + self.mlp["c_proj"](nn.functional.gelu(self.mlp["c_fc"](h), approximate="tanh"))
        return self.head(h)


CONV1DS = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
CASES = {
    # fan_in_fan_out=False on Conv1D targets: PEFT warns once and saves True.
    "lora": dict(target_modules=["c_attn", "c_proj", "c_fc"], r=4, lora_alpha=8),
    # Conv1D then a Linear: PEFT switches fan_in_fan_out on, then off (saved False); lora_bias,
    # rank / alpha patterns, rslora.
    "mixed": dict(target_modules=["c_attn", "c_fc", "head"], r=4, lora_alpha=6, fan_in_fan_out=True, lora_bias=True,
                  rank_pattern={"c_fc": 2}, alpha_pattern={"head": 3}, use_rslora=True),
    "dora": dict(target_modules=["c_attn", "c_proj"], r=3, lora_alpha=5, use_dora=True, fan_in_fan_out=True),
    "pissa": dict(target_modules=["c_attn", "c_fc"], r=4, lora_alpha=8, init_lora_weights="pissa", fan_in_fan_out=True),
}


def peft_key(k):
    return "base_model.model." + k


def run_case(name, kwargs):
    torch.manual_seed(zlib.crc32(name.encode()))
    model = TinyGPT()
    t = {"base." + k: v.detach().clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 5, 8)
    g = torch.randn(2, 5, 4)
    t["x"], t["g"] = x, g
    xb = x.clone().requires_grad_(True)
    out = model(xb)
    (out * g).sum().backward()
    t["out_base"] = out.detach()
    t["grad_base.x"] = xb.grad
    for k, p in model.named_parameters():
        t["grad_base." + k] = p.grad.clone()
    model.zero_grad()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = get_peft_model(model, LoraConfig(**kwargs))
    msgs = [str(w.message) for w in caught if "fan_in_fan_out" in str(w.message)]
    if name == "pissa":
        for k, v in pm.state_dict().items():
            if "lora_" in k:
                t["init." + k] = v.detach().clone()
        for c in ("attn.c_attn", "mlp.c_fc"):
            t["residual." + c + ".weight"] = pm.base_model.model.get_submodule(c).get_base_layer().weight.detach().clone()
    with torch.no_grad():  # "trained" adapter values
        for k, p in pm.named_parameters():
            if "lora_A" in k or "lora_B" in k:
                p.copy_(torch.randn_like(p) * 0.3)
            elif "lora_magnitude_vector" in k:
                p.mul_(1 + 0.2 * torch.randn_like(p))
    pm.save_pretrained(os.path.join(OUT, name))
    os.remove(os.path.join(OUT, name, "README.md"))  # the model card: nothing the test reads
    pm.eval()
    out = pm(x)
    (out * g).sum().backward()
    t["out_lora"] = out.detach()
    for k, p in pm.named_parameters():
        if p.requires_grad:
            t["grad." + k] = p.grad.clone()
    with torch.no_grad():
        with pm.disable_adapter():
            t["out_disabled"] = pm(x)
        pm.merge_adapter()
        t["out_merged"] = pm(x)
        for k, v in pm.base_model.model.state_dict().items():
            if "base_layer" in k and "lora_" not in k:
                t["merged." + k.replace(".base_layer", "")] = v.clone()
    write_safetensors(os.path.join(OUT, name + ".safetensors"), t, metadata={"warnings": json.dumps(msgs)})
    print(name, msgs, json.load(open(os.path.join(OUT, name, "adapter_config.json")))["fan_in_fan_out"])


class TinyAttn(nn.Module):
    """y = head(mha(x, x, x)[0]) with a batch-first nn.MultiheadAttention (8 wide, 2 heads)."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 4)
        with torch.no_grad():  # torch's init leaves the biases at 0: give them values to pin
            self.mha.in_proj_bias.normal_(0, 0.1)
            self.mha.out_proj.bias.normal_(0, 0.1)

    def forward(self, x):
        return self.head(self.mha(x, x, x, need_weights=False)[0])


def run_mha_case(name, kwargs):
    """As run_case, for PEFT's lora.MultiheadAttention (LoRA on in_proj and on out_proj)."""
    torch.manual_seed(zlib.crc32(name.encode()))
    model = TinyAttn()
    t = {"base." + k: v.detach().clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 5, 8)
    g = torch.randn(2, 5, 4)
    t["x"], t["g"] = x, g
    with torch.no_grad():
        t["out_base"] = model(x)
    pm = get_peft_model(model, LoraConfig(**kwargs))
    with torch.no_grad():
        for k, p in pm.named_parameters():
            if "lora_A" in k or "lora_B" in k:
                p.copy_(torch.randn_like(p) * 0.3)
    pm.save_pretrained(os.path.join(OUT, name))
    os.remove(os.path.join(OUT, name, "README.md"))
    pm.eval()
    out = pm(x)
    (out * g).sum().backward()
    t["out_lora"] = out.detach()
    for k, p in pm.named_parameters():
        if p.requires_grad:
            t["grad." + k] = p.grad.clone()
    with torch.no_grad():
        with pm.disable_adapter():
            t["out_disabled"] = pm(x)
        pm.merge_adapter()
        t["out_merged"] = pm(x)
        mha = pm.base_model.model.mha
        t["merged.mha.in_proj_weight"] = mha.get_base_layer().in_proj_weight.detach().clone()
        t["merged.mha.out_proj.weight"] = mha.get_base_layer().out_proj.get_base_layer().weight.detach().clone()
        pm.unmerge_adapter()
        unloaded = pm.merge_and_unload()
        t["out_unloaded"] = unloaded(x)
    write_safetensors(os.path.join(OUT, name + ".safetensors"), t)
    print(name)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for n, kw in CASES.items():
        run_case(n, kw)
    # PEFT 0.21.2 applies out_proj's delta twice in lora.MultiheadAttention (its merge writes W + Δ into
    # the weight and then lets the wrapped lora.Linear merge Δ once more), in forward and in merging.
    run_mha_case("mha", dict(target_modules=["mha"], r=2, lora_alpha=4))
