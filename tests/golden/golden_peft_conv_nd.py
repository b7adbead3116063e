"""PEFT 0.21.2's lora.Conv1d / lora.Conv3d (tuners/lora/layer.py _ConvNd, DoRA's DoraConv1dLayer /
DoraConv3dLayer) for tests/test_lora_conv_nd.cpp, on a tiny model with two Conv3d and two Conv1d:

    /tmp/venv/bin/python tests/golden/golden_peft_conv_nd.py

Writes tests/golden/data/peft_conv_nd/<case>/ with PEFT's save_pretrained files (adapter_config.json,
adapter_model.safetensors) and io.safetensors holding
  base.<key>        the base model's weights (the C++ side builds the model and loads them)
  x                 an input (N, 2, 4, 5, 6)
  out, out_base     the adapted output, and the output with the adapter disabled
  out_merged        merge_and_unload()'s output (cases without a grouped target; PEFT refuses those)
  grad_out          a fixed random upstream gradient of `out`
  grad.<name>       the gradient of each trainable parameter (PEFT's named_parameters names) after
                    backward(out, grad_out) on the model loaded with is_trainable=True
init_lora_weights=False gives lora_B random values, so the LoRA branches are not zero.
"""
import os
import shutil
import sys
import tempfile
import zlib

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
from make_golden import write_safetensors  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

OUT = os.path.join(HERE, "data", "peft_conv_nd")


class ConvNdNet(nn.Module):
    """(N, 2, 4, 5, 6) → c3 → (N, 4, 2, 4, 3) → c3b → (N, 4, 3, 4, 3) → flatten (N, 4, 36) → c1 → (N, 6, 18)
    → relu → c1g. c3b's kernel is (2, 1, 1), not (1, 1, 1): PEFT 0.21.2's get_delta_weight takes any
    kernel whose first two sizes are 1 for a 2-D 1×1 and fails in a matmul, so such a Conv3d cannot
    merge there (the C++ layer merges it; tests/test_lora_conv_nd.cpp checks that on its own)."""

    def __init__(self):
        super().__init__()
        self.c3 = nn.Conv3d(2, 4, (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1))
        self.c3b = nn.Conv3d(4, 4, (2, 1, 1), padding=(1, 0, 0), bias=False)
        self.c1 = nn.Conv1d(4, 6, 3, stride=2, padding=1)
        self.c1g = nn.Conv1d(6, 6, 3, padding=1, groups=2)

    def forward(self, x):
        h = self.c3b(self.c3(x))
        h = h.reshape(h.shape[0], h.shape[1], -1)
        return self.c1g(torch.relu(self.c1(h)))


CASES = {
    # every layer but the grouped one, lora_bias on c1, rslora; merges
    "plain": dict(target_modules=["c3", "c3b", "c1"], r=4, lora_alpha=8, use_rslora=True),
    # the grouped Conv1d (r divisible by groups) beside a plain one; PEFT cannot merge it
    "groups": dict(target_modules=["c1", "c1g"], r=4, lora_alpha=6),
    # DoRA on a Conv3d and a Conv1d; merges
    "dora": dict(target_modules=["c3", "c1"], r=2, lora_alpha=4, use_dora=True),
    # lora_bias on a Conv1d and a Conv3d with biases; merges the bias too
    "lora_bias": dict(target_modules=["c3", "c1"], r=3, lora_alpha=3, lora_bias=True),
}


def run(name, kwargs):
    torch.manual_seed(zlib.crc32(name.encode("utf-8")))
    base = ConvNdNet()
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    x = torch.randn(2, 2, 4, 5, 6)
    cfg = LoraConfig(init_lora_weights=False, **kwargs)
    model = get_peft_model(base, cfg)
    if kwargs.get("lora_bias"):  # PEFT zero-initialises lora_B's bias only when init is True
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n and n.endswith("bias"):
                    p.normal_()
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    os.remove(os.path.join(d, "README.md"))  # the model card: not read by anyone
    model.eval()
    with torch.no_grad():
        out = model(x)
        with model.disable_adapter():
            out_base = model(x)
    tensors = {"base." + k: v for k, v in base_sd.items()}
    tensors.update(x=x, out=out, out_base=out_base)

    fresh = ConvNdNet()
    fresh.load_state_dict(base_sd)
    trained = PeftModel.from_pretrained(fresh, d, is_trainable=True)
    y = trained(x)
    assert torch.allclose(y, out, atol=1e-6)
    g = torch.randn(y.shape)
    y.backward(g)
    tensors["grad_out"] = g
    for n, p in trained.named_parameters():
        if p.requires_grad:
            tensors["grad." + n] = p.grad
    if "c1g" not in kwargs["target_modules"]:
        with torch.no_grad():
            tensors["out_merged"] = trained.merge_and_unload()(x)
    write_safetensors(os.path.join(d, "io.safetensors"), {k: v.detach().contiguous() for k, v in tensors.items()})


def main():
    torch.set_num_threads(1)
    for name, kwargs in CASES.items():
        run(name, kwargs)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print("wrote %d cases, %d bytes" % (len(CASES), total))


if __name__ == "__main__":
    main()
