#!/usr/bin/env bash
# One GPU visit that times the low-rank kernel at HEAD against an earlier commit in the same run (same card, same
# clocks), then checks HEAD: each kernel's device time and the graph-timed call for both trees
# (ci/profile_fourier_lowrank.py), then HEAD's fold-path conformance and the bench through ci/gpu_lowrank.sh.
# The earlier tree travels as an ignored folder, made here before the call:
#   mkdir -p tmp/base && git archive <commit> optimized ci harness reference pyproject.toml | tar -x -C tmp/base
# and the device call carries it (run's carry: ["tmp/base"]):
#   LONGCTX_GIT_SHA=<sha> BASE_SHA=<full sha of the commit> OUT=$OUT bash ci/gpu_lowrank_ab.sh
# Writes $OUT/profile_base.json, $OUT/profile_head.json and what ci/gpu_lowrank.sh writes. AB_CASES (default
# 1x4096,1x32768,1x131072), PROFILE_S (seconds per tree, 120), STEPS (ci/gpu_lowrank.sh's steps after the two
# profiles; default conform,bench), CONFORM_RUNS (default: the fold wrappers in bfloat16 and float16).
# On a fresh H100 (8445b91) the two profiles and the bench (STEPS=bench) took 99 s; the four default conformance runs
# at once, EXAMPLES=10, 105-111 s each. A float32 run of the registered op took 187 s beside three others: give it
# CONFORM_S=300.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT, the device output folder}" "${BASE_SHA:?set BASE_SHA, the commit that tmp/base holds}"
if [[ ! -d tmp/base/optimized ]]; then
  echo "tmp/base/optimized is missing: make it with git archive (see the top of this script) and carry tmp/base" >&2
  exit 2
fi
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
cases="${AB_CASES:-1x4096,1x32768,1x131072}"
rc=0
echo "== HEAD ($LONGCTX_GIT_SHA)"
PYTHONPATH="$PWD" timeout "${PROFILE_S:-120}" "$PY" ci/profile_fourier_lowrank.py --cases "$cases" \
  --out "$OUT/profile_head.json" || rc=1
echo "== base ($BASE_SHA)"
(cd tmp/base && LONGCTX_GIT_SHA="$BASE_SHA" PYTHONPATH="$PWD" timeout "${PROFILE_S:-120}" "$PY" \
  ci/profile_fourier_lowrank.py --cases "$cases" --out "$OUT/profile_base.json") || rc=1
folds="ci.lowrank_f32_coefs:uniform_folds ci.lowrank_f32_coefs:varlen_folds"
runs=""
for dt in bfloat16 float16; do
  for impl in $folds; do
    op=fourier_decode_attention
    [[ $impl == *varlen* ]] && op=fourier_decode_attention_varlen
    runs+="$op,$impl,$dt "
  done
done
STEPS="${STEPS:-conform,bench}" CONFORM_RUNS="${CONFORM_RUNS:-$runs}" CONFORM_JOBS="${CONFORM_JOBS:-4}" \
  EXAMPLES="${EXAMPLES:-10}" OUT="$OUT" bash ci/gpu_lowrank.sh || rc=1
exit $rc
