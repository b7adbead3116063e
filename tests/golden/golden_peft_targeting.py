"""PEFT 0.21.2's module targeting for tests/test_lora_targeting.cpp: which modules get_peft_model
adapts (targeted_module_names, in order) and the target_modules it writes to adapter_config.json,
for target_modules="all-linear", exclude_modules (list and regex) and layers_to_transform /
layers_pattern, on the committed transformers checkpoints and on small custom models.

    PYTHONHASHSEED=0 /tmp/venv/bin/python tests/golden/golden_peft_targeting.py

Writes tests/golden/data/peft_targeting/targeting.json. No hub access: the models are the folders
written by golden_hf.py / golden_hf_t5.py (from_pretrained) and containers built here, which the
C++ test rebuilds with the same names. PEFT writes target_modules from a Python set (hash order),
so the saved list is recorded sorted; the C++ side writes it sorted too.
"""
import json
import os
import tempfile

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
OUT = os.path.join(DATA, "peft_targeting")


# ---------------------------------------------------------------- models (rebuilt in C++ by name)

def mlp():
    """PEFT's test MLP (tests/test_custom_models.py), as a ModuleDict: only the names matter here."""
    return nn.ModuleDict({"lin0": nn.Linear(10, 20), "relu": nn.ReLU(), "drop": nn.Dropout(0.5),
                          "lin1": nn.Linear(20, 2), "sm": nn.LogSoftmax(-1)})


def tower():
    """A custom decoder-like tree: in_proj, model.layers.<i>.{attn.{q,k,o}, mlp.{fc1,fc2}}, head.
    4 blocks: 22 Linears, all kept by all-linear (a custom model keeps its last Linear), so PEFT
    condenses the list (>= 20 names) to suffixes."""
    def block():
        return nn.ModuleDict({"attn": nn.ModuleDict({"q": nn.Linear(8, 8), "k": nn.Linear(8, 8), "o": nn.Linear(8, 8)}),
                              "norm": nn.LayerNorm(8),
                              "mlp": nn.ModuleDict({"fc1": nn.Linear(8, 16), "fc2": nn.Linear(16, 8)})})
    return nn.ModuleDict({"in_proj": nn.Linear(4, 8),
                          "model": nn.ModuleDict({"layers": nn.ModuleList([block() for _ in range(4)])}),
                          "head": nn.Linear(8, 3)})


def no_linear():
    return nn.ModuleDict({"emb": nn.Embedding(10, 4), "norm": nn.LayerNorm(4)})


def build(model):
    torch.manual_seed(0)
    kind, name = model["kind"], model["name"]
    if kind == "hf":
        return AutoModelForCausalLM.from_pretrained(os.path.join(DATA, "hf", name, "model"))
    if kind == "hf_t5":
        return AutoModelForSeq2SeqLM.from_pretrained(os.path.join(DATA, "hf_t5", name, "model"))
    return {"mlp": mlp, "tower": tower, "no_linear": no_linear}[name]()


# ---------------------------------------------------------------- cases

def hf(name):
    return {"kind": "hf", "name": name}


def t5(name):
    return {"kind": "hf_t5", "name": name}


def custom(name):
    return {"kind": "custom", "name": name}


CAUSAL = {"task_type": "CAUSAL_LM"}
S2S = {"task_type": "SEQ_2_SEQ_LM"}

CASES = []
# all-linear on every committed checkpoint: every Linear but lm_head (get_output_embeddings()). The
# T5 models have >= 20 Linears, so PEFT condenses the list to suffixes before matching and saving.
for n in ["llama_gqa", "llama3_rope_tied", "mistral", "qwen2", "opt", "opt_350m_style"]:
    CASES.append((f"all_linear_{n}", hf(n), [("default", {**CAUSAL, "target_modules": "all-linear"})]))
for n in ["t5_tied", "t5_v1_1", "mt5"]:
    CASES.append((f"all_linear_{n}", t5(n), [("default", {**S2S, "target_modules": "all-linear"})]))
CASES += [
    # Case-insensitive; a custom model keeps its last Linear.
    ("all_linear_upper_mlp", custom("mlp"), [("default", {"target_modules": "ALL-LINEAR"})]),
    ("all_linear_tower", custom("tower"), [("default", {"target_modules": "all-linear"})]),
    # modules_to_save wins over the resolved list; the file still lists lin1.
    ("all_linear_modules_to_save", custom("mlp"),
     [("default", {"target_modules": "all-linear", "modules_to_save": ["lin1"]})]),
    # A second adapter: the existing lora.Linear is a target, its lora_A / base_layer children are not.
    ("all_linear_second_adapter", custom("mlp"),
     [("default", {"target_modules": ["lin0"]}), ("second", {"target_modules": "all-linear"})]),
    # lm_head already wrapped by a first adapter is still the output layer (found by identity).
    ("all_linear_after_lm_head_llama", hf("llama_gqa"),
     [("default", {**CAUSAL, "target_modules": ["lm_head"]}), ("second", {**CAUSAL, "target_modules": "all-linear"})]),
    # exclude_modules as a list (suffix or full name) and as a regex, on top of all-linear.
    ("all_linear_exclude_list_llama", hf("llama_gqa"),
     [("default", {**CAUSAL, "target_modules": "all-linear",
                   "exclude_modules": ["o_proj", "model.layers.0.mlp.down_proj"]})]),
    ("all_linear_exclude_regex_t5", t5("t5_v1_1"),
     [("default", {**S2S, "target_modules": "all-linear", "exclude_modules": r".*\.DenseReluDense\..*"})]),
    ("exclude_list_opt", hf("opt_350m_style"),
     [("default", {**CAUSAL, "target_modules": ["q_proj", "v_proj", "fc1", "project_in"],
                   "exclude_modules": ["model.decoder.layers.1.fc1", "v_proj"]})]),
    ("exclude_regex_tower", custom("tower"),
     [("default", {"target_modules": ["q", "k", "fc1"], "exclude_modules": r"model\.layers\.[02]\..*"})]),
    # layers_to_transform: an int without layers_pattern (PEFT's default index regex) ...
    ("layers_int_llama", hf("llama_gqa"),
     [("default", {**CAUSAL, "target_modules": ["q_proj", "v_proj"], "layers_to_transform": 1})]),
    # ... a list with a str pattern, a list with a list pattern, and with exclude_modules.
    ("layers_list_pattern_str_llama", hf("llama3_rope_tied"),
     [("default", {**CAUSAL, "target_modules": ["q_proj", "v_proj", "gate_proj"], "layers_to_transform": [0],
                   "layers_pattern": "layers"})]),
    ("layers_list_pattern_list_exclude_opt", hf("opt"),
     [("default", {**CAUSAL, "target_modules": ["q_proj", "k_proj", "fc2"], "layers_to_transform": [0, 1],
                   "layers_pattern": ["layers"], "exclude_modules": ["model.decoder.layers.1.self_attn.k_proj"]})]),
    # T5: "block" picks the block; "layer" picks the first ".layer.<i>." (the sub-layer).
    ("layers_pattern_block_t5", t5("mt5"),
     [("default", {**S2S, "target_modules": ["q", "v"], "layers_to_transform": [1], "layers_pattern": "block"})]),
    ("layers_pattern_layer_t5", t5("t5_v1_1"),
     [("default", {**S2S, "target_modules": ["q", "v", "wo"], "layers_to_transform": 1, "layers_pattern": ["layer"]})]),
    ("layers_default_regex_t5", t5("t5_tied"),
     [("default", {**S2S, "target_modules": ["k", "o"], "layers_to_transform": [0, 2]})]),
    # An exact full name is not filtered by layers_to_transform.
    ("layers_exact_name_tower", custom("tower"),
     [("default", {"target_modules": ["fc2", "model.layers.3.attn.q"], "layers_to_transform": [1],
                   "layers_pattern": "layers", "exclude_modules": ["nothing_here"]})]),
    ("layers_int_exclude_regex_tower", custom("tower"),
     [("default", {"target_modules": ["q", "o", "fc1", "fc2"], "layers_to_transform": 2,
                   "exclude_modules": r".*\.mlp\.fc2"})]),
    # A user list of >= 20 names is condensed to suffixes too (MIN_TARGET_MODULES_FOR_OPTIMIZATION).
    ("long_list_tower", custom("tower"),
     [("default", {"target_modules": [f"model.layers.{i}.{m}" for i in range(4)
                                      for m in ["attn.q", "attn.k", "attn.o", "mlp.fc1", "mlp.fc2"]]})]),
    # Refusals.
    ("all_linear_no_linear", custom("no_linear"), [("default", {"target_modules": "all-linear"})]),
    ("all_linear_all_excluded", custom("mlp"),
     [("default", {"target_modules": "all-linear", "exclude_modules": ["lin0", "lin1"]})]),
]


def run(case):
    name, model_desc, adapters = case
    model = build(model_desc)
    rec = {"name": name, "model": model_desc, "adapters": [{"name": a, "config": c} for a, c in adapters]}
    pm = None
    try:
        for adapter, cfg in adapters:
            lc = LoraConfig(r=2, lora_alpha=4, **cfg)
            if pm is None:
                pm = get_peft_model(model, lc, adapter_name=adapter)
            else:
                pm.add_adapter(adapter, lc)
    except ValueError as e:
        rec["error"] = str(e)
        rec["error_type"] = type(e).__name__
        return rec
    rec["targeted_module_names"] = list(pm.targeted_module_names)
    saved = {}
    with tempfile.TemporaryDirectory() as d:
        pm.save_pretrained(d, selected_adapters=[a for a, _ in adapters])
        for adapter, _ in adapters:
            sub = d if adapter == "default" else os.path.join(d, adapter)
            with open(os.path.join(sub, "adapter_config.json")) as f:
                tm = json.load(f)["target_modules"]
            saved[adapter] = sorted(tm) if isinstance(tm, list) else tm
    rec["saved_target_modules"] = saved
    return rec


def main():
    os.makedirs(OUT, exist_ok=True)
    out = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__},
           "cases": [run(c) for c in CASES]}
    with open(os.path.join(OUT, "targeting.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for c in out["cases"]:
        print(c["name"], c.get("error") or (len(c["targeted_module_names"]), c["saved_target_modules"]))


if __name__ == "__main__":
    main()
