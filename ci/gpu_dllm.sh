#!/usr/bin/env bash
# The dLLM family's GPU tier, from the repo root, on one CUDA GPU without network (torch + triton + tqdm + tabulate):
#   train     `python -m harness train-dllm` (the fixture checkpoint fixtures/dllm/tiny_dllm.pt, TRAIN_MINUTES)
#   accuracy  `python -m harness run --suite dllm` on that checkpoint (vanilla vs every cache, keep ratios, Triton)
#   conform   the GPU conformance of the Sparse-dLLM kernels (pytest -m gpu -k sparse)
#   bench     `python -m harness bench --suite dllm` (LLaDA-8B shapes, random bf16 weights). Default grid (issue 18):
#             8k and 16k prompts, vanilla and Sparse-dLLM with our kernels, layer layouts fused-triton, separate and
#             fused (~5-6 min on an H100); BENCH_ARGS replaces it (e.g. "--lengths 1024,2048,4096,8192,16384" for
#             every method and impl); BENCH_RERUN=1 measures cells the store already has again.
# STEPS picks a subset (default all, in that order; the device caps one command at 10 minutes, so run them in parts).
# Records go to results/ (LONGCTX_RESULTS; a fresh directory, e.g. LONGCTX_RESULTS=$OUT/results_dllm, measures every
# cell); with OUT set, the checkpoint, records and logs are copied there. The bench's table is also written to
# results/gpu/bench_dllm.log, or $LONGCTX_RESULTS/bench_dllm.log when LONGCTX_RESULTS is not results/.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=gpu
export LONGCTX_RESULTS="${LONGCTX_RESULTS:-results}"
PY="${PYTHON:-python3}"
steps=",${STEPS:-train,accuracy,conform,bench},"
ckpt=fixtures/dllm/tiny_dllm.pt
rc=0
mkdir -p results results/gpu fixtures/dllm "$LONGCTX_RESULTS"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
if [[ "$steps" == *,train,* ]]; then
  echo "== train-dllm (${TRAIN_MINUTES:-8} min)"
  "$PY" -m harness train-dllm --out "$ckpt" --force --minutes "${TRAIN_MINUTES:-8}" --eval-n 32 2>&1 | tee results/gpu/train_dllm.log || rc=1
fi
if [[ "$steps" == *,accuracy,* ]]; then
  echo "== dllm accuracy"
  "$PY" -m harness run --suite dllm --checkpoint "$ckpt" --device cuda --lengths "${ACC_LENGTHS:-1024,2048,4096}" \
      --keep-ratios 1.0,0.5,0.25 --n "${ACC_N:-64}" --no-leaderboard --no-progress --results "$LONGCTX_RESULTS" || rc=1
  "$PY" -m harness run --suite dllm --checkpoint "$ckpt" --device cuda --lengths "${ACC_LENGTHS:-1024,2048,4096}" \
      --methods sparse_dllm --impl triton --keep-ratios 1.0,0.5,0.25 --n "${ACC_N:-64}" --no-leaderboard --no-progress \
      --results "$LONGCTX_RESULTS" || rc=1
fi
if [[ "$steps" == *,conform,* ]]; then
  echo "== gpu conformance of the Sparse-dLLM kernels"
  GPU_CONFORM_EXAMPLES="${GPU_CONFORM_EXAMPLES:-8}" timeout -s INT "${CONFORM_BUDGET_S:-240}" \
      "$PY" -m pytest -m gpu suites/conformance -k "sparse" -q -p no:cacheprovider 2>&1 | tail -30 || rc=1
fi
if [[ "$steps" == *,bench,* ]]; then
  echo "== dllm throughput"
  bench_log=results/gpu/bench_dllm.log
  [ "$(realpath -m "$LONGCTX_RESULTS")" != "$(realpath -m results)" ] && bench_log="$LONGCTX_RESULTS/bench_dllm.log"
  default_grid="--lengths 8192,16384 --methods vanilla,sparse_dllm --dllm-impls triton --dllm-layers fused-triton,separate,fused"
  timeout -s INT -k 30 "${BENCH_BUDGET_S:-540}" "$PY" -m harness bench --suite dllm --no-progress \
      --results "$LONGCTX_RESULTS" ${BENCH_ARGS:-$default_grid} ${BENCH_RERUN:+--rerun} 2>&1 \
      | tee "$bench_log" || rc=1
fi
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/results/gpu" "$OUT/fixtures"
  case "$(realpath -m "$LONGCTX_RESULTS")/" in
    "$(realpath -m "$OUT")"/*) ;;  # already under OUT
    *) cp -f "$LONGCTX_RESULTS"/*.jsonl "$LONGCTX_RESULTS"/*.log "$OUT/results/" 2>/dev/null ;;
  esac
  cp -f results/gpu/*.log "$OUT/results/gpu/" 2>/dev/null
  [ -f "$ckpt" ] && cp -f "$ckpt" "$OUT/fixtures/"
fi
exit $rc
