#!/opt/peftenv/bin/python
"""Adapters written by real Hugging Face PEFT, for tests/test_peft_interop.cpp.

PEFT is the oracle for the file format and the LoRA numerics (spec/peft-semantics.md). This
script needs peft, which is not part of the repository; recreate its virtual environment with
(Debian's python3-torch 1.13 provides torch):

    /usr/bin/python3 -m venv --system-site-packages /opt/peftenv && \
    /opt/peftenv/bin/pip install --no-deps peft==0.21.2 transformers==4.46.3 \
        huggingface_hub==0.26.5 tokenizers==0.20.3 accelerate==1.1.1 safetensors fsspec \
        tqdm regex filelock pyyaml packaging jinja2 markupsafe

(jinja2/markupsafe: PeftModel.save_pretrained renders a README model card.) Then:

    /opt/peftenv/bin/python tests/golden/golden_peft.py

PEFT's mixed-batch forward (adapter_names=...) registers forward pre-hooks with with_kwargs,
which needs torch >= 2.0: the cases with "out_mixed" (mlp_two_adapters, seed_mlp_two_adapters,
emb_two_adapters) were written with the same PEFT 0.21.2 on PyPI's torch 2.15 (a venv with
`pip install torch peft==0.21.2 ...`, /opt/torchpypi here). Its MKL GEMMs round differently in
the last bits (up to ~3e-5 on outputs of magnitude ~100, inside the C++ test's tolerance), so
only those case folders were regenerated; the others keep their torch 1.13 bytes.

For every case it writes tests/golden/data/peft/<case>/ (stale case folders are removed):
  base_model.safetensors     the base model's state_dict() before adaptation (PyTorch names)
  adapter_config.json        \  exactly as PeftModel.save_pretrained writes them (its README.md
  adapter_model.safetensors  /  is deleted: nothing reads it); a second adapter "other" is in other/
  io.safetensors             "x" the input, "out" PEFT's eval-mode output, "base_out" the output
                             inside disable_adapter(), "merged_out" the output of merge_and_unload()
                             (absent where merging is refused), "out_other" / "out_both" with
                             adapter "other" / both active, "out_mixed" PEFT's mixed batch
                             (adapter_names = other, __base__, default, other, ...). Its __metadata__ "info" is a JSON object:
                             "model" (the class), "trainable" and "all" (get_nb_trainable_parameters()
                             of the get_peft_model model), "targeted" (targeted_module_names),
                             "loaded_trainable" (the parameters PeftModel.from_pretrained leaves
                             trainable: with bias "all" / "lora_only" the biases stay so). One
                             key, because safetensors writes metadata in hash-map order.
Case "mlp_inject" is written by inject_adapter_in_model + get_peft_model_state_dict (no
"base_model.model." prefix) and LoraConfig.save_pretrained.

Adapters are created with init_lora_weights=False (so they change the output), then every
trainable parameter is moved by 0.1·N(0, 1), which stands in for training: saved biases
(bias "all" / "lora_only") and modules_to_save copies then differ from the base model too.
Every case seeds torch from the CRC of its name. The models mirror PEFT's
tests/test_custom_models.py (MLP, Conv2D, Conv2D1x1, Conv2DGroups) plus an embedding model
and the seed MLP of shared/seeds (hidden size 16); the C++ test builds the same classes.
"""
import copy
import json
import os
import shutil
import sys
import zlib

import torch
from torch import nn

sys.dont_write_bytecode = True  # keep tests/golden free of __pycache__
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, inject_adapter_in_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "peft")


# ---------------------------------------------------------------- models (PEFT's test shapes)

class MLP(nn.Module):
    """tests/test_custom_models.py MLP: input arange(90).view(9, 10)."""

    def __init__(self, bias=True):
        super().__init__()
        self.lin0 = nn.Linear(10, 20, bias=bias)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.lin1 = nn.Linear(20, 2, bias=bias)
        self.sm = nn.LogSoftmax(dim=-1)

    def forward(self, X):
        return self.sm(self.lin1(self.drop(self.relu(self.lin0(X.float())))))


class SeedMLP(nn.Module):
    """The seed MLP (samples/models/mlp.h) with a small hidden size."""

    def __init__(self, hidden=16):
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(20, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2), nn.LogSoftmax(dim=-1))

    def forward(self, X):
        return self.seq(X)


class ModelEmb(nn.Module):
    """Embedding(100, 5) → Flatten → Linear(50, 2) → LogSoftmax; ids (9, 10)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 5)
        self.flat = nn.Flatten()
        self.lin0 = nn.Linear(50, 2)
        self.sm = nn.LogSoftmax(dim=-1)

    def forward(self, X):
        return self.sm(self.lin0(self.flat(self.emb(X))))


class ModelConv2D(nn.Module):
    """tests/test_custom_models.py ModelConv2D: X (9, 10) → reshape (-1, 5, 3, 3)."""

    def __init__(self):
        super().__init__()
        self.conv2d = nn.Conv2d(5, 10, 3)
        self.relu = nn.ReLU()
        self.flat = nn.Flatten()
        self.lin0 = nn.Linear(10, 2)
        self.sm = nn.LogSoftmax(dim=-1)

    def forward(self, X):
        X = X.float().reshape(-1, 5, 3, 3)
        return self.sm(self.lin0(self.flat(self.relu(self.conv2d(X)))))


class ModelConv2D1x1(nn.Module):
    """tests/test_custom_models.py ModelConv2D1x1: X (9, 10) → reshape (-1, 1, 3, 3)."""

    def __init__(self):
        super().__init__()
        self.conv2d = nn.Conv2d(1, 10, kernel_size=(1, 1), padding=0)
        self.relu = nn.ReLU()
        self.flat = nn.Flatten()
        self.lin0 = nn.Linear(90, 2)
        self.sm = nn.LogSoftmax(dim=-1)

    def forward(self, X):
        X = X.float().reshape(-1, 1, 3, 3)
        return self.sm(self.lin0(self.flat(self.relu(self.conv2d(X)))))


class ModelConv2DGroups(nn.Module):
    """tests/test_custom_models.py ModelConv2DGroups: X.flatten() → Linear(90, 288) → (2, 16, 3, 3)."""

    def __init__(self):
        super().__init__()
        self.lin0 = nn.Linear(90, 288)
        self.conv2d = nn.Conv2d(16, 16, 3, groups=8)
        self.relu = nn.ReLU()
        self.flat = nn.Flatten()
        self.lin1 = nn.Linear(16, 2)
        self.sm = nn.LogSoftmax(dim=-1)

    def forward(self, X):
        X = self.lin0(X.float().flatten()).reshape(2, 16, 3, 3)
        return self.sm(self.lin1(self.flat(self.relu(self.conv2d(X)))))


def x_float():
    return torch.arange(90).view(9, 10).float()


def x_seed():
    return torch.arange(180).view(9, 20).float() / 90.0


def x_ids():
    return torch.arange(90).view(9, 10)


# ---------------------------------------------------------------- cases
# name -> (model class, input fn, LoRA kwargs, second adapter kwargs or None, merge allowed)
CASES = {
    "mlp_list": (MLP, x_float, dict(target_modules=["lin0", "lin1"]), None, True),
    "mlp_regex": (MLP, x_float, dict(target_modules=r"lin\d"), None, True),
    "mlp_modules_to_save": (MLP, x_float, dict(target_modules=["lin0"], modules_to_save=["lin1"]), None, True),
    "mlp_bias_all": (MLP, x_float, dict(target_modules=["lin0"], bias="all"), None, True),
    "mlp_bias_lora_only": (MLP, x_float, dict(target_modules=["lin0", "lin1"], bias="lora_only"), None, True),
    "mlp_rslora": (MLP, x_float, dict(target_modules=["lin0", "lin1"], r=4, lora_alpha=16, use_rslora=True), None,
                   True),
    "mlp_patterns": (MLP, x_float, dict(target_modules=["lin0", "lin1"], r=4, lora_alpha=8, rank_pattern={"lin1": 2},
                                        alpha_pattern={"lin0": 16}), None, True),
    "mlp_dropout": (MLP, x_float, dict(target_modules=["lin0"], lora_alpha=4, lora_dropout=0.1), None, True),
    "mlp_lora_bias": (MLP, x_float, dict(target_modules=["lin0", "lin1"], lora_bias=True, lora_alpha=32), None, True),
    "mlp_dora": (MLP, x_float, dict(target_modules=["lin0"], use_dora=True), None, True),
    "mlp_two_adapters": (MLP, x_float, dict(target_modules=["lin0"]),
                         dict(target_modules=["lin0", "lin1"], r=4, lora_alpha=16), True),
    "seed_mlp_two_adapters": (SeedMLP, x_seed, dict(target_modules=["seq.0", "seq.2"], modules_to_save=["seq.4"]),
                              dict(target_modules=["seq.2"], modules_to_save=["seq.4"], r=4, lora_alpha=16), True),
    "emb_two_adapters": (ModelEmb, x_ids, dict(target_modules=["emb", "lin0"]),
                         dict(target_modules=["emb"], r=4, lora_alpha=4), True),
    "seed_mlp": (SeedMLP, x_seed, dict(target_modules=["seq.0", "seq.2"], modules_to_save=["seq.4"]), None, True),
    "emb": (ModelEmb, x_ids, dict(target_modules=["emb", "lin0"]), None, True),
    "conv2d": (ModelConv2D, x_float, dict(target_modules=["conv2d", "lin0"]), None, True),
    "conv2d_1x1": (ModelConv2D1x1, x_float, dict(target_modules=["conv2d"]), None, True),
    "conv2d_groups": (ModelConv2DGroups, x_float, dict(target_modules=["conv2d"]), None, False),
    "conv2d_dora": (ModelConv2D, x_float, dict(target_modules=["conv2d"], use_dora=True), None, True),
}


# Per-row adapters for the mixed-batch output "out_mixed" of cases with a second adapter.
MIXED_NAMES = ["other", "__base__", "default"]


def perturb_trainable(model):
    """Stands in for training: every trainable parameter moves by 0.1·N(0, 1)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))


def counts(model):
    trainable, total = model.get_nb_trainable_parameters()
    return {"trainable": trainable, "all": total}


def loaded_trainable(model_cls, out_dir, other):
    """The parameters left trainable by PeftModel.from_pretrained (+ load_adapter) for inference."""
    base = model_cls()
    base.load_state_dict(load_file(os.path.join(out_dir, "base_model.safetensors")))
    pm = PeftModel.from_pretrained(base, out_dir)
    if other:
        pm.load_adapter(os.path.join(out_dir, "other"), "other")
    return [n for n, p in pm.named_parameters() if p.requires_grad]


def write_case(name, model_cls, make_x, kwargs, other_kwargs, merge_ok):
    out_dir = os.path.join(DATA, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    torch.manual_seed(zlib.crc32(name.encode("utf-8")))
    base = model_cls().eval()
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, os.path.join(out_dir, "base_model.safetensors"))
    x = make_x()
    pm = get_peft_model(base, LoraConfig(init_lora_weights=False, **kwargs))
    meta = {"model": model_cls.__name__, **counts(pm), "targeted": list(pm.targeted_module_names)}
    perturb_trainable(pm)
    io = {"x": x}
    if other_kwargs is not None:
        pm.add_adapter("other", LoraConfig(init_lora_weights=False, **other_kwargs))
        pm.set_adapter("other")
        perturb_trainable(pm)
        pm.eval()
        with torch.no_grad():
            io["out_other"] = pm(x)
            if "modules_to_save" not in kwargs:  # PEFT activates one modules_to_save copy at a time
                pm.base_model.set_adapter(["default", "other"])
                io["out_both"] = pm(x)
        pm.set_adapter("default")
        with torch.no_grad():  # mixed batch: row i runs MIXED_NAMES[i % 3]
            io["out_mixed"] = pm(x, adapter_names=[MIXED_NAMES[i % 3] for i in range(len(x))])
    pm.eval()
    with torch.no_grad():
        io["out"] = pm(x)
        with pm.disable_adapter():
            io["base_out"] = pm(x)
        if merge_ok:
            io["merged_out"] = copy.deepcopy(pm).merge_and_unload()(x)
    pm.save_pretrained(out_dir)
    for d in (out_dir, os.path.join(out_dir, "other")):
        if os.path.exists(os.path.join(d, "README.md")):
            os.remove(os.path.join(d, "README.md"))
    meta["loaded_trainable"] = loaded_trainable(model_cls, out_dir, other_kwargs is not None)
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out_dir, "io.safetensors"),
              metadata={"info": json.dumps(meta, sort_keys=True)})


def write_inject_case():
    """inject_adapter_in_model: the same model adapted in place; its state dict has no prefix."""
    name = "mlp_inject"
    out_dir = os.path.join(DATA, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    torch.manual_seed(zlib.crc32(name.encode("utf-8")))
    base = MLP().eval()
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, os.path.join(out_dir, "base_model.safetensors"))
    config = LoraConfig(target_modules=["lin0"], modules_to_save=["lin1"], init_lora_weights=False)
    model = inject_adapter_in_model(config, base)
    assert model is base
    perturb_trainable(model)
    model.eval()
    x = x_float()
    with torch.no_grad():
        out = model(x)
    sd = get_peft_model_state_dict(model)
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out_dir, "adapter_model.safetensors"),
              metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    save_file({"x": x, "out": out}, os.path.join(out_dir, "io.safetensors"),
              metadata={"info": json.dumps({"model": "MLP"})})


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":  # PEFT writes target_modules in set order
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    torch.set_num_threads(1)
    os.makedirs(DATA, exist_ok=True)
    for name, spec in CASES.items():
        write_case(name, *spec)
    write_inject_case()
    expected = set(CASES) | {"mlp_inject"}
    for entry in os.listdir(DATA):
        if entry not in expected:
            shutil.rmtree(os.path.join(DATA, entry))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(DATA) for f in fs)
    import peft
    print("wrote %d PEFT cases, %d bytes, peft %s, torch %s" % (len(expected), total, peft.__version__,
                                                                 torch.__version__))


if __name__ == "__main__":
    main()
