#!/usr/bin/env bash
# Runs every GPU suite case for peft.cpp (bench_gpu_suite) and PyTorch eager + PEFT + timm
# (bench/gpu_suite_torch.py) side by side, one process per case and implementation (so the peak
# allocated bytes are the case's own), ROUNDS times, alternating the two within each round so a
# slow minute (clocks, a neighbour) hits both. Mirrors bench/run_cpu_suite.sh: prints every raw
# JSON line, then per case and implementation a summary line (median_ms = median of the rounds'
# medians, min_ms = the smallest, peak = the largest, "rounds": R), then per case a ratio line
# against each other implementation (PyTorch, and for gemm the raw cuBLAS call) from the summaries.
# Error lines (an op without a CUDA kernel yet) are left out of the summaries and repeated last.
#   usage: bench/run_gpu_suite.sh BUILD_DIR [PYTHON] [CASES...]
#   env:   ROUNDS (default 2), REPEATS (per process, both sides; default 20)
# CASES: gemm elementwise mlp_step poolformer lora_linear (default: these five), lora_sweep_quick (12
# BF16 points, ~1 min) or lora_sweep (the
# spec's grid of LoRA shapes; long: ROUNDS=1 REPEATS=20 take several minutes). PYTHON: the interpreter that
# holds torch, peft and timm (default python3). Without a CUDA device both sides print
# {"skipped": ...} and there is nothing to summarise.
set -euo pipefail
build=${1:?usage: bench/run_gpu_suite.sh BUILD_DIR [PYTHON] [CASES...]}
py=${2:-python3}
shift $(( $# < 2 ? $# : 2 ))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(gemm elementwise mlp_step poolformer lora_linear)
rounds=${ROUNDS:-2}
repeats=${REPEATS:-20}
here=$(cd "$(dirname "$0")" && pwd)
ours="$build/bench/bench_gpu_suite"
[ -x "$ours" ] || { echo "no $ours: configure with the CUDA backend and build bench_gpu_suite" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for ((round = 1; round <= rounds; ++round)); do
  for c in "${cases[@]}"; do
    # Odd rounds start with ours, even rounds with the peer.
    if (( round % 2 )); then order=(ours peer); else order=(peer ours); fi
    for who in "${order[@]}"; do
      if [ "$who" = ours ]; then
        "$ours" --case "$c" --repeats "$repeats" | tee -a "$log" || echo "bench_gpu_suite failed on $c" >&2
      else
        REPEATS=$repeats PYTHONUNBUFFERED=1 "$py" "$here/gpu_suite_torch.py" "$c" | tee -a "$log" \
          || echo "gpu_suite_torch.py failed on $c" >&2
      fi
    done
  done
done

"$py" - "$log" <<'PY'
import json, statistics, sys
rows, errors = {}, {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    if "error" in r:
        errors[(r["case"], r["impl"])] = r
    elif "case" in r:
        rows.setdefault((r["case"], r["impl"]), []).append(r)
summary = {}
for (case, impl), rs in rows.items():
    s = dict(rs[0])
    s["median_ms"] = round(statistics.median(r["median_ms"] for r in rs), 4)
    s["min_ms"] = round(min(r["min_ms"] for r in rs), 4)
    s["peak_alloc_bytes"] = max(r["peak_alloc_bytes"] for r in rs)
    for rate in ("tflops", "gbps", "images_per_s"):  # rescaled to the summary's median time
        if s.get(rate):
            s[rate] = round(rs[0][rate] * rs[0]["median_ms"] / s["median_ms"], 3)
    for ratio in ("tflops_ratio_vs_raw", "bw_ratio_vs_copy", "tax"):  # measured within one process
        if ratio in s:
            s[ratio] = round(statistics.median(r[ratio] for r in rs), 3)
    s["rounds"] = len(rs)
    summary[(case, impl)] = s
    print(json.dumps(s))
for (case, impl), o in summary.items():
    if impl != "peft.cpp":
        continue
    for (c2, peer), t in summary.items():
        if c2 != case or peer == "peft.cpp":
            continue
        out = {"case": case, "device": o["device"], "peer": peer,
               "speedup_vs_peer": round(t["median_ms"] / o["median_ms"], 3),
               "speedup_vs_peer_min": round(t["min_ms"] / o["min_ms"], 3)}
        if t["peak_alloc_bytes"]:
            out["peak_alloc_ratio_vs_peer"] = round(o["peak_alloc_bytes"] / t["peak_alloc_bytes"], 3)
        if "tax" in o:  # the LoRA tax of each implementation, against its own plain linear
            out["tax"], out["peer_tax"] = o["tax"], t.get("tax")
        if "bw_ratio_vs_copy" in o:
            out["bw_ratio_vs_copy"] = o["bw_ratio_vs_copy"]
            out["peer_bw_ratio_vs_copy"] = t.get("bw_ratio_vs_copy")
        print(json.dumps(out))
for r in errors.values():  # last, so the end of the output (all a device call returns) shows them
    print(json.dumps(r))
PY
