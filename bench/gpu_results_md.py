"""Turns bench/run_gpu_suite.sh's output into the markdown table of bench/results/<date>-gpu-<device>.md.

    python3 bench/gpu_results_md.py BENCH_LOG "DEVICE NAME" > bench/results/DATE-gpu-DEVICE.md

Reads the summary lines (those with "rounds") and the ratio lines (those with "speedup_vs_peer");
one row per case: our median, the peer's, the speedup, the peak-allocation ratio, and where they
apply the LoRA taxes (ours / the peer's), the path the LoRA op took, and bandwidth against a copy.
Error lines are listed last. Needs only the standard library.
"""
import json
import sys


def main(path, device):
    ours, peers, ratios, errors = {}, {}, [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                j = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "error" in j:
                errors.append(j)
            elif "speedup_vs_peer" in j:
                ratios.append(j)
            elif "rounds" in j:
                (ours if j.get("impl") == "peft.cpp" else peers).setdefault(j["case"], j)
    print(f"# GPU suite on {device}\n")
    print("Written by bench/gpu_check.sh (bench/run_gpu_suite.sh, ours vs PyTorch eager + PEFT in the same run;")
    print("medians in ms; speedup = peer / ours; peak = our peak allocated / the peer's).\n")
    print("| case | ours ms | peer ms | speedup | peak | tax (ours / peer) | path | bw vs copy (ours / peer) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in ratios:
        if r.get("peer", "").startswith("cublas"):
            continue
        c = r["case"]
        o, p = ours.get(c, {}), peers.get(c, {})
        tax = f'{r["tax"]:.3f} / {r.get("peer_tax", float("nan")):.3f}' if "tax" in r else ""
        path_ = o.get("path", "")
        if o.get("merged"):
            path_ += " (merged)"
        bw = ""
        if "bw_ratio_vs_copy" in r:
            bw = f'{r["bw_ratio_vs_copy"]:.3f} / {r.get("peer_bw_ratio_vs_copy", float("nan")):.3f}'
        print(f'| {c} | {o.get("median_ms", "")} | {p.get("median_ms", "")} | {r["speedup_vs_peer"]:.3f} | '
              f'{r.get("peak_alloc_ratio_vs_peer", "")} | {tax} | {path_} | {bw} |')
    naive = [c for c in ours if "_naive_" in c]
    if naive:
        print("\nOur own passes without a peer (the cuBLAS chain, LoraCudaPath::Chain):\n")
        print("| case | ms | tax |")
        print("|---|---|---|")
        for c in naive:
            print(f'| {c} | {ours[c]["median_ms"]} | {ours[c].get("tax", "")} |')
    if errors:
        print("\nErrors:\n")
        for e in errors:
            print(f'- {e.get("impl")} {e.get("case")}: {str(e.get("error"))[:300]}')


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "GPU")
