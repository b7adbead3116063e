#!/usr/bin/env bash
# The project's GPU check: on a machine with an NVIDIA GPU, from the project root,
#     bash bench/gpu_check.sh
# builds the CUDA targets for this GPU (sm_90 on an H100 / H200) with the default flags, runs
# every CUDA test (ctest -R "cuda|mixed|allocator"), compute-sanitizer memcheck on the kernel tests,
# and the GPU suite against PyTorch eager + PEFT (bench/run_gpu_suite.sh), then writes
# bench/results/<date>-gpu-<device>.md (the figures and the ratio table). ~5 minutes on an H200.
# env: STEPS (default "build test memcheck bench"), BENCH (suite cases; default
#      "lora_linear lora_sweep_quick gemm elementwise mlp_step poolformer"), ROUNDS / REPEATS (default 1 / 10),
#      BUILD (default /tmp/peft-gpu-build: a second call on a still-warm machine reuses it),
#      OUT (where logs go; default /tmp/peft-gpu-out), PYTHON (default python3, with torch + peft),
#      DEPS (a prefix with Eigen / Catch2 / nlohmann headers where the machine lacks them, e.g.
#      .deps/usr from ../shared/tools/device-headers), CMAKE_ARGS (more configure flags).
set -u
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
src=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/peft-gpu-out}; mkdir -p "$OUT"
b=${BUILD:-/tmp/peft-gpu-build}
steps=${STEPS:-build test memcheck bench}
cases=${BENCH:-lora_linear lora_sweep_quick gemm elementwise mlp_step poolformer}
py=${PYTHON:-python3}
has() { [[ " $steps " == *" $1 "* ]]; }
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this needs a machine with an NVIDIA GPU"; exit 2; }
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | head -1
prefix=()
[ -n "${DEPS:-}" ] && prefix=(-DCMAKE_PREFIX_PATH="$(cd "$DEPS" && pwd)")
[ -z "${DEPS:-}" ] && [ -d "$src/.deps/usr" ] && prefix=(-DCMAKE_PREFIX_PATH="$src/.deps/usr")

if has build; then
  el "gcc: $(gcc --version | head -1); nvcc: $(nvcc --version | tail -1); cores $(nproc)"
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
  # Default flags (PEFT_NATIVE on, warnings not fatal): what a user's build gets.
  cmake -S "$src" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release "${prefix[@]}" -DCMAKE_CUDA_ARCHITECTURES="${arch:-90}" \
    ${CMAKE_ARGS:-} >"$OUT/configure.log" 2>&1 || { el "configure failed"; tail -30 "$OUT/configure.log"; exit 1; }
  grep "peft:" "$OUT/configure.log"
  targets=$(cd "$src/tests" && ls test_cuda_*.cpp test_mixed_*.cpp test_allocator.cpp 2>/dev/null | sed 's/\.cpp$//')
  timeout "${BUILD_S:-360}" ninja -C "$b" -j"$(nproc)" $targets bench_gpu_suite >"$OUT/build.log" 2>&1
  rc=$?; el "build rc=$rc ($(grep -c 'warning:' "$OUT/build.log") warnings)"
  [ $rc = 0 ] || { grep -B2 -A12 -m3 "error" "$OUT/build.log" | head -60; exit 1; }
  # Would this compiler's -Werror pass on the files where Eigen's AVX-512 code comes in (issue 12)?
  for o in kernels/cpu/gemm.cpp kernels/cpu/softmax.cpp adapters/weighted_adapter.cpp; do
    cmd=$(ninja -C "$b" -t commands "CMakeFiles/peft.dir/$o.o" | tail -1)
    (cd "$b" && eval "$cmd -Werror -o /tmp/werror_probe.o") >/dev/null 2>&1 && r=ok || r=FAILED
    echo "werror probe ($(gcc -dumpversion), native): $o $r"
  done
fi
if has test; then
  (cd "$b" && timeout 300 ctest -R "cuda|mixed|allocator" -j6 --timeout 200 --output-on-failure >"$OUT/ctest.log" 2>&1)
  el "ctest rc=$?"
  grep -E "tests passed|\*\*\*|Failed  " "$OUT/ctest.log" | head -30
  grep -E "FAILED:|with expansion|due to unexpected|what\(\)|  [A-Za-z_ ]+ [<>=]+ " "$OUT/ctest.log" | head -40
fi
if has memcheck; then
  for t in $(cd "$b/tests" && ls test_cuda_kernels* test_cuda_lora_fast test_cuda_ops 2>/dev/null); do
    (cd "$b/tests" && timeout 200 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "./$t" \
       >"$OUT/memcheck_$t.log" 2>&1; echo "$t memcheck rc=$?") &
  done
  wait; el "memcheck done"
  grep -h "ERROR SUMMARY" "$OUT"/memcheck_*.log | sort | uniq -c
fi
if has bench; then
  ROUNDS=${ROUNDS:-1} REPEATS=${REPEATS:-10} timeout "${BENCH_S:-330}" bash "$src/bench/run_gpu_suite.sh" "$b" "$py" $cases \
    >"$OUT/bench.log" 2>&1
  el "bench rc=$?"
  dev=$(echo "$gpu" | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
  md="$OUT/$(date +%F)-gpu-$dev.md"
  "$py" "$src/bench/gpu_results_md.py" "$OUT/bench.log" "$gpu" >"$md" 2>"$OUT/md.err" && echo "wrote $md"
  if grep -q '"lora_sweep_' "$OUT/bench.log"; then
    "$py" "$src/bench/plot_lora_sweep.py" "$OUT/bench.log" "$OUT/$(date +%F)-lora-sweep-$dev.png" >"$OUT/sweep.txt" 2>&1
    cat "$OUT/sweep.txt"
  fi
  grep -E '"speedup|"error' "$OUT/bench.log" | cut -c1-240 | tail -45
fi
el "done; logs in $OUT: $(ls "$OUT" | tr '\n' ' ')"
