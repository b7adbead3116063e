#!/usr/bin/env bash
# Runs every CPU suite case for peft.cpp and the PyTorch peer side by side (same threads, one
# process per case) and prints the JSON lines plus a ratio line per case.
#   usage: bench/run_cpu_suite.sh [BUILD_DIR] [THREADS] [PYTHON] [CASES...]
# PYTHON defaults to /opt/peftenv/bin/python (PEFT + timm on Debian's torch; recipe in
# tests/golden/golden_peft.py) when present, else /usr/bin/python3.
set -euo pipefail
build=${1:-build}
threads=${2:-1}
py=${3:-}
shift $(( $# < 3 ? $# : 3 ))
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(gemm lora_linear mlp_lora_64 mlp_lora_1024 poolformer)
if [ -z "$py" ]; then
  if [ -x /opt/peftenv/bin/python ]; then py=/opt/peftenv/bin/python; else py=/usr/bin/python3; fi
fi
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$threads
for c in "${cases[@]}"; do
  ours=$("$build/bench/bench_cpu_suite" --case "$c")
  theirs=$("$py" "$here/cpu_suite_torch.py" "$c" || echo '{}')
  echo "$ours"
  echo "$theirs"
  "$py" -c '
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if t:
    print(json.dumps({"case": o["case"], "threads": o["threads"], "peer": t["impl"],
                      "speedup_vs_peer": round(t["median_ms"] / o["median_ms"], 2),
                      "rss_ratio_vs_peer": round(o["max_rss_mib"] / t["max_rss_mib"], 2)}))' "$ours" "$theirs"
done
