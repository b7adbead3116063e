"""Plots CPU-suite results: one group of bars per case, one bar per implementation (peft.cpp and
each PyTorch peer), time on a log axis, each peer's bar labelled with peft.cpp's speed-up over it.

Reads the JSON lines that bench/run_cpu_suite.sh prints (as kept in the ```-fenced "Raw JSON"
blocks of bench/results/*.md, or a plain log); later lines for the same (impl, case, threads)
replace earlier ones, so the runner's summary lines (printed last) are the ones drawn.
Needs matplotlib (PyPI), e.g. in the PyPI-torch venv of run_cpu_suite.sh:

    python bench/plot_cpu_suite.py --threads 1 --out bench/results/cpu-suite-1t.png \
        bench/results/2026-11-22-cpu-suite.md bench/results/2026-11-23-cpu-suite-pypi.md
"""
import argparse, json, sys

CASE_LABELS = {
    "gemm_2048": "GEMM 2048³",
    "lora_linear_fwd_bwd": "lora_linear\nfwd+bwd",
    "mlp_lora_64": "MLP LoRA step\nbatch 64",
    "mlp_lora_1024": "MLP LoRA step\nbatch 1024",
    "poolformer_m36_fwd_bwd_b2": "PoolFormer-M36\nfwd+bwd b2",
}


def read_results(paths, threads):
    rows = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if "impl" not in r or r.get("threads") != threads:
                    continue  # ratio lines and other thread counts
                rows[(r["impl"], r["case"])] = r
    return rows


def short_impl(impl):
    if impl == "peft.cpp":
        return impl
    torch_part = impl.split("+peft")[0].replace("pytorch-", "PyTorch ")
    label = torch_part.replace("1.13.0a0", "1.13 (Debian)") + (" (PyPI)" if "1.13" not in torch_part else "")
    return label + (", generic BLAS" if impl.endswith("+generic-blas") else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = read_results(args.files, args.threads)
    if not rows:
        sys.exit(f"no results for {args.threads} thread(s) in {args.files}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in CASE_LABELS if any(k[1] == c for k in rows)]
    impls = ["peft.cpp"] + sorted({k[0] for k in rows if k[0] != "peft.cpp"})
    width = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for i, impl in enumerate(impls):
        xs, ys, labels = [], [], []
        for ci, case in enumerate(cases):
            r = rows.get((impl, case))
            ours = rows.get(("peft.cpp", case))
            if r is None:
                continue
            xs.append(ci + (i - (len(impls) - 1) / 2) * width)
            ys.append(r["median_ms"])
            labels.append("" if impl == "peft.cpp" or ours is None else f"{r['median_ms'] / ours['median_ms']:.2f}×")
        bars = ax.bar(xs, ys, width, label=short_impl(impl))
        for b, text in zip(bars, labels):
            if text:
                ax.annotate(text, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                            fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylabel("median time per step, ms (log scale; lower is better)")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([CASE_LABELS[c] for c in cases], fontsize=9)
    ax.set_title(f"CPU suite, {args.threads} thread(s): labels = peer time / peft.cpp time")
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
