"""PEFT 0.21.2's adapter-management API for tests/test_peft_api.cpp: get_layer_status /
get_model_status (with their "irregular" markers), enable / disable_adapter_layers and
set_requires_grad as the status reports them, merge_and_unload(adapter_names=[...]), unload()
with a modules_to_save module, and hotswap_adapter (a smaller rank zero-padded, a model prepared
with prepare_model_for_compiled_hotswap(target_rank)) with its refusals.

    PYTHONHASHSEED=0 /tmp/venv/bin/python tests/golden/golden_peft_api.py

Writes tests/golden/data/peft_api/ (replaced as a whole):
  base_model.safetensors   TinyNet's state_dict() (lin0 6→8, lin1 8→8, head 8→3)
  one/, two/               adapters "one" (r=4, alpha 8) and "two" (r=2, alpha 2), both on lin0 and lin1
                           with modules_to_save=["head"], as save_pretrained wrote them
  hs0/, hs1/               hotswap adapters "default": r=4 alpha 8 and r=2 alpha 6 (lin0, lin1)
  hs_extra/                r=2, also targets head: refused (unexpected keys)
  hs_dropout/              r=2 with lora_dropout 0.1: refused (config check)
  conv_base_model.safetensors, hsc0/, hsc1/   the same for ConvNet (conv0 3×3, conv1 1×1 with groups=2):
                           r=4 alpha 8 and r=2 alpha 6
  io.safetensors           "x" and the outputs / state dicts named in api.json
  api.json                 statuses, error texts, shapes and scalings (the C++ test reads it)
Adapters use init_lora_weights=False; modules_to_save copies are moved by 0.1·N(0, 1) before
saving, so they differ from the original head.
"""
import dataclasses
import json
import os
import shutil
import sys
import zlib

import torch
from torch import nn

sys.dont_write_bytecode = True
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.utils.hotswap import hotswap_adapter, prepare_model_for_compiled_hotswap  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "peft_api")


class ConvNet(nn.Module):
    """Hot-swapping on lora.Conv2d, a grouped one included: conv0 (3×3), conv1 (1×1, groups=2)."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(4, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(8, 8, 1, groups=2)

    def forward(self, x):
        return self.conv1(self.relu(self.conv0(x)))


class TinyNet(nn.Module):
    """Rebuilt in C++ with the same names: lin0, relu, lin1, head."""

    def __init__(self):
        super().__init__()
        self.lin0 = nn.Linear(6, 8)
        self.relu = nn.ReLU()
        self.lin1 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.relu(self.lin1(self.relu(self.lin0(x)))))


def seed(name):
    torch.manual_seed(zlib.crc32(name.encode()))


def base():
    m = TinyNet()
    m.load_state_dict(BASE_SD)
    return m.eval()


def conv_base():
    m = ConvNet()
    m.load_state_dict(CONV_SD)
    return m.eval()


def status_json(obj):
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def error_text(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the text is what is recorded
        return str(e)
    raise AssertionError("expected an error")


def save_adapter(name, config, dirname, perturb_copies=False, make=None):
    seed(dirname)
    pm = get_peft_model((make or base)(), config, adapter_name=name)
    if perturb_copies:
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if ".modules_to_save." in n:
                    p.add_(0.1 * torch.randn_like(p))
    tmp = os.path.join(OUT, "_tmp_" + dirname)
    pm.save_pretrained(tmp)
    src = os.path.join(tmp, name) if name != "default" else tmp
    shutil.move(src, os.path.join(OUT, dirname))
    shutil.rmtree(tmp, ignore_errors=True)
    readme = os.path.join(OUT, dirname, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


def two_adapter_model():
    pm = PeftModel.from_pretrained(base(), os.path.join(OUT, "one"), adapter_name="one", is_trainable=True)
    pm.load_adapter(os.path.join(OUT, "two"), adapter_name="two", is_trainable=True)
    return pm.eval()


def main():
    global BASE_SD, CONV_SD
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    seed("base")
    BASE_SD = TinyNet().state_dict()
    save_file({k: v.contiguous() for k, v in BASE_SD.items()}, os.path.join(OUT, "base_model.safetensors"))
    seed("conv_base")
    CONV_SD = ConvNet().state_dict()
    save_file({k: v.contiguous() for k, v in CONV_SD.items()}, os.path.join(OUT, "conv_base_model.safetensors"))
    convs = ["conv0", "conv1"]
    save_adapter("default", LoraConfig(r=4, lora_alpha=8, target_modules=convs, init_lora_weights=False), "hsc0",
                 make=conv_base)
    save_adapter("default", LoraConfig(r=2, lora_alpha=6, target_modules=convs, init_lora_weights=False), "hsc1",
                 make=conv_base)

    lin = ["lin0", "lin1"]
    save_adapter("one", LoraConfig(r=4, lora_alpha=8, target_modules=lin, modules_to_save=["head"],
                                 init_lora_weights=False), "one", perturb_copies=True)
    save_adapter("two", LoraConfig(r=2, lora_alpha=2, target_modules=lin, modules_to_save=["head"],
                                 init_lora_weights=False), "two", perturb_copies=True)
    save_adapter("default", LoraConfig(r=4, lora_alpha=8, target_modules=lin, init_lora_weights=False), "hs0")
    save_adapter("default", LoraConfig(r=2, lora_alpha=6, target_modules=lin, init_lora_weights=False), "hs1")
    save_adapter("default", LoraConfig(r=2, lora_alpha=6, target_modules=lin + ["head"], init_lora_weights=False),
                 "hs_extra")
    save_adapter("default", LoraConfig(r=2, lora_alpha=6, target_modules=lin, lora_dropout=0.1,
                                       init_lora_weights=False), "hs_dropout")

    seed("x")
    x = torch.randn(5, 6)
    io = {"x": x}
    api = {}

    # ---- status through enable / disable / set_requires_grad / merge
    pm = two_adapter_model()
    io["out_one"] = pm(x)
    api["layers_loaded"] = [status_json(s) for s in pm.get_layer_status()]
    api["model_loaded"] = status_json(pm.get_model_status())
    pm.set_requires_grad(["two"], True)
    api["model_grad_two"] = status_json(pm.get_model_status())
    pm.set_requires_grad("one", False)
    api["model_grad_not_one"] = status_json(pm.get_model_status())
    pm.set_requires_grad(["one"], True)
    pm.set_requires_grad(["two"], False)
    pm.disable_adapter_layers()
    api["model_disabled"] = status_json(pm.get_model_status())
    io["out_disabled"] = pm(x)
    pm.enable_adapter_layers()
    api["model_enabled"] = status_json(pm.get_model_status())
    pm.merge_adapter(["one"])
    api["layers_merged_one"] = [status_json(s) for s in pm.get_layer_status()]
    api["model_merged_one"] = status_json(pm.get_model_status())
    pm.unmerge_adapter()
    # Per-layer changes the model-level calls never make: the "irregular" markers.
    pm.base_model.model.lin0.lora_A["one"].weight.requires_grad_(False)
    pm.base_model.model.lin1._disable_adapters = True
    pm.base_model.model.lin1._active_adapter = ["two"]
    api["model_irregular"] = status_json(pm.get_model_status())

    # ---- merge_and_unload(adapter_names=["one"]) with "two" active, unload() with "one" active
    pm = two_adapter_model()
    pm.set_adapter("two")
    merged = pm.merge_and_unload(adapter_names=["one"])
    io["out_merged_one"] = merged(x)
    for k, v in merged.state_dict().items():
        io["merged_one." + k] = v
    api["merged_one_keys"] = list(merged.state_dict().keys())

    pm = two_adapter_model()
    pm.set_adapter("one")
    plain = pm.unload()
    io["out_unload"] = plain(x)
    for k, v in plain.state_dict().items():
        io["unload." + k] = v
    api["unload_keys"] = list(plain.state_dict().keys())
    api["unload_head_type"] = type(plain.head).__name__

    # ---- hotswap
    hs = lambda d: os.path.join(OUT, d)  # noqa: E731
    pm = PeftModel.from_pretrained(base(), hs("hs1")).eval()
    io["out_hs1"] = pm(x)
    pm = PeftModel.from_pretrained(base(), hs("hs0")).eval()
    io["out_hs0"] = pm(x)
    a_before = pm.base_model.model.lin0.lora_A["default"].weight
    hotswap_adapter(pm, hs("hs1"), adapter_name="default", torch_device="cpu")
    io["out_hs0_to_hs1"] = pm(x)
    api["hotswap_same_tensor"] = pm.base_model.model.lin0.lora_A["default"].weight is a_before
    api["hotswap_scaling"] = pm.base_model.model.lin0.scaling["default"]
    api["hotswap_shape_A"] = list(pm.base_model.model.lin0.lora_A["default"].weight.shape)

    pm = PeftModel.from_pretrained(base(), hs("hs0")).eval()
    prepare_model_for_compiled_hotswap(pm, target_rank=8)
    io["out_hs0_padded"] = pm(x)
    api["padded_shape_A"] = list(pm.base_model.model.lin0.lora_A["default"].weight.shape)
    api["padded_shape_B"] = list(pm.base_model.model.lin0.lora_B["default"].weight.shape)
    hotswap_adapter(pm, hs("hs1"), adapter_name="default", torch_device="cpu")
    io["out_padded_to_hs1"] = pm(x)
    api["padded_swap_shape_A"] = list(pm.base_model.model.lin0.lora_A["default"].weight.shape)

    # ---- hotswap on Conv2d (conv1 grouped: lora_A is copied in per-group row blocks)
    seed("xc")
    xc = torch.randn(2, 4, 5, 5)
    io["xc"] = xc
    pm = PeftModel.from_pretrained(conv_base(), hs("hsc1")).eval()
    io["out_c1"] = pm(xc)
    pm = PeftModel.from_pretrained(conv_base(), hs("hsc0")).eval()
    io["out_c0"] = pm(xc)
    hotswap_adapter(pm, hs("hsc1"), adapter_name="default", torch_device="cpu")
    io["out_c0_to_c1"] = pm(xc)
    pm = PeftModel.from_pretrained(conv_base(), hs("hsc0")).eval()
    prepare_model_for_compiled_hotswap(pm, target_rank=8)
    io["out_c0_padded"] = pm(xc)
    api["conv_padded_shape_A"] = list(pm.base_model.model.conv1.lora_A["default"].weight.shape)
    api["conv_padded_shape_B"] = list(pm.base_model.model.conv1.lora_B["default"].weight.shape)
    hotswap_adapter(pm, hs("hsc1"), adapter_name="default", torch_device="cpu")
    io["out_c_padded_to_c1"] = pm(xc)

    errors = {}
    pm = PeftModel.from_pretrained(conv_base(), hs("hsc0")).eval()
    errors["pad_groups"] = error_text(lambda: prepare_model_for_compiled_hotswap(pm, target_rank=7))
    pm = PeftModel.from_pretrained(base(), hs("hs0")).eval()
    errors["pad_smaller_target"] = error_text(lambda: prepare_model_for_compiled_hotswap(pm, target_rank=2))
    pm = PeftModel.from_pretrained(base(), hs("hs0")).eval()
    errors["unexpected_keys"] = error_text(lambda: hotswap_adapter(pm, hs("hs_extra"), "default", torch_device="cpu"))
    errors["config_dropout"] = error_text(lambda: hotswap_adapter(pm, hs("hs_dropout"), "default", torch_device="cpu"))
    pm.merge_adapter()
    errors["merged"] = error_text(lambda: hotswap_adapter(pm, hs("hs1"), "default", torch_device="cpu"))
    errors["no_adapter_layers"] = error_text(lambda: prepare_model_for_compiled_hotswap(base(), target_rank=8))
    errors["status_no_adapter"] = error_text(lambda: peft_get_layer_status(base()))
    api["errors"] = errors

    save_file({k: v.detach().contiguous() for k, v in io.items()}, os.path.join(OUT, "io.safetensors"))
    with open(os.path.join(OUT, "api.json"), "w") as f:
        json.dump(api, f, indent=1, sort_keys=True)
        f.write("\n")


def peft_get_layer_status(model):
    from peft.peft_model import get_layer_status
    return get_layer_status(model)


BASE_SD = None
CONV_SD = None

if __name__ == "__main__":
    main()
