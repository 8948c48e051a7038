#!/usr/bin/env bash
# FlashFourierAttention on one GPU, everything one visit needs (the targets of docs/fourier-attention.md):
#   1. conformance in the gpu profile of both decode kernels (rebuild `triton`, coefficient-space `triton_spectral`)
#      on the same drawn cases (--seed), float32 / float16 / bfloat16, both ops (uniform and varlen);
#   2. the kernels benchmark at LLaMA-3-8B shapes, batch 1 and 8 at 4k / 32k / 128k tokens: SDPA-flash, our dense
#      flash-decoding, both Fourier kernels (power-of-two period, padded kept rows) and FlashInfer where it imports;
#      the spectral kernel's per-phase times are in its records (extra.phase_ms);
#   3. the spectral kernel at 1 x 32k with the period equal to the middle (31744 = 2^10 x 31) instead.
# Records go to a fresh directory, $RESULTS (default $OUT/results, else results-gpu-<time>), never into results/
# directly: merge them after reading them (another GPU's cells must not pass for this one's).
#   PYTHONPATH=. bash ci/gpu_fourier.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
RESULTS="${RESULTS:-${OUT:+$OUT/results}}"
RESULTS="${RESULTS:-results-gpu-$(date +%Y%m%dT%H%M%S)}"
EXAMPLES="${EXAMPLES:-10}"
mkdir -p "$RESULTS"
rc=0
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"

echo "== conformance, gpu profile, seed 0, $EXAMPLES examples per dtype"
for impl in triton triton_spectral; do
  for op in fourier_decode_attention fourier_decode_attention_varlen; do
    case "$impl:$op" in
      triton:fourier_decode_attention) fn=optimized.triton_fourier:fourier_decode_attention_triton ;;
      triton:fourier_decode_attention_varlen) fn=optimized.triton_fourier:fourier_decode_attention_varlen_triton ;;
      triton_spectral:fourier_decode_attention) fn=optimized.triton_fourier_spectral:fourier_decode_attention_spectral ;;
      triton_spectral:fourier_decode_attention_varlen) fn=optimized.triton_fourier_spectral:fourier_decode_attention_varlen_spectral ;;
    esac
    timeout 240 "$PY" -m harness conform --op "$op" --impl "$fn" --profile gpu --seed 0 --max-examples "$EXAMPLES" \
      --dtypes float32,float16,bfloat16 --results "$RESULTS" 2>&1 | grep -v "^  *[a-z_]* *pass *$" || rc=1
  done
done

echo "== kernels benchmark"
timeout 420 "$PY" -m harness bench --suite kernels --no-progress --shapes llama3-8b --contexts 4096,32768,131072 \
  --batches 1,8 --full-grid --results "$RESULTS" || rc=1
timeout 120 "$PY" -m harness bench --suite kernels --no-progress --shapes llama3-8b --contexts 32768 --batches 1 \
  --impls triton_fourier_spectral,sdpa_flash --period span --results "$RESULTS" || rc=1
echo "records in $RESULTS; exit $rc"
exit $rc
