#!/opt/peftenv/bin/python
"""Manual check, C++ → PEFT: adapters saved by peft.cpp load into Hugging Face PEFT and give
PEFT's own outputs. Not run by CI (no Python there); tests/test_peft_interop.cpp checks the
files key for key against PEFT's, this script checks that PEFT itself accepts them.

    PEFT_CPP_ADAPTER_OUT=/tmp/cpp_adapters build/tests/test_peft_interop "[interop]"
    /opt/peftenv/bin/python tests/golden/check_cpp_adapter_in_peft.py /tmp/cpp_adapters

(The virtual environment: see golden_peft.py.) For every case folder the test wrote, the base
model of tests/golden/data/peft/<case>/ is rebuilt with its PyTorch weights, the C++-written
adapter is loaded with PeftModel.from_pretrained (and load_adapter for "other"), and the eval
outputs are compared with the ones PEFT produced when it wrote the golden adapter (1e-5). Any
PEFT warning about missing adapter keys or unknown config keys fails the case. Exit status 0
when every case passes.
"""
import json
import os
import sys
import warnings

import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import golden_peft  # noqa: E402  (the model classes)
from peft import LoraConfig, PeftModel  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

BAD_WARNINGS = ("Found missing adapter keys", "Unexpected keyword arguments", "runtime_config")


def check_case(name, cpp_dir):
    golden = os.path.join(golden_peft.DATA, name)
    with safe_open(os.path.join(golden, "io.safetensors"), "pt") as f:
        info = json.loads(f.metadata()["info"])
        io = {k: f.get_tensor(k) for k in f.keys()}
    base = getattr(golden_peft, info["model"])()
    base.load_state_dict(load_file(os.path.join(golden, "base_model.safetensors")))
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = LoraConfig.from_pretrained(cpp_dir)
        pm = PeftModel.from_pretrained(base, cpp_dir)
        if "out_other" in io:
            pm.load_adapter(os.path.join(cpp_dir, "other"), "other")
    for w in caught:
        if any(b in str(w.message) for b in BAD_WARNINGS):
            problems.append("warning: %s" % w.message)
    ref_cfg = LoraConfig.from_pretrained(golden)
    for field in ("r", "lora_alpha", "lora_dropout", "bias", "target_modules", "modules_to_save", "use_rslora",
                  "use_dora", "lora_bias", "rank_pattern", "alpha_pattern", "init_lora_weights"):
        if getattr(cfg, field) != getattr(ref_cfg, field):
            problems.append("config %s: C++ %r, PEFT %r" % (field, getattr(cfg, field), getattr(ref_cfg, field)))
    pm.eval()
    x = io["x"]

    def compare(key):
        if key not in io:
            return
        got = pm(x)
        if not torch.allclose(got, io[key], atol=1e-5, rtol=1e-5):
            problems.append("%s differs: max abs %.3g" % (key, (got - io[key]).abs().max().item()))

    with torch.no_grad():
        compare("out")
        if "out_other" in io:
            pm.set_adapter("other")
            compare("out_other")
            pm.base_model.set_adapter(["default", "other"])
            compare("out_both")
            pm.set_adapter("default")
        if "merged_out" in io:
            merged = pm.merge_and_unload()(x)
            if not torch.allclose(merged, io["merged_out"], atol=1e-5, rtol=1e-5):
                problems.append("merged_out differs")
    return problems


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    cases = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not cases:
        sys.exit("no case folders under %s: run test_peft_interop with PEFT_CPP_ADAPTER_OUT=%s first" % (root, root))
    failed = 0
    for name in cases:
        problems = check_case(name, os.path.join(root, name))
        print("%-22s %s" % (name, "ok" if not problems else "FAILED"))
        for p in problems:
            print("    " + p)
        failed += bool(problems)
    print("%d of %d C++-written adapters load into PEFT %s with PEFT's outputs" % (len(cases) - failed, len(cases),
                                                                              __import__("peft").__version__))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
