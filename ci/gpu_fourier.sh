#!/usr/bin/env bash
# FlashFourierAttention on one GPU, everything one visit needs (the targets in docs/fourier-attention.md), in order
# of importance, each step under its own time budget so one call of at most 10 minutes returns something:
#   tune   ci/tune_fourier_spectral.py: the spectral kernel's knobs on this GPU -> runs/spectral_tuning.json, which
#          the later steps use (LONGCTX_SPECTRAL_TUNING); commit it as optimized/spectral_tuning.json afterwards;
#   bench  the kernels benchmark at LLaMA-3-8B shapes, batch 1 and 8 at 4k / 32k / 128k tokens: SDPA-flash, our
#          dense flash-decoding, both Fourier kernels (period = the middle, as the KV method; padded kept rows),
#          FlashInfer where it imports;
#   variants the spectral kernel at the target cells with a 7-smooth period (and with heads' kept runs aligned to 8
#          channels) and with a power-of-two period, each run with SDPA again (--rerun) so every ratio is of one run;
#   tunetiles ci/tune_fourier_tiles.py: the token-major kernel's knobs (block_t, range_t, num_warps, num_stages,
#          then fold) at the target cells beside SDPA-flash, and the phases of the best -> runs/tiles_tuning.json,
#          which the tiles step uses (LONGCTX_TILES_TUNING); commit it as optimized/tiles_tuning.json afterwards;
#   tiles    the token-major kernel (triton_fourier_tiles): gpu-profile conformance (uniform and varlen ops; give it
#          CONFORM_S=200 on a fresh machine, the builds take 100 s), then the target cells beside
#          SDPA-flash and the spectral kernel, random kept sets and runs aligned to 8 (TILES_VARIANTS);
#   lowrank  the low-rank kernel (triton_fourier_lowrank): its knob sweep (ci/tune_fourier_lowrank.py ->
#          $OUT/tune_lowrank.json), gpu-profile conformance of both ops unless LOWRANK_CONFORM=0, then the target
#          cells beside SDPA-flash and the token-major kernel (runs aligned to 8) unless LOWRANK_BENCH=0;
#   profile  ci/profile_fourier_lowrank.py: the low-rank kernel's launches, each kernel's own device time from the
#          CUDA profiler beside the graph-timed call -> $OUT/profile_lowrank.json;
#   probe    ci/probe_kept_stream.py: the kept middle rows streamed per KV head (today's kernels) and as whole rows,
#          beside a device copy -> $OUT/probe_kept_stream.json;
#   ablate   ci/ablate_fourier_tiles.py: the token-major fused pass with its frequency loops cut -> $OUT/ablation.json;
#   conform  both Fourier decode kernels (rebuild `triton`, coefficient-space `triton_spectral`) in the gpu profile
#          on the same drawn cases (--seed 0), float32 / float16 / bfloat16.
# Records go to $RESULTS (default runs/gpu-<GPU name>, which a warm machine keeps between calls, so a second call
# resumes the benchmark), copied to $OUT after each step; never into results/ directly: merge them after reading
# them. STEPS=tune,bench,variants,tunetiles,tiles,lowrank,profile,probe,ablate,conform (default all but lowrank, profile, probe and ablate); TILES_CONFORM=0 skips the tiles step's conformance; VARIANTS: ';'-separated bench options of the variants step; EXAMPLES (default 3); TUNE_S, TUNE_TILES_S, BENCH_S, CONFORM_S: seconds per step (90, 200, 120 per part of the
# grid, 40 per conformance run of one op and dtype).
# Pass LONGCTX_GIT_SHA=<the commit> in the command: the device machine's copy of the checkout may report another.
#   LONGCTX_GIT_SHA=<sha> PYTHONPATH=. bash ci/gpu_fourier.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
gpu="$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))")"
RESULTS="${RESULTS:-${OUT:+$OUT/results}}"  # straight into OUT when there is one (nothing lost to a time limit)
RESULTS="${RESULTS:-runs/gpu-$gpu}"
EXAMPLES="${EXAMPLES:-3}"
steps=",${STEPS:-tune,bench,variants,tunetiles,tiles,conform},"
mkdir -p "$RESULTS" runs
rc=0
# gpu-profile conformance of op $1 for implementation $2 (seed 0), one run per dtype: a run writes its records only
# when all its dtypes are done, so a run cut by its time limit keeps nothing
conform_dtypes() {
  local dt status=0
  for dt in float32 float16 bfloat16; do
    timeout "${CONFORM_S:-40}" "$PY" -m harness conform --op "$1" --impl "$2" --profile gpu --seed 0 \
      --max-examples "$EXAMPLES" --dtypes "$dt" --results "$RESULTS" 2>&1 | grep -Ev "^[a-z_]+ +pass *$" || status=1
  done
  return $status
}
# both Fourier decode ops for implementation $1
conform_both_ops() {
  local status=0
  conform_dtypes fourier_decode_attention "$1" || status=1
  conform_dtypes fourier_decode_attention_varlen "$1" || status=1
  return $status
}
keep() { [ -n "${OUT:-}" ] && [ "$RESULTS" != "$OUT/results" ] && mkdir -p "$OUT/results" && cp "$RESULTS"/*.jsonl "$OUT/results/" 2>/dev/null; true; }
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"

if [[ "$steps" == *,tune,* ]]; then
  echo "== tune"
  timeout "${TUNE_S:-90}" "$PY" ci/tune_fourier_spectral.py --table runs/spectral_tuning.json ${OUT:+--out "$OUT/tune.json"} || rc=1
  [ -n "${OUT:-}" ] && cp runs/spectral_tuning.json "$OUT/" 2>/dev/null
fi
[ -f runs/spectral_tuning.json ] && export LONGCTX_SPECTRAL_TUNING="$PWD/runs/spectral_tuning.json"

if [[ "$steps" == *,bench,* ]]; then
  echo "== kernels benchmark"
  # The target cells first (1 x 4k / 32k / 128k, 8 x 32k), then the rest of the grid; a cut sweep keeps its cells.
  for grid in "1 4096,32768,131072" "8 32768"; do
    set -- $grid
    timeout -s INT "${BENCH_S:-120}" "$PY" -m harness bench --suite kernels --no-progress --shapes llama3-8b \
      --batches "$1" --contexts "$2" --results "$RESULTS" || rc=1
    keep
  done
fi

if [[ "$steps" == *,variants,* ]]; then
  echo "== kernels benchmark: the spectral kernel's cache variants"
  IFS=';' read -ra variants <<< "${VARIANTS:---period smooth;--period smooth --kept-align 8;--period pow2}"
  for variant in "${variants[@]}"; do
    for grid in "1 4096,32768,131072" "8 32768"; do
      set -- $grid
      timeout -s INT 45 "$PY" -m harness bench --suite kernels --no-progress --shapes llama3-8b --contexts "$2" \
        --batches "$1" --impls sdpa_flash,triton_fourier_spectral --rerun $variant --results "$RESULTS" || rc=1
    done
  done
  keep
fi

if [[ "$steps" == *,tunetiles,* ]]; then
  echo "== token-major kernel: knob sweep"
  timeout "${TUNE_TILES_S:-200}" "$PY" ci/tune_fourier_tiles.py --table runs/tiles_tuning.json \
    ${OUT:+--out "$OUT/tune_tiles.json"} || rc=1
  [ -n "${OUT:-}" ] && cp runs/tiles_tuning.json "$OUT/" 2>/dev/null
fi
[ -f runs/tiles_tuning.json ] && export LONGCTX_TILES_TUNING="$PWD/runs/tiles_tuning.json"

if [[ "$steps" == *,tiles,* ]]; then
  # The token-major kernel (triton_fourier_tiles): compiled and checked first (gpu profile, the same seed), then
  # timed at the target cells beside SDPA-flash and the spectral kernel, on the paper's period with random kept
  # sets and with kept runs aligned to 8 channels (each run with SDPA again, so every ratio is of one run).
  echo "== token-major kernel: conformance, then the target cells"
  [ "${TILES_CONFORM:-1}" = 0 ] || conform_both_ops triton_tiles || rc=1
  IFS=';' read -ra variants <<< "${TILES_VARIANTS:-;--kept-align 8}"
  for variant in "${variants[@]}"; do
    for grid in "1 4096,32768,131072" "8 32768"; do
      set -- $grid
      timeout -s INT 60 "$PY" -m harness bench --suite kernels --no-progress --shapes llama3-8b --contexts "$2" \
        --batches "$1" --impls sdpa_flash,triton_fourier_spectral,triton_fourier_tiles --rerun $variant \
        --results "$RESULTS" || rc=1
    done
  done
  keep
fi

if [[ "$steps" == *,lowrank,* ]]; then
  echo "== low-rank kernel: knob sweep, conformance, the target cells"
  [ "${LOWRANK_TUNE:-1}" = 0 ] || timeout "${TUNE_LOWRANK_S:-200}" "$PY" ci/tune_fourier_lowrank.py \
    --out "${OUT:-runs}/tune_lowrank.json" || rc=1
  [ "${LOWRANK_CONFORM:-1}" = 0 ] || conform_both_ops triton_lowrank || rc=1
  for grid in "1 4096,32768,131072" "8 32768"; do
    [ "${LOWRANK_BENCH:-1}" = 0 ] && break
    set -- $grid
    timeout -s INT 90 "$PY" -m harness bench --suite kernels --no-progress --shapes llama3-8b --contexts "$2" \
      --batches "$1" --impls sdpa_flash,triton_fourier_tiles,triton_fourier_lowrank --rerun --kept-align 8 \
      --results "$RESULTS" || rc=1
  done
  keep
fi

if [[ "$steps" == *,profile,* ]]; then
  echo "== the low-rank kernel's launches under the CUDA profiler"
  timeout "${PROFILE_S:-150}" "$PY" ci/profile_fourier_lowrank.py --out "${OUT:-runs}/profile_lowrank.json" || rc=1
fi

if [[ "$steps" == *,probe,* ]]; then
  echo "== the kept rows streamed per head and as whole rows"
  timeout "${PROBE_S:-150}" "$PY" ci/probe_kept_stream.py --out "${OUT:-runs}/probe_kept_stream.json" || rc=1
fi

if [[ "$steps" == *,ablate,* ]]; then
  echo "== the token-major fused pass with its frequency loops cut"
  timeout "${ABLATE_S:-120}" "$PY" ci/ablate_fourier_tiles.py --out "${OUT:-runs}/ablation.json" || rc=1
fi

if [[ "$steps" == *,conform,* ]]; then
  echo "== conformance, gpu profile, seed 0, $EXAMPLES drawn examples per dtype"
  for fn in optimized.triton_fourier_spectral:fourier_decode_attention_spectral \
            optimized.triton_fourier:fourier_decode_attention_triton \
            optimized.triton_fourier_spectral:fourier_decode_attention_varlen_spectral; do
    op=fourier_decode_attention; [[ "$fn" == *varlen* ]] && op=fourier_decode_attention_varlen
    conform_dtypes "$op" "$fn" || rc=1
  done
fi
keep
echo "records in $RESULTS; exit $rc"
exit $rc
