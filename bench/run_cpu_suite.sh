#!/usr/bin/env bash
# Runs every CPU suite case for peft.cpp and each PyTorch peer side by side (same threads, one
# process per case, so max RSS is the case's own), ROUNDS times, alternating implementations
# within each round so that a noisy minute on this shared machine hits every one of them.
# Prints every raw JSON line, then per case and implementation a summary line (same fields;
# median_ms = median of the rounds' medians, min_ms = the smallest, "rounds": R) and a ratio
# line per peer computed from the summaries.
#   usage: bench/run_cpu_suite.sh [BUILD_DIR] [THREADS] [PEERS] [CASES...]
#   env:   ROUNDS (default 3), REPEATS (per process, passed to the peers; ours uses its own default),
#          GENERIC_REPEATS (default 5, the generic-BLAS peer's repeats)
# PEERS: space-separated peer specs, each an interpreter path, optionally prefixed with
# "generic-blas:" (run it with Debian's reference BLAS/LAPACK first on the library path).
# Default: every one of these that exists:
#   generic-blas:/opt/peftenv/bin/python  Debian's torch 1.13 as Debian ships it without an optimised
#                             BLAS (the spec's "Debian PyTorch 1.13, generic BLAS" peer): libblas.so.3 is
#                             a Debian alternative, and installing libopenblas-dev (our install-deps does)
#                             switches it to OpenBLAS; the prefix pins netlib's reference BLAS again.
#   /opt/peftenv/bin/python   Debian's torch 1.13 (python3-torch) + PEFT 0.21.2 + timm 1.0.31 with the
#                             system's current BLAS alternative (venv with system site packages; recipe
#                             in tests/golden/golden_peft.py)
#   /opt/torchpypi/bin/python PyTorch from PyPI (MKL, oneDNN) + PEFT 0.21.2 + timm 1.0.31:
#                             python3 -m venv /opt/torchpypi &&
#                             /opt/torchpypi/bin/pip install torch peft==0.21.2 timm==1.0.31 matplotlib
# falling back to /usr/bin/python3 (Debian's torch without PEFT).
set -euo pipefail
build=${1:-build}
threads=${2:-1}
peer_specs=${3:-}
shift $(( $# < 3 ? $# : 3 ))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(gemm lora_linear mlp_lora_64 mlp_lora_1024 poolformer)
rounds=${ROUNDS:-3}
generic_blas=/usr/lib/x86_64-linux-gnu/blas
generic_lapack=/usr/lib/x86_64-linux-gnu/lapack
if [ -z "$peer_specs" ]; then
  if [ -x /opt/peftenv/bin/python ]; then
    [ -e "$generic_blas/libblas.so.3" ] && peer_specs+="generic-blas:/opt/peftenv/bin/python "
    peer_specs+="/opt/peftenv/bin/python "
  fi
  [ -x /opt/torchpypi/bin/python ] && peer_specs+="/opt/torchpypi/bin/python "
  [ -n "$peer_specs" ] || peer_specs=/usr/bin/python3
fi
read -r -a peers <<<"$peer_specs"
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$threads
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_peer() {  # spec case
  local spec=$1 c=$2
  if [[ $spec == generic-blas:* ]]; then
    # Only the MLP steps, where the spec sets its 3x bar; on reference BLAS the other cases take
    # minutes per repeat. Fewer repeats for the same reason (the MLP b1024 step is ~4 s there).
    [[ $c == mlp_lora_* ]] || return 0
    REPEATS=${GENERIC_REPEATS:-5} LD_LIBRARY_PATH="$generic_blas:$generic_lapack${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      PEFT_BENCH_IMPL_SUFFIX="+generic-blas" "${spec#generic-blas:}" "$here/cpu_suite_torch.py" "$c"
  else
    "$spec" "$here/cpu_suite_torch.py" "$c"
  fi
}

for ((round = 1; round <= rounds; ++round)); do
  for c in "${cases[@]}"; do
    "$build/bench/bench_cpu_suite" --case "$c" | tee -a "$log"
    for spec in "${peers[@]}"; do
      run_peer "$spec" "$c" | tee -a "$log" || echo "peer $spec failed on $c" >&2
    done
  done
done

python3 - "$log" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        rows.setdefault((r["case"], r["impl"]), []).append(r)
summary = {}
for (case, impl), rs in rows.items():
    s = dict(rs[0])
    s["median_ms"] = round(statistics.median(r["median_ms"] for r in rs), 3)
    s["min_ms"] = round(min(r["min_ms"] for r in rs), 3)
    s["max_rss_mib"] = max(r["max_rss_mib"] for r in rs)
    if s.get("gflops"):
        s["gflops"] = round(rs[0]["gflops"] * rs[0]["median_ms"] / s["median_ms"], 1)
    s["rounds"] = len(rs)
    summary[(case, impl)] = s
    print(json.dumps(s))
for (case, impl), o in summary.items():
    if impl != "peft.cpp":
        continue
    for (c2, peer), t in summary.items():
        if c2 == case and peer != "peft.cpp":
            print(json.dumps({"case": case, "threads": o["threads"], "peer": peer,
                              "speedup_vs_peer": round(t["median_ms"] / o["median_ms"], 2),
                              "speedup_vs_peer_min": round(t["min_ms"] / o["min_ms"], 2),
                              "rss_ratio_vs_peer": round(o["max_rss_mib"] / t["max_rss_mib"], 2)}))
PY
