#!/usr/bin/env bash
# One GPU visit for the low-rank FlashFourierAttention kernel (triton_fourier_lowrank), in order of importance, each
# step under its own time limit so a call of at most 10 minutes returns what finished:
#   bench    the four target cells beside SDPA-flash in one run each (runs aligned to 8, --rerun), about a minute;
#   conform  gpu-profile conformance (seed 0): the float32-coefficient wrappers (ci.lowrank_f32_coefs: the paths the
#            KV method's coefficients and the benchmark take) in the 16-bit dtypes and the registered ops in float32,
#            then the registered ops in the 16-bit dtypes. One run per (op, dtype), CONFORM_JOBS at a time: a
#            conformance run writes its records only when all its dtypes are done, and on a fresh machine the builds
#            alone take a minute or more (CPU-bound);
#   tune     ci/tune_fourier_lowrank.py --shapes-only at the three target cells of the sweep -> $OUT/tune_lowrank.json;
#   profile  ci/profile_fourier_lowrank.py: each kernel's device time -> $OUT/profile_lowrank.json, and with
#            PROFILE_ATTRS (plan attributes, e.g. vo_fused=False,a_t=True) set on the plans ->
#            $OUT/profile_lowrank_attrs.json.
# Records go to $OUT/results (merge them into results/ after reading them). STEPS (default bench,conform,tune,profile;
# the steps run in the order given, so a short device budget puts the deciding one first), TUNE_CASES and
# PROFILE_CASES (the BxT cells of the sweep and the profiles; default 8x32768,1x131072,1x32768 and 8x32768,1x131072),
# TUNE_SHAPES (a JSON list of shapes the sweep times instead of its quick shapes),
# CONFORM_SET (all; f32coefs: the six runs whose coefficients are float32; rest: the other four), CONFORM_JOBS (runs
# at once, 3), CONFORM_RUNS (explicit space-separated "op,impl,dtype" runs instead of the set, e.g.
# "fourier_decode_attention,ci.lowrank_f32_coefs:uniform_bf16_gemms,bfloat16"), EXAMPLES (default 20), CONFORM_S
# (seconds per run, 240). LONGCTX_GIT_SHA=<sha>: the full sha of the checkout that travels, written out where the call
# is made (on the lent machine `git rev-parse HEAD` named the session's first commit, not the tree that travelled:
# 2026-12-07, fixed by hand in that visit's records). With little device time left, the quick
# shapes' answer alone (the sweep's quick shapes at 8 x 32k, then the profile with vo_fused off and on):
#   LONGCTX_GIT_SHA=<sha> STEPS=tune,profile TUNE_CASES=8x32768 PROFILE_CASES=8x32768 \
#     PROFILE_ATTRS=vo_fused=False TUNE_S=150 bash ci/gpu_lowrank.sh
# On the H100 one conformance run took 30-65 s alone. On a fresh H200 (bbd8f01), three at once with 150 s each were
# cut while compiling; the six f32coefs runs at once with 280 s took 104-241 s, the other four 127-200 s. On an H100
# (2026-12-07) the six at once with 280 s were too many: four took 199-264 s (two of them cut before storing) and the
# two float32 runs were cut while compiling; four at once with EXAMPLES=10 took 101-109 s. So the conformance takes
# two calls:
#   LONGCTX_GIT_SHA=<sha> STEPS=bench,conform CONFORM_SET=f32coefs CONFORM_JOBS=6 CONFORM_S=280 \
#     bash ci/gpu_lowrank.sh
#   LONGCTX_GIT_SHA=<sha> STEPS=conform,tune,profile CONFORM_SET=rest CONFORM_JOBS=4 CONFORM_S=270 \
#     bash ci/gpu_lowrank.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
OUT="${OUT:-runs/gpu-lowrank}"
RESULTS="$OUT/results"
IFS=, read -ra order <<< "${STEPS:-bench,conform,tune,profile}"
for step in "${order[@]}"; do  # a misspelt step fails before the machine's time goes to the others
  if [[ ! "$step" =~ ^(bench|conform|tune|profile)$ ]]; then
    echo "unknown step '$step' in STEPS (bench, conform, tune, profile)" >&2
    exit 2
  fi
done
mkdir -p "$RESULTS"
rc=0
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"

# conform_op OP IMPL DTYPES...: one gpu-profile run per dtype, CONFORM_JOBS (3) at a time (the builds are CPU-bound;
# ten at once on the 16 cores all passed 180 s), each into its own store under $RESULTS/parts, merged when all are
# done (`conform_wait`)
conform_op() {
  local op=$1 impl=$2 dt part
  shift 2
  for dt in "$@"; do
    while (( $(jobs -rp | wc -l) >= ${CONFORM_JOBS:-3} )); do wait -n; done
    part="$RESULTS/parts/$op.${impl//[:.]/_}.$dt"
    mkdir -p "$part"
    (timeout "${CONFORM_S:-240}" "$PY" -m harness conform --op "$op" --impl "$impl" --profile gpu --seed 0 \
      --max-examples "${EXAMPLES:-20}" --dtypes "$dt" --results "$part" > "$part/log.txt" 2>&1
     echo "$? $op $impl $dt" > "$part/rc") &
  done
}
conform_wait() {
  wait
  local part
  for part in "$RESULTS"/parts/*/; do
    echo "-- $(cat "$part/rc" 2>/dev/null || echo "? $part")"
    grep -E "PASS|FAIL|rror" "$part/log.txt" | tail -5
    grep -q "^0 " "$part/rc" 2>/dev/null || rc=1
    cat "$part"/conformance.jsonl >> "$RESULTS/conformance.jsonl" 2>/dev/null
  done
  rm -rf "$RESULTS/parts"
}

bench() {
  echo "== the target cells beside SDPA-flash"
  for grid in "1 4096,32768,131072" "8 32768"; do
    set -- $grid
    timeout -s INT "${BENCH_S:-170}" "$PY" -m harness bench --suite kernels --no-progress --shapes llama3-8b \
      --contexts "$2" --batches "$1" --impls sdpa_flash,triton_fourier_lowrank --rerun --kept-align 8 \
      --results "$RESULTS" || rc=1
  done
}

conform() {
  echo "== conformance, gpu profile, seed 0, one run per dtype"
  if [[ -n "${CONFORM_RUNS:-}" ]]; then  # explicit "op,impl,dtype" runs, space-separated, instead of CONFORM_SET
    local run
    for run in $CONFORM_RUNS; do
      IFS=, read -r op impl dt <<< "$run"
      conform_op "$op" "$impl" "$dt"
    done
    conform_wait
    return
  fi
  # first the paths of float32 coefficients (the KV method's format and the benchmark's: the prologue launch), then
  # the registered ops' 16-bit coefficients (the query-spectrum kernel); CONFORM_SET=f32coefs stops after the first,
  # CONFORM_SET=rest skips it
  if [[ "${CONFORM_SET:-all}" != rest ]]; then
    conform_op fourier_decode_attention ci.lowrank_f32_coefs:uniform bfloat16 float16
    conform_op fourier_decode_attention_varlen ci.lowrank_f32_coefs:varlen bfloat16 float16
    conform_op fourier_decode_attention triton_lowrank float32
    conform_op fourier_decode_attention_varlen triton_lowrank float32
  fi
  if [[ "${CONFORM_SET:-all}" != f32coefs ]]; then
    conform_op fourier_decode_attention triton_lowrank bfloat16 float16
    conform_op fourier_decode_attention_varlen triton_lowrank bfloat16 float16
  fi
  conform_wait
}

tune() {
  echo "== the sweep's quick shapes"
  timeout "${TUNE_S:-200}" "$PY" ci/tune_fourier_lowrank.py --shapes-only ${TUNE_SHAPES:+--shapes "$TUNE_SHAPES"} \
    --cases "${TUNE_CASES:-8x32768,1x131072,1x32768}" --out "$OUT/tune_lowrank.json" || rc=1
}

profile() {
  local cases="${PROFILE_CASES:-8x32768,1x131072}"
  echo "== each kernel's device time"
  if [[ -n "${PROFILE_ATTRS:-}" ]]; then  # the attributes under trial first: the default has committed profiles
    timeout "${PROFILE_S:-90}" "$PY" ci/profile_fourier_lowrank.py --cases "$cases" --attrs "$PROFILE_ATTRS" \
      --out "$OUT/profile_lowrank_attrs.json" || rc=1
  fi
  timeout "${PROFILE_S:-90}" "$PY" ci/profile_fourier_lowrank.py --cases "$cases" --out "$OUT/profile_lowrank.json" \
    || rc=1
}

for step in "${order[@]}"; do
  "$step"  # each step is the function of its name
done
exit $rc
