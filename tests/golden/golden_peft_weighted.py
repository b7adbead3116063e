"""PEFT 0.21.2's add_weighted_adapter for tests/test_weighted_adapter.cpp and tests/test_peft_cli.cpp:
every combination type (linear, cat, svd, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd,
dare_ties_svd, magnitude_prune, magnitude_prune_svd) and option (density, majority_sign_method,
svd_rank, svd_clamp, svd_full_matrices) on a small custom model with Linear, Embedding and Conv2d
layers and three adapters (different ranks and scalings, one with rslora, partly overlapping
targets).

    /tmp/venv/bin/python tests/golden/golden_peft_weighted.py

Writes tests/golden/data/peft_weighted/: adapters/{one,two,three}/ (the inputs, as save_pretrained wrote
them), cases.json (each case's arguments and the new adapter's config) and <case>.safetensors with
the new adapter's tensors under PEFT's saved keys ("out." + key) and, for DARE, the masks
torch.bernoulli drew, in order ("mask.<i>").

Two things are fixed so that C++ can reproduce PEFT exactly:
- DARE's masks are random (torch's generator): they are recorded by wrapping torch.bernoulli and
  replayed by the C++ test through WeightedAdapterOptions::random_mask.
- A singular pair (u, v) of torch.linalg.svd may come out negated (LAPACK builds differ), which
  only svd_clamp's quantile and the saved factors see. torch.linalg.svd is wrapped to normalise
  each pair as peft.cpp does: the entry of largest magnitude in u (first on ties) is positive.
"""
import json
import os
import shutil
import tempfile

import peft
import torch
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "peft_weighted")

_real_svd = torch.linalg.svd
_real_bernoulli = torch.bernoulli
MASKS = []


def normalised_svd(A, *args, **kwargs):
    U, S, Vh = _real_svd(A, *args, **kwargs)
    U, Vh = U.clone(), Vh.clone()
    for i in range(S.shape[-1]):
        arg = int(torch.argmax(U[:, i].abs()))  # torch.argmax: the first maximal index
        if U[arg, i] < 0:
            U[:, i] *= -1
            Vh[i, :] *= -1
    return U, S, Vh


def recording_bernoulli(*args, **kwargs):
    m = _real_bernoulli(*args, **kwargs)
    MASKS.append(m.detach().clone())
    return m


torch.linalg.svd = normalised_svd
torch.bernoulli = recording_bernoulli


def model():
    """Rebuilt in C++ (tests/test_weighted_adapter.cpp: WeightedNet) with the same names."""
    return nn.ModuleDict({"lin0": nn.Linear(10, 12), "emb": nn.Embedding(16, 8),
                          "conv": nn.Conv2d(3, 4, 3), "lin1": nn.Linear(12, 5)})


ADAPTERS = {
    "one": dict(r=4, lora_alpha=8, target_modules=["lin0", "emb", "conv", "lin1"]),
    "two": dict(r=4, lora_alpha=4, use_rslora=True, target_modules=["lin0", "emb", "conv"]),
    "three": dict(r=2, lora_alpha=2, target_modules=["lin0", "conv", "lin1"]),
}

# name -> (adapters, weights, keyword arguments of add_weighted_adapter)
CASES = {
    "linear": (["one", "two"], [0.7, -1.3], dict(combination_type="linear")),
    "cat": (["one", "two", "three"], [0.7, -1.3, 0.5], dict(combination_type="cat")),
    "svd": (["one", "two", "three"], [0.7, -1.3, 0.5], dict(combination_type="svd")),
    "svd_rank3": (["one", "two"], [0.7, -1.3], dict(combination_type="svd", svd_rank=3)),
    "svd_clamp": (["one", "two"], [0.7, -1.3], dict(combination_type="svd", svd_clamp=0.9)),
    "svd_reduced": (["one", "three"], [1.0, 2.0], dict(combination_type="svd", svd_full_matrices=False)),
    "ties": (["one", "two"], [0.7, -1.3], dict(combination_type="ties", density=0.5)),
    "ties_frequency": (["one", "two"], [0.7, 1.3], dict(combination_type="ties", density=0.6,
                                                     majority_sign_method="frequency")),
    "ties_density1": (["one", "two"], [0.7, -1.3], dict(combination_type="ties", density=1.0)),
    "dare_linear": (["one", "two"], [0.7, -1.3], dict(combination_type="dare_linear", density=0.6)),
    "dare_ties": (["one", "two"], [0.7, 1.3], dict(combination_type="dare_ties", density=0.5,
                                                majority_sign_method="frequency")),
    "magnitude_prune": (["one", "two"], [0.7, -1.3], dict(combination_type="magnitude_prune", density=0.5)),
    "ties_svd": (["one", "two", "three"], [0.7, -1.3, 0.5], dict(combination_type="ties_svd", density=0.5)),
    "dare_linear_svd": (["one", "two"], [0.7, -1.3], dict(combination_type="dare_linear_svd", density=0.7)),
    "dare_ties_svd": (["one", "two", "three"], [0.7, 1.3, 0.5], dict(combination_type="dare_ties_svd", density=0.5)),
    "magnitude_prune_svd": (["one", "two"], [0.7, -1.3], dict(combination_type="magnitude_prune_svd", density=0.3,
                                                           svd_rank=2, svd_clamp=0.95)),
    "single_ties": (["two"], [0.5], dict(combination_type="ties", density=0.5)),
}


def build():
    torch.manual_seed(0)
    pm = None
    for name, kw in ADAPTERS.items():
        cfg = LoraConfig(init_lora_weights=False, **kw)
        if pm is None:
            pm = get_peft_model(model(), cfg, adapter_name=name)
        else:
            pm.add_adapter(name, cfg)
    # Every factor random and O(1) (B would start at zero otherwise).
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn_like(p) * 0.5)
    return pm


def main():
    assert peft.__version__ == "0.21.2", peft.__version__
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    pm = build()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ADAPTERS:
            pm.save_pretrained(tmp, selected_adapters=[name])
            shutil.copytree(os.path.join(tmp, name), os.path.join(OUT, "adapters", name))
    cases = {}
    for case, (adapters, weights, kw) in CASES.items():
        MASKS.clear()
        torch.manual_seed(2)
        new = "w_" + case
        pm.add_weighted_adapter(adapters, weights, new, **kw)
        sd = get_peft_model_state_dict(pm, adapter_name=new)
        tensors = {"out." + k: v.detach().contiguous() for k, v in sd.items()}
        for i, m in enumerate(MASKS):
            tensors["mask.%d" % i] = m.contiguous()
        save_file(tensors, os.path.join(OUT, case + ".safetensors"))
        c = pm.peft_config[new]
        cases[case] = {"adapters": adapters, "weights": weights, "options": kw, "masks": len(MASKS),
                       "r": c.r, "lora_alpha": c.lora_alpha, "target_modules": sorted(c.target_modules),
                       "use_rslora": c.use_rslora}
        pm.delete_adapter(new)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"peft": peft.__version__, "torch": torch.__version__, "cases": cases}, f, indent=1)
    print("wrote", len(cases), "cases to", OUT)


if __name__ == "__main__":
    main()
