#!/usr/bin/python3
"""PyTorch golden data for peft.cpp (DESIGN.md decision 4: PyTorch is the oracle).

Regenerate (Debian's PyTorch, CPU; the `python3` on PATH may lack torch):

    /usr/bin/python3 tests/golden/make_golden.py            # every case
    python tests/golden/make_golden.py --only sdpa_          # only the cases named sdpa_*

Writes one small safetensors file per case into tests/golden/data/ (stale files are removed)
and is deterministic: every case seeds torch from a CRC of its own name, so adding a case
never changes another one. The C++ tests tests/test_golden_{ops,layers,optim}.cpp and
tests/test_lora_layers.cpp read them.

Naming inside a file (the C++ helper tests/golden_util.h relies on it):
  <input>            an input or parameter of an op ("x", "weight", "ids", ...)
  state_dict.<key>   a layer's parameters under PyTorch's own state_dict() key
  <output>           an output ("out", "h_n", "out.0", "indices", ...)
  grad_<output>      the fixed random upstream gradient of that output (the gradients below
                     are those of sum(output * grad_output) over all float outputs)
  grad.<name>        the gradient of an input or a parameter
Scalar hyper-parameters that the C++ side needs (optimizers) are in the header's __metadata__.

The cases live in golden_ops.py, golden_layers.py, golden_optim.py and golden_lora.py beside this file.
"""
import json
import os
import struct
import sys
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep tests/golden free of __pycache__
from golden_common import CASES  # noqa: E402  (the case modules beside this file)

DATA = os.path.join(HERE, "data")

# ---- a tiny safetensors writer (the safetensors package is not installed)

_DTYPES = {torch.float32: ("F32", 4), torch.int64: ("I64", 8)}


def write_safetensors(path, tensors, metadata=None):
    """Layout as huggingface/safetensors: tensors by descending dtype size then name, the
    JSON header padded with spaces to a multiple of 8, data little-endian row-major."""
    items = []
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.is_floating_point():
            t = t.to(torch.float32)
        dtype, size = _DTYPES[t.dtype]
        items.append((name, dtype, size, t))
    items.sort(key=lambda it: (-it[2], it[0]))
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, dtype, _, t in items:
        blob = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * ((8 - len(head) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def main():
    import golden_layers  # noqa: F401  (registers cases)
    import golden_lora  # noqa: F401
    import golden_ops  # noqa: F401
    import golden_optim  # noqa: F401
    import golden_attention  # noqa: F401

    # --only PREFIX: write just the cases whose name starts with PREFIX and remove nothing (adding
    # cases without regenerating the others under a newer torch).
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None

    torch.set_num_threads(1)  # reductions in a fixed order
    torch.set_default_dtype(torch.float32)
    os.makedirs(DATA, exist_ok=True)
    written = set()
    for name in sorted(n for n in CASES if only is None or n.startswith(only)):
        torch.manual_seed(zlib.crc32(name.encode("utf-8")))
        result = CASES[name]()
        tensors, metadata = result if isinstance(result, tuple) else (result, None)
        fname = name + ".safetensors"
        write_safetensors(os.path.join(DATA, fname), tensors, metadata)
        written.add(fname)
    for fname in os.listdir(DATA) if only is None else []:
        if fname.endswith(".safetensors") and fname not in written:
            os.remove(os.path.join(DATA, fname))
    total = sum(os.path.getsize(os.path.join(DATA, f)) for f in written)
    print("wrote %d cases, %d bytes, torch %s" % (len(written), total, torch.__version__))
    if only is not None:
        return
    try:  # the samples' goldens need timm and peft (see golden_poolformer.py)
        import golden_poolformer
    except ImportError as e:
        print("skipped golden_poolformer.py (%s): run it with /opt/peftenv/bin/python" % e)
    else:
        golden_poolformer.main()


if __name__ == "__main__":
    main()
