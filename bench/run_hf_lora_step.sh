#!/usr/bin/env bash
# A LoRA fine-tuning step of the transformers decoders (bench_hf_lora_step) and its PyTorch + PEFT
# peer side by side, same thread count and shapes; prints both JSON lines and the speed-up per model.
#   usage: bench/run_hf_lora_step.sh [BUILD_DIR] [THREADS] [PYTHON]   (env: BATCH, SEQ, REPEATS, MODELS)
set -euo pipefail
build=${1:-build}
threads=${2:-1}
py=${3:-python3}
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$threads BATCH=${BATCH:-2} SEQ=${SEQ:-128} REPEATS=${REPEATS:-5} MODELS=${MODELS:-opt125m,llama125m}
ours=$("$build/bench/bench_hf_lora_step" --models "$MODELS" --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS")
theirs=$("$py" "$here/hf_lora_step_torch.py" 2>/dev/null)
echo "$ours"
echo "$theirs"
"$py" - "$ours" "$theirs" <<'PY'
import json, sys
ours = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
theirs = {r["model"]: r for r in (json.loads(l) for l in sys.argv[2].splitlines() if l.strip())}
for r in ours:
    t = theirs[r["model"]]
    assert r["params"] == t["params"] and r["trainable"] == t["trainable"], (r, t)
    print(json.dumps({"case": "hf_lora_step", "model": r["model"], "threads": r["threads"], "peer": t["impl"],
                      "tokens_per_s": r["tokens_per_s"], "peer_tokens_per_s": t["tokens_per_s"],
                      "speedup_vs_peer": round(t["median_ms"] / r["median_ms"], 2)}))
PY
