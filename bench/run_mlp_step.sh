#!/usr/bin/env bash
# Runs the seed-MLP training-step benchmark for peft.cpp and its PyTorch peer side by side,
# at the same thread count, and prints both JSON lines plus the speed-up per batch.
#   usage: bench/run_mlp_step.sh [BUILD_DIR] [THREADS] [PYTHON]
set -euo pipefail
build=${1:-build}
threads=${2:-1}
py=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$threads
ours=$("$build/bench/bench_mlp_step")
theirs=$("$py" "$here/mlp_step_torch.py")
echo "$ours"
echo "$theirs"
"$py" - "$ours" "$theirs" <<'PY'
import json, sys
ours = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
theirs = {r["batch"]: r for r in (json.loads(l) for l in sys.argv[2].splitlines() if l.strip())}
for r in ours:
    t = theirs[r["batch"]]
    print(json.dumps({"case": "mlp_step", "batch": r["batch"], "threads": r["threads"], "peer": t["impl"],
                      "speedup_vs_peer": round(t["median_ms"] / r["median_ms"], 2)}))
PY
