#!/usr/bin/env bash
# Runs every CPU suite case for peft.cpp and each PyTorch peer side by side (same threads, one
# process per case, so max RSS is the case's own) and prints the JSON lines plus a ratio line
# per case and peer.
#   usage: bench/run_cpu_suite.sh [BUILD_DIR] [THREADS] [PYTHONS] [CASES...]
# PYTHONS: space-separated interpreters, one per peer. Default: every one of these that exists:
#   /opt/peftenv/bin/python   Debian's torch 1.13 (python3-torch) + PEFT 0.21.2 + timm 1.0.31
#                             (venv with system site packages; recipe in tests/golden/golden_peft.py)
#   /opt/torchpypi/bin/python PyTorch from PyPI (MKL, oneDNN) + PEFT 0.21.2 + timm 1.0.31:
#                             python3 -m venv /opt/torchpypi &&
#                             /opt/torchpypi/bin/pip install torch peft==0.21.2 timm==1.0.31 matplotlib
# falling back to /usr/bin/python3 (Debian's torch without PEFT).
set -euo pipefail
build=${1:-build}
threads=${2:-1}
pys=${3:-}
shift $(( $# < 3 ? $# : 3 ))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(gemm lora_linear mlp_lora_64 mlp_lora_1024 poolformer)
if [ -z "$pys" ]; then
  for p in /opt/peftenv/bin/python /opt/torchpypi/bin/python; do [ -x "$p" ] && pys+="$p "; done
  [ -n "$pys" ] || pys=/usr/bin/python3
fi
read -r -a peers <<<"$pys"
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$threads
for c in "${cases[@]}"; do
  ours=$("$build/bench/bench_cpu_suite" --case "$c")
  echo "$ours"
  for py in "${peers[@]}"; do
    theirs=$("$py" "$here/cpu_suite_torch.py" "$c" || echo '{}')
    echo "$theirs"
    python3 -c '
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if t:
    print(json.dumps({"case": o["case"], "threads": o["threads"], "peer": t["impl"],
                      "speedup_vs_peer": round(t["median_ms"] / o["median_ms"], 2),
                      "rss_ratio_vs_peer": round(o["max_rss_mib"] / t["max_rss_mib"], 2)}))' "$ours" "$theirs"
  done
done
