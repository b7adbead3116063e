#!/opt/peftenv/bin/python
"""Golden data for the samples (tests/test_samples.cpp), made with timm and PEFT themselves.

Needs torch, timm and peft: the venv of golden_peft.py plus timm, which imports torchvision
(Debian's python3-torchvision matches Debian's torch 1.13):

    apt-get install python3-torchvision && /opt/peftenv/bin/pip install --no-deps timm==1.0.31
    /opt/peftenv/bin/python tests/golden/golden_poolformer.py

make_golden.py runs it too when its interpreter can import timm and peft. Deterministic: every
part seeds torch from the CRC of its name.

Writes into tests/golden/data/samples/ (a subfolder, so make_golden.py's stale-file cleanup of
data/*.safetensors leaves it alone):
  poolformer_m36_modules.json  timm's poolformer_m36(num_classes=3): named_modules() as
                               [name, class name], state_dict() keys with shapes, and what PEFT
                               prints / targets for the seed's LoraConfig. The 220 MB state dict
                               itself is not stored.
  poolformer_tiny.safetensors  a small timm MetaFormer with PoolFormer-v1 settings (depths
                               1,1,2,1; dims 8,16,24,32; 3 classes), random norms and layer
                               scales: its state_dict() exactly as safetensors.torch.save_file
                               writes it (the `infer --weights` file)
  poolformer_tiny_io.safetensors  x (2, 3, 48, 40); y = model(x) in eval mode; y_lora = the
                               same with the adapter below
  poolformer_tiny_adapter/     PEFT's save_pretrained of LoRA r=4 on `.*\\.mlp\\.fc\\d` with
                               init_lora_weights=False and head.fc in modules_to_save (perturbed)
  mlp_adapter/                 PEFT's save_pretrained of LoRA on seq.0 / seq.2 (+ seq.4 saved) of
                               the MLP(64) in ../data/mlp_state_dict.safetensors
  mlp_adapter_io.safetensors   x (5, 20) and y = the adapted model's output
"""
import json
import os
import re
import shutil
import sys
import zlib

import peft
import timm
import torch
from safetensors.torch import save_file
from timm.layers import GroupNorm1
from timm.models.metaformer import MetaFormer
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "samples")
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

LORA_REGEX = r".*\.mlp\.fc\d"


def seed(name):
    torch.manual_seed(zlib.crc32(name.encode("utf-8")))


def poolformer_v1(depths, dims, num_classes):
    """timm's poolformer_m36 settings with other depths / widths."""
    return MetaFormer(depths=depths, dims=dims, num_classes=num_classes, downsample_norm=None, mlp_act=nn.GELU,
                      mlp_bias=True, norm_layers=GroupNorm1, layer_scale_init_values=1e-6,
                      res_scale_init_values=None, use_mlp_head=False)


def save_adapter(peft_model, name):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    peft_model.save_pretrained(path)
    os.remove(os.path.join(path, "README.md"))  # PEFT's model card template; not needed
    return path


def m36_modules():
    seed("poolformer_m36_modules")
    model = timm.create_model("poolformer_m36", num_classes=3)
    modules = [[n, type(m).__name__] for n, m in model.named_modules()]
    state = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    n_params = sum(p.numel() for p in model.parameters())
    pm = peft.get_peft_model(model, peft.LoraConfig(target_modules=LORA_REGEX, modules_to_save=["head.fc"]))
    trainable, total = pm.get_nb_trainable_parameters()
    line = "trainable params: {:,d} || all params: {:,d} || trainable%: {:.4f}".format(
        trainable, total, 100 * trainable / total)
    doc = {"timm_version": timm.__version__, "peft_version": peft.__version__, "torch_version": torch.__version__,
           "model": "timm.create_model('poolformer_m36', num_classes=3)", "num_parameters": n_params,
           "named_modules": modules, "state_dict": state,
           "peft": {"target_modules": LORA_REGEX, "modules_to_save": ["head.fc"],
                    "print_trainable_parameters": line,
                    "targeted_module_names": list(pm.targeted_module_names)}}
    # One list entry per line: readable, and a diff shows what a timm version changed.
    text = json.dumps(doc, indent=1)
    text = re.sub(r"\[\s+(\"[^\"]*\"),\s+(\"[^\"]*\"|\[[\d,\s]*\])\s+\]",
                  lambda m: "[" + m.group(1) + ", " + re.sub(r"\s+", "", m.group(2)) + "]", text)
    with open(os.path.join(OUT, "poolformer_m36_modules.json"), "w") as f:
        f.write(text + "\n")
    print(line)


def tiny_poolformer():
    seed("poolformer_tiny")
    model = poolformer_v1((1, 1, 2, 1), (8, 16, 24, 32), 3)
    with torch.no_grad():  # make the norms and layer scales matter
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.copy_(torch.rand_like(p) * 0.5 + 0.25)
            elif ".norm" in name:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
    model.eval()
    save_file(model.state_dict(), os.path.join(OUT, "poolformer_tiny.safetensors"), metadata={"format": "pt"})
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        y = model(x)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=LORA_REGEX, modules_to_save=["head.fc"],
                             init_lora_weights=False)
    pm = peft.get_peft_model(model, config)
    with torch.no_grad():
        pm.base_model.model.head.fc.modules_to_save["default"].weight.add_(torch.randn(3, 32) * 0.1)
    pm.eval()
    with torch.no_grad():
        y_lora = pm(x)
    save_adapter(pm, "poolformer_tiny_adapter")
    save_file({"x": x, "y": y, "y_lora": y_lora}, os.path.join(OUT, "poolformer_tiny_io.safetensors"))


def mlp_adapter():
    from golden_layers import MLP, MLP_HIDDEN

    torch.manual_seed(zlib.crc32(b"mlp_state_dict"))  # the model of data/mlp_state_dict.safetensors
    model = MLP(MLP_HIDDEN)
    seed("mlp_adapter")
    config = peft.LoraConfig(target_modules=["seq.0", "seq.2"], modules_to_save=["seq.4"], init_lora_weights=False)
    pm = peft.get_peft_model(model, config)
    with torch.no_grad():
        pm.base_model.model.seq[4].modules_to_save["default"].bias.add_(torch.tensor([0.5, -0.5]))
    pm.eval()
    x = torch.randn(5, 20)
    with torch.no_grad():
        y = pm(x)
    save_adapter(pm, "mlp_adapter")
    save_file({"x": x, "y": y}, os.path.join(OUT, "mlp_adapter_io.safetensors"))


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    m36_modules()
    tiny_poolformer()
    mlp_adapter()
    print("wrote %s (timm %s, peft %s, torch %s)" % (OUT, timm.__version__, peft.__version__, torch.__version__))


if __name__ == "__main__":
    main()
