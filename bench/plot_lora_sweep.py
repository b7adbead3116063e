"""Plots the LoRA tax (lora / plain - 1, forward + backward) per shape of a lora_sweep or
lora_sweep_quick run for each path: ours "auto" (LoraCudaPath::Auto), ours "chain" (PEFT's order on
cuBLAS) and PyTorch eager + PEFT, from bench/run_gpu_suite.sh's output.

    python3 bench/plot_lora_sweep.py BENCH_LOG OUT.png [fwd_bwd|fwd]

Needs matplotlib (the GPU machine's image has it). Prints the table it plots.
"""
import json
import sys


def main(log, out_png, which="fwd_bwd"):
    rows = {}  # base name -> {"auto": tax, "chain": tax, "peer": tax}
    with open(log) as f:
        for line in f:
            if not line.startswith("{") or "rounds" not in line:
                continue
            j = json.loads(line)
            case = j.get("case", "")
            if not case.startswith("lora_sweep_") or "tax" not in j:
                continue
            for kind, suffix in (("auto", f"_lora_{which}"), ("chain", f"_naive_{which}")):
                if case.endswith(suffix):
                    key = "peer" if j.get("impl") != "peft.cpp" else kind
                    if key == "peer" and kind == "chain":
                        continue
                    rows.setdefault(case[: -len(suffix)].replace("lora_sweep_", ""), {})[key] = j["tax"]
    names = sorted(rows)
    print(f"{'shape':44s} {'auto':>8s} {'chain':>8s} {'pytorch':>8s}")
    for n in names:
        r = rows[n]
        print(f"{n:44s} {r.get('auto', float('nan')):8.3f} {r.get('chain', float('nan')):8.3f} "
              f"{r.get('peer', float('nan')):8.3f}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(names)), 5))
    xs = range(len(names))
    w = 0.27
    for k, (key, label) in enumerate((("auto", "peft.cpp Auto"), ("chain", "peft.cpp chain"),
                                       ("peer", "PyTorch + PEFT"))):
        ax.bar([x + (k - 1) * w for x in xs], [rows[n].get(key, 0.0) for n in names], w, label=label)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"LoRA tax ({which.replace('_', '+')}), lora / plain - 1")
    ax.axhline(0.10, color="gray", linestyle="--", linewidth=0.8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    print(f"wrote {out_png}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
