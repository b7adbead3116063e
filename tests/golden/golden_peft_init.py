"""PEFT 0.21.2's data-driven LoRA initialisations for tests/test_lora_init.cpp: PiSSA and OLoRA on a
tiny three-Linear model (with and without use_rslora, rank / alpha patterns, DoRA, fan_in_fan_out on
nn.Linear), and PEFT's conversion of the trained adapter into a plain LoRA adapter
(save_pretrained(path_initial_model_for_weight_conversion=...)).

    /tmp/venv/bin/python tests/golden/golden_peft_init.py

Writes tests/golden/data/peft_init/<case>.safetensors, each holding (PEFT state-dict keys):
  base.<key>              the model's weights before get_peft_model (the C++ side loads them)
  x, out_base             an input and the base model's output
  init.<peft key>         lora_A / lora_B (and DoRA's magnitude) right after get_peft_model
  residual.<lin>          the base weight PEFT left in <lin> (W - scaling·B·A)
  out_init                the adapted model's output at initialisation (= out_base)
  trained.<peft key>      the adapter after a fixed random step away from the init ("training")
  out_trained             the output with it
  converted.<peft key>    the plain LoRA adapter PEFT's save_pretrained writes for the original base
  out_converted           that adapter loaded by PEFT onto a fresh copy of the ORIGINAL base model
                          (for pissa_dora PEFT's converted file lacks the trained magnitude vector:
                          subtract_mutated_init keeps only lora_A / lora_B, so this differs from
                          out_trained by ~6e-2; the C++ conversion keeps it and matches out_trained)
The converted adapter_config.json's r, lora_alpha, init_lora_weights, rank_pattern and alpha_pattern
are in the header's __metadata__ ("converted_config", JSON). Each case seeds torch from crc32 of its
name, so cases are independent. The random inits ("pissa_niter_N", "orthogonal") draw from torch's
RNG, which the C++ engine does not replicate: the C++ test pins their properties instead.
"""
import json
import os
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
from safetensors.torch import load_file  # noqa: E402

OUT = os.path.join(HERE, "data", "peft_init")
TARGETS = ["lin0", "lin1", "lin2"]


class Tiny(nn.Module):
    """lin0 is tall (20×12), lin1 wide (16×20), lin2 small (6×16): QR / SVD in both shapes."""

    def __init__(self):
        super().__init__()
        self.lin0 = nn.Linear(12, 20)
        self.lin1 = nn.Linear(20, 16)
        self.lin2 = nn.Linear(16, 6)

    def forward(self, x):
        return self.lin2(torch.relu(self.lin1(torch.relu(self.lin0(x)))))


CASES = {
    "pissa": dict(init_lora_weights="pissa"),
    "pissa_rslora": dict(init_lora_weights="pissa", use_rslora=True),
    "pissa_patterns": dict(init_lora_weights="pissa", rank_pattern={"lin1": 2}, alpha_pattern={"lin2": 3}),
    "pissa_dora": dict(init_lora_weights="pissa", use_dora=True),
    "pissa_fan_in_fan_out": dict(init_lora_weights="pissa", fan_in_fan_out=True, lora_alpha=4),
    "olora": dict(init_lora_weights="olora"),
    "olora_rslora": dict(init_lora_weights="olora", use_rslora=True, lora_alpha=6),
}


def run_case(name, kwargs):
    torch.manual_seed(zlib.crc32(name.encode()))
    model = Tiny()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 12)
    t = {"base." + k: v for k, v in base.items()}
    t["x"] = x
    with torch.no_grad():
        t["out_base"] = model(x)
    cfg = dict(target_modules=TARGETS, r=4, lora_alpha=8)
    cfg.update(kwargs)
    pm = get_peft_model(model, LoraConfig(**cfg))
    pm.eval()
    with torch.no_grad():
        t["out_init"] = pm(x)
    from peft import get_peft_model_state_dict
    for k, v in get_peft_model_state_dict(pm).items():
        t["init." + k] = v.detach().clone()
    for lin in TARGETS:
        t["residual." + lin] = getattr(pm.base_model.model, lin).base_layer.weight.detach().clone()
    with tempfile.TemporaryDirectory() as d:
        init_dir = os.path.join(d, "initial")
        pm.save_pretrained(init_dir)
        with torch.no_grad():  # "training": a fixed random step of every adapter tensor
            for n, p in pm.named_parameters():
                if "lora_" in n:
                    p.add_(0.1 * torch.randn_like(p))
            pm.train()  # clears DoRA's eval-mode cache of the weight norm, stale after the step
            pm.eval()
            t["out_trained"] = pm(x)
        for k, v in get_peft_model_state_dict(pm).items():
            t["trained." + k] = v.detach().clone()
        conv_dir = os.path.join(d, "converted")
        pm.save_pretrained(conv_dir, path_initial_model_for_weight_conversion=init_dir)
        for k, v in load_file(os.path.join(conv_dir, "adapter_model.safetensors")).items():
            t["converted." + k] = v
        with open(os.path.join(conv_dir, "adapter_config.json")) as f:
            conf = json.load(f)
        fresh = Tiny()
        fresh.load_state_dict(base)
        pm2 = PeftModel.from_pretrained(fresh, conv_dir)
        with torch.no_grad():
            t["out_converted"] = pm2(x)
    keep = {k: conf[k] for k in ("r", "lora_alpha", "init_lora_weights", "rank_pattern", "alpha_pattern", "use_rslora")}
    write_safetensors(os.path.join(OUT, name + ".safetensors"), t, {"converted_config": json.dumps(keep)})
    err = (t["out_converted"] - t["out_trained"]).abs().max().item()
    print("%-22s converted vs trained output: max |diff| %.2e; converted config %s" % (name, err, keep))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".safetensors") and f[: -len(".safetensors")] not in CASES:
            os.remove(os.path.join(OUT, f))
    for name, kwargs in CASES.items():
        run_case(name, kwargs)


if __name__ == "__main__":
    main()
