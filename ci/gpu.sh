#!/usr/bin/env bash
# The GPU tier, from the repo root, on a machine with one CUDA GPU and no network:
#   1. the kernels benchmark (`python -m harness bench --suite kernels`) into results/kernels_bench.jsonl,
#   2. `pytest -m gpu suites/perf` (pytest-benchmark), then the other `pytest -m gpu suites/` tests (compiled Triton
#      kernels vs the references in bf16/fp16/fp32),
#   3. `compute-sanitizer` (racecheck, then memcheck) over every Triton kernel on its op's explicit examples
#      (ci/sanitize_kernels.py): shared-memory races and out-of-bounds accesses the CPU tier's interpreter cannot see
#      (it runs programs one after another). racecheck's reports go through ci/racecheck_verdict.py, which lets the
#      replicated-lane writes of Triton's reduction lowering pass and fails on anything else. Skipped, with the
#      reason printed, where compute-sanitizer is not installed.
# The benchmark runs first (its numbers are what the leaderboard needs) and a failing pytest never stops it; both
# exit codes are printed and the script exits non-zero if either failed.
#
# Environment:
#   QUICK=1                a small grid (one shape, batch 1 and 4, 4k and 32k tokens) and fewer conformance examples
#   BENCH_ARGS="..."       extra arguments for `python -m harness bench` (e.g. "--rerun" or "--full-grid")
#   GPU_CONFORM_EXAMPLES   hypothesis examples per (op, dtype) in the GPU conformance test (default 15, QUICK 8);
#                          each kernel's report and its speed vs the reference go to $LONGCTX_RESULTS (results/)
#   LONGCTX_GIT_SHA        the commit the records name, when this tree is a copy whose .git is not that commit
#   BENCH_BUDGET_S         seconds the benchmark may run before it is interrupted (default 240; every finished
#                          configuration is already in the store, and running the script again resumes)
#   PERF_BUDGET_S          seconds the perf suite may run before it is interrupted (default 60)
#   PYTEST_BUDGET_S        seconds the other gpu tests may run before they are interrupted (default 180; pytest still
#                          writes its report)
#   SANITIZE_BUDGET_S      seconds each compute-sanitizer tool may run (default 600)
#   SANITIZE_ARGS          arguments for ci/sanitize_kernels.py (e.g. "--ops fourier_decode_attention --examples 1")
#   STEPS                  comma-separated subset of bench,perf,gpu,sanitize (default all four), e.g. to finish a run that
#                          a per-command time limit cut short
#   PYTEST_ARGS            extra arguments for the gpu pytest step (e.g. -k "fourier_decode_attention-triton")
#   OUT                    if set, results/*.jsonl written by this run, the junit xml, the benchmark json and the
#                          log are copied there
# Seen on one H100 (2026-11-27): the default grid (30 configurations x 3 kernels; 38 since batch 8 joined) about 3 minutes, the perf suite 10 s,
# the gpu conformance of the 5 Triton kernels at 8 examples per dtype about 10 minutes (compiles dominate). The
# budgets cap the whole script at 240 + 60 + 720 s (+ 2 x 600 s for the sanitizer) plus versions and copying.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export HYPOTHESIS_PROFILE=gpu
export LONGCTX_RESULTS="${LONGCTX_RESULTS:-results}"  # the gpu conformance test stores its reports + speed here
PY="${PYTHON:-python3}"
QUICK="${QUICK:-0}"
if [ "$QUICK" = "1" ]; then
  export GPU_CONFORM_EXAMPLES="${GPU_CONFORM_EXAMPLES:-8}"
  bench_grid=(--quick)
else
  export GPU_CONFORM_EXAMPLES="${GPU_CONFORM_EXAMPLES:-15}"
  bench_grid=()
fi
bench_budget="${BENCH_BUDGET_S:-240}"
perf_budget="${PERF_BUDGET_S:-60}"
budget="${PYTEST_BUDGET_S:-720}"
steps=",${STEPS:-bench,perf,gpu,sanitize},"
sanitize_budget="${SANITIZE_BUDGET_S:-600}"
bench_rc=0; perf_rc=0; gpu_rc=0; sanitize_rc=0
work="$(mktemp -d)"
stamp="$work/stamp"
touch "$stamp"
mkdir -p results

# Packages missing here come from wheels/ (no index, no dependencies); none missing or no wheels/: nothing to do.
if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1; then
  for whl in wheels/*.whl; do
    name="$(basename "$whl" | cut -d- -f1)"
    if ! "$PY" -m pip show "$name" >/dev/null 2>&1; then
      "$PY" -m pip install -q --no-deps --no-index "$whl" || echo "ci/gpu.sh: could not install $whl (going on)"
    fi
  done
fi

echo "== versions"
"$PY" - <<'EOF'
import platform
import torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
for name in ("triton", "transformers", "hypothesis", "pytest_benchmark", "tabulate", "tqdm", "gguf"):
    try:
        mod = __import__(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except ImportError as exc:
        print(f"{name} MISSING ({exc})")
EOF
nvidia-smi || echo "ci/gpu.sh: nvidia-smi failed"

if [[ "$steps" == *,bench,* ]]; then
echo "== kernels benchmark (budget ${bench_budget}s; an interrupted sweep keeps its records, a rerun resumes)"
timeout -s INT -k 30 "$bench_budget" "$PY" -m harness bench --suite kernels --no-progress ${bench_grid[@]+"${bench_grid[@]}"} ${BENCH_ARGS:-} 2>&1 | tee "$work/bench.log"
bench_rc=${PIPESTATUS[0]}
fi

bench_json=()
if "$PY" -c "import pytest_benchmark" 2>/dev/null; then bench_json=(--benchmark-json="$work/pytest-benchmark.json"); fi
# The perf suite first (about a minute), then every other gpu test; SIGINT at the budget: pytest stops like on
# Ctrl-C and still writes its junit xml and summary.
if [[ "$steps" == *,perf,* ]]; then
echo "== pytest -m gpu suites/perf (budget ${perf_budget}s)"
timeout -s INT -k 60 "$perf_budget" "$PY" -m pytest -m gpu suites/perf -q -p no:cacheprovider \
  --junitxml="$work/pytest-perf-junit.xml" ${bench_json[@]+"${bench_json[@]}"} 2>&1 | tee "$work/pytest.log"
perf_rc=${PIPESTATUS[0]}
fi
if [[ "$steps" == *,gpu,* ]]; then
eval "pytest_extra=(${PYTEST_ARGS:-})"  # shell words, so -k "a or b" stays one argument
echo "== pytest -m gpu suites/ (budget ${budget}s, ${GPU_CONFORM_EXAMPLES} conformance examples per op and dtype)"
timeout -s INT -k 60 "$budget" "$PY" -m pytest -m gpu suites/ --ignore=suites/perf -q -s -p no:cacheprovider \
  --continue-on-collection-errors --junitxml="$work/pytest-gpu-junit.xml" ${pytest_extra[@]+"${pytest_extra[@]}"} 2>&1 | tee -a "$work/pytest.log"
gpu_rc=${PIPESTATUS[0]}
fi
pytest_rc=$(( perf_rc != 0 ? perf_rc : gpu_rc ))

if [[ "$steps" == *,sanitize,* ]]; then
sanitizer="$(command -v compute-sanitizer || true)"
for candidate in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer; do
  [ -z "$sanitizer" ] && [ -x "$candidate" ] && sanitizer="$candidate"
done
if [ -z "$sanitizer" ]; then
  echo "== compute-sanitizer: SKIPPED (not on PATH, nor in \$CUDA_HOME/bin or /usr/local/cuda/bin: install the CUDA toolkit's compute-sanitizer to check the kernels for races and out-of-bounds accesses)"
else
  for tool in racecheck memcheck; do
    echo "== compute-sanitizer --tool $tool over the Triton kernels (budget ${sanitize_budget}s)"
    timeout -s INT -k 30 "$sanitize_budget" "$sanitizer" --tool "$tool" --error-exitcode 3 --print-limit 1000 \
      "$PY" ci/sanitize_kernels.py ${SANITIZE_ARGS:-} 2>&1 | tee "$work/sanitize-$tool.log"
    rc=${PIPESTATUS[0]}
    cat "$work/sanitize-$tool.log" >> "$work/sanitize.log"
    if [ "$tool" = racecheck ] && [ "$rc" -eq 3 ]; then
      # racecheck's errors are sorted: replicated-lane writes of Triton's own lowering pass, anything else fails
      "$PY" ci/racecheck_verdict.py "$work/sanitize-$tool.log" 2>&1 | tee -a "$work/sanitize.log"
      rc=${PIPESTATUS[0]}
    fi
    [ "$rc" -ne 0 ] && sanitize_rc=$rc
  done
fi
fi

echo "== exit codes: bench=$bench_rc pytest-perf=$perf_rc pytest-gpu=$gpu_rc sanitize=$sanitize_rc (124: that step hit its budget; sanitize 3: the tool found an error)"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  find results -maxdepth 1 -name '*.jsonl' -newer "$stamp" -exec cp {} "$OUT/" \;
  for f in pytest-perf-junit.xml pytest-gpu-junit.xml pytest-benchmark.json; do [ -f "$work/$f" ] && cp "$work/$f" "$OUT/"; done
  cat "$work"/*.log > "$OUT/gpu-log.txt"
  ls -l "$OUT"
fi
[ "$bench_rc" -eq 0 ] && [ "$pytest_rc" -eq 0 ] && [ "$sanitize_rc" -eq 0 ]
