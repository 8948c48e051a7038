"""FlashFourierAttention decode with low-rank block bases: the Fourier work as a few GEMMs, the middle as whole rows.

The coefficient-space decode (docs/fourier-attention.md) needs the compressed-channel scores S_t and the spectrum
F_n of the middle's probabilities. For a block of BB tokens the DFT basis E[n, j] = e^{i w_n j} has a numerical rank
of about 2 N BB / T plus a few (`optimized/lowrank_tile_basis.py`: 15 of 512 at 32k with BB = 256), so

    S_{kBB+j} = Re sum_rho A_k[rho] conj(V[j, rho]),   A = Z @ W_K                      (eq. scores, factored)
    F_n       = sum_(k, rho) conj(W_V[n, (k, rho)]) H_k[rho],   H_k = sum_j p_{kBB+j} V[j, rho]   (eq. values)

with W per period (the block rotations e^{i w_n kBB} times U sigma). Five phases (`PHASES`):

1. the query spectrum Z from q and the compressed-K coefficients: `query_spectrum_kernel` (the spectral kernel's),
   or from batch QS_GEMM_MIN_BATCH with float32 coefficients two batched GEMMs over a block-diagonal query
   (`_compressed_rows_kernel`, then cuBLAS; `qs_gemm`), or those GEMMs as one kernel (`_query_products_kernel`,
   `qs_fused`). On that last path one launch (`_prologue_kernel`) also runs phase 3's exact tokens (`qx_fused`)
   and query rows (`qr_fused`): everything that reads only the queries and the cache;
2. A = Z @ W_K: one GEMM per call (cuBLAS), [rows x blocks * r], for 16-bit queries in bfloat16 where it is real
   (the GEMM path's [U_c; U_s] W_K), else on TF32 tensor cores (`gemm_precs`);
3. the stream: `_query_rows_kernel` lays q out block-diagonally over the kept K list (row r holds its query on its
   KV head's kept channels), then `_middle_kernel` runs split-K flash decoding over the middle with a block of
   query rows of a sequence per program. A program loads its rows' KV heads' window of each kept row (contiguous
   runs, `heads_window`), scores them as Q_bd @ K^T plus a_k @ V^T (rank r), and accumulates P @ V over the V
   window and P @ V_V per block (H). It keeps each row's own head's V channels of its output. `_exact_kernel` does
   the sinks and window per KV head (unless the prologue did, as it did the query rows);
4. the spectrum: `_merge_kernel` merges the splits' statistics and rescales H to the merged softmax in one launch,
   then F = H @ W_V^H (cuBLAS, TF32 for 16-bit queries); with `v_gemm` (from batch V_GEMM_MIN_BATCH) F's
   weighted planes (cuBLAS; frequency-major with `planes_t`) and the compressed V channels' sums over
   frequencies (`_v_sums_kernel`, `v_fused`; or in the output's launch, `vo_fused`, the default) here instead of
   in the output;
5. `_output_kernel`: the splits' kept outputs merged by log-sum-exp plus the compressed V channels' sums over the
   frequencies of F; where its programs (one per KV head and 16 dimensions) are fewer than the SMs, those sums
   come from `_v_products_kernel` in chunks of V_CHUNK frequencies (`v_chunk_for`).

With the coefficient folds (`folds`, at batch FOLDS_MAX_BATCH and below; optimized/lowrank_folds.py) the two GEMMs
go: the prologue computes A itself from FoldK = (a - i b) W_K (stored by dimension, so the head's query needs no
gather), and the merge multiplies its columns of the rescaled H by FoldV, leaving partial sums of the compressed V
channels for the output (its own kernel, optimized/lowrank_fold_output.py). The call is then four Triton launches
(prologue, stream, merge, output), each of whose programs issues its loads before its first reduction, so few wait
on another (optimized/lowrank_split_tiles.py).

Where a block's bases are as wide as the block (short middles: 1 x 4k), the folds would be the reconstruction in
another basis; a plan on a GPU kept across steps then rebuilds the middle's rows once instead and a step is one
flash-decoding pass over them (`dense`, optimized/lowrank_dense_rows.py).

Per middle token the Fourier work is two rank-r products per query row, against 2N-term products (the
token-major kernel) or length-T transforms (the spectral kernel); the approximation is the SVD's cut (TOL, 1e-8
of the largest singular value), below float32's rounding. The tables are per period, made once per plan.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Callable

import torch
import triton
import triton.language as tl

from optimized.fourier_plans import cache_tensors, planned, varlen_lens
from optimized.fourier_plans import phase_times as plan_phase_times
from optimized.lowrank_dense_rows import dense_by_default, dense_rows
from optimized.lowrank_fold_output import compressed_out, fold_output_kernel, output_tables
from optimized.lowrank_folds import (FOLD_PRECS, fold_partials, fold_products, fold_rows, k_fold, k_fold_dims,
                                     stored_fold, v_fold)
from optimized.lowrank_programs import after_predecessor, head_of, head_program
from optimized.lowrank_split_tiles import acc_tile, merged_stats_tiled, split_sums, stats_tile, tile_steps
from optimized.lowrank_tile_basis import TOL, block_rank, padded_width, tile_basis
from optimized.triton_decode_attention import decode_attention_triton
from optimized.triton_fourier_tiles import bf16_rounded, tf32_cut
from optimized.triton_fourier_spectral import (TL_DTYPE, channel_map, check_plan_inputs, compressed_from_spectrum,
                                               compressed_query, exact_split, kept_alignment, query_spectrum_kernel,
                                               run_block, spectrum_range_products, summed_parts)
from reference.bench_spec import ImplBench
from reference.ops.checks import check_block, check_int, check_triton_dtype
from reference.ops.fourier import check_decode_inputs, dft_weights
from reference.ops.fourier_varlen import check_varlen_inputs
from reference.registry import conformance_knobs, register_impl

PHASES = ("query_spectrum", "score_blocks", "stream", "spectrum", "output")
# The largest block whose bases stay within this rank is chosen. 32 from the H100 sweeps (results/gpu/
# tune_lowrank-2026-12-06-H100-d79208d.json, with the one-launch merge): at 32k, 1024-token blocks (rank 31) beat
# 512 (rank 21) at 8 x 32k (281 against 323 us) and tie at 1 x 32k (117.5 against 115.0); at 1 x 128k the cap of
# 1024 tokens keeps 1024 (163 us; 2048: 171, 512: 182); at 4k the rank passes 32 at 128 tokens, 64 stays.
MAX_RANK = 32
# The largest block, and the rule that halves it where the stream would have too few programs (`choose_block`). H100
# at 912a9a8 (results/gpu/tune_lowrank-2026-12-07-H100-912a9a8-*.json), us with the block 1024 / the rule's: 1 x 32k
# 75.1 / 70.8-71.8 (512: 124 programs instead of 62), 1 x 128k 110.7 / 107.6-108.2 (2048: the cap was 1024); the rule
# keeps 1024 at 2 x 32k (76.2-76.4; 512: 80.9, 2048: 105.5) and at 8 x 32k (8ab8225: 173.1-174.0; 512: 193.6,
# 2048: 202.0). The cap: at 128k 4096-token blocks keep rank 31, but no GPU has timed them.
MAX_BLOCK = 2048
# The stream's warps where it has fewer programs than SMs. H100 at 47038c8 (results/gpu/tune_lowrank-2026-12-07-H100-
# 47038c8-warps.json), us with 4 / 8 warps: 1 x 128k 95.0-95.3 / 91.7 (128 programs), 2 x 32k 68.0-68.2 / 66.2 (124),
# 1 x 32k 56.8-57.3 / 56.2 (124), 1 x 4k 43.3-43.4 / 43.5 (96); at 8 x 32k (256 programs) 8 warps lost, 187.1 against
# 174.0 (8ab8225). gpu-profile conformance of the stream at 8 warps at every shape passed at 79168db (bfloat16 and
# float16, uniform and varlen; the same worst errors as at 4 warps), and two bench runs there gave 1 x 128k 96.4 us
# (98.3 at 47038c8), 1 x 32k 56.6-56.8 (57.2): docs/fourier-attention.md, eleventh pass.
STREAM_WARPS_FEW = 8
# Programmatic dependent launch (sm_90 and later; `pdl`): the prologue, the stream, the merge and the output launch
# with it. Each waits for the kernel before it (griddepcontrol.wait) before its first load or store, then lets its
# own dependants launch, so the next launch and its programs' start may overlap this kernel's tail. The cuBLAS GEMMs
# between them launch as usual, so only the stream -> merge boundary is Triton on both sides. With the trigger right
# after the wait, on one H100 at ff78acf (results/gpu/profile_lowrank-2026-12-07-H100-ff78acf-pdl.json), graph us
# off / on: 1 x 4k 45.4 / 47.0,
# 1 x 32k 57.1 / 56.6, 1 x 128k 94.2 / 100.3, 8 x 32k 165.7 / 160.5; two bench runs with it on gave 43.1-43.2,
# 57.4-57.5, 97.9-98.0 and 158.7-159.5 against 43.5-43.7, 56.6-56.8, 96.4 and 157.3-160.2 without it at 79168db.
# With the folds (batch 1: four Triton launches, no GEMM between them) and the trigger right after the wait, the H100
# at 356924d gave 1 x 4k 2 us faster, 1 x 32k 6 and 1 x 128k 17 us slower: the next launch's programs took SMs from
# this one's later programs. With the trigger at each program's exit (`pdl_trigger` "exit") the H100 at e04cb57 gave
# 1 x 128k 86.2 us against 87.3-88.2, 1 x 32k 49.2 against 50.4-51.4, 1 x 4k 34.6 against 35.3-35.5
# (results/gpu/tune_lowrank-2026-12-07-H100-e04cb57-pdl-folds.json), one timing each. On since cec0a73: on an H100
# there its gpu-profile conformance passed (all ten runs and the four fold wrappers), the sweep gave on / off 83.9-84.4
# / 85.7 us at 1 x 128k, 46.5-47.2 / 48.1 at 1 x 32k, 32.3-32.7 / 33.7 at 1 x 4k, and at 8 x 32k (GEMMs between the
# launches) 156.6-159.9 / 156.6-160.5 over six and four timings: not slower
# (results/gpu/tune_lowrank-2026-12-07-H100-cec0a73-pdl*.json).
PDL = True
# where each launch lets the next one start under `pdl` (`pdl_trigger`): at its programs' exit (the better of the
# two above), or right after its own wait ("start")
PDL_TRIGGERS = ("exit", "start")
# The coefficient folds (`folds`, optimized/lowrank_folds.py): each sequence's coefficients multiplied by the block
# tables once per cache, so the step computes A in the prologue and the compressed V channels in the output, with no
# GEMM (and no split-K reduction) between the Triton launches. Needs the prologue (the GEMM path with the exact tokens
# in its launch) and the V sums in the output's launch (v_gemm, vo_fused). The folds are per sequence where the tables
# are per period, so they pay at batch 1 only (FOLDS_MAX_BATCH). H100 at 23f3230 (results/gpu/profile_lowrank-2026-12-07-
# H100-23f3230-folds.json), graph us without / with: 1 x 4k 45.2 / 40.6, 1 x 32k 57.2 / 52.7, 1 x 128k 97.5 / 92.1,
# 8 x 32k 160.2 / 178.1 (50 MB of float32 folds against the tables' 16).
FOLDS = True
FOLDS_MAX_BATCH = 1
# Launch shapes of the small phases; the values of the spectral kernel until an H100 sweep says otherwise.
QS_BLOCK_N, OUT_BLOCK_N, OUT_BLOCK_DO = 32, 16, 16
# The compressed V channels' sums over frequencies in chunks of this many, while the output kernel alone would have
# fewer programs than SMs. H100 at 69de2c3 (results/gpu/tune_lowrank-2026-12-06-H100-69de2c3.json), us with the
# output's own loop / chunks of 64: 1 x 32k (64 programs) 124.1 / 118.2, 1 x 128k 164.0 / 159.6, 8 x 32k (512
# programs) 283.6 / 295.5.
V_CHUNK = 64
# The precisions the GEMMs A = Z W_K and F = H W_V^H may run in: "ieee" (complex64 on CUDA cores) or "tf32" (complex64
# on TF32 tensor cores). Float32 inputs take ("ieee", "ieee"), 16-bit inputs GEMM_PRECS_16. H100 at ea245b7 (results/
# gpu/tune_lowrank-2026-12-06-H100-ea245b7.json), us ieee / tf32: 8 x 32k 281.6 / 251.0, 1 x 32k 110.3 / 99.4,
# 1 x 128k 152.9 / 136.2, 1 x 4k 80.2 / 68.0. Their real forms in bfloat16 were 1-8 us faster than TF32 but failed a
# float16 magnitude-1000 varlen case in the interpreter's conformance (1.33 against 1.22 allowed; TF32 0.40), and
# bfloat16 for F alone gained nothing; that variant, which also took the complex GEMMs in bfloat16, was removed.
# "bf16" now covers the real GEMMs only (the GEMM path's A = [U_c; U_s] W_K, v_gemm's planes H @ table): bfloat16
# operands (U and H stored so by the kernels that write them, the tables cast once per plan) with float32
# accumulation and a float32 result; complex GEMMs and the V sums take TF32 under it. At 8 x 32k A took 11.2 us and
# the planes 11.4 + 3.2 (split-K) in TF32 (H100, 8ab8225 profile), with cuBLAS's A on 64 tiles of an sm80 kernel. H100 at 7322d78 (results/gpu/tune_lowrank-2026-12-07-
# H100-7322d78.json), us with TF32 / bf16 for both: 8 x 32k 175.1-178.2 / 164.7, 1 x 128k 112.2-113.7 / 109.5,
# 1 x 32k 76.2-77.7 / 75.8; bf16 for A alone 172.5 at 8 x 32k, for the planes alone 169.4. gpu-profile conformance of
# the float32-coefficient wrappers with it passed in bfloat16 and float16 (worst float16 0.883 of 1.59 uniform, 0.759
# of 0.994 varlen; bfloat16 4.37 of 12.6 and 3.74 of 7.49, as with TF32). On for 16-bit queries.
GEMM_PRECS = ("ieee", "tf32", "bf16")
GEMM_PRECS_16 = ("bf16", "bf16")
# The query spectrum as GEMMs (qs_gemm) on a GPU from this batch on (None: never), where the K coefficients are float32
# (the KV method's format; cuBLAS takes them as they are); in the interpreter at any batch, so the CPU's conformance
# runs that path for float32 inputs (suites/conformance/test_lowrank_gemm_precisions.py runs both paths on 16-bit
# queries). H100 at 062f9c6 (results/gpu/tune_lowrank-2026-12-06-H100-062f9c6.json), us with the kernel / the GEMMs:
# 8 x 32k 253.8 / 244.0 (float32 GEMMs: 283.8), 1 x 128k 137.4 / 144.5. Batches 2 to 7 were not timed.
# At batch 1, with the bfloat16 GEMMs and the prologue launch, the GEMM path gains (H100, 912a9a8): 1 x 4k 55.7 / 51.3,
# 1 x 32k 71.1 / 65.7 (512-token blocks), 1 x 128k 107.6 / 102.9 (2048-token blocks).
QS_GEMM_MIN_BATCH: int | None = 1
# The GEMM path's U = [QC K_cos; QC K_sin] from one kernel that scales the query on chip and streams each KV head's
# compressed K rows (`_query_products_kernel`, QP_BLOCK_N frequencies per program), instead of QC and two cuBLAS
# GEMMs, whose 64 tiles (32 query rows per sequence) read the 24.5 MB at 8 x 32k at about 1 TB/s. H100 at d96252b
# (results/gpu/tune_lowrank-2026-12-06-H100-d96252b.json), us with cuBLAS / the kernel: 8 x 32k 224.4 / 216.0,
# 2 x 32k 127.4 / 116.1; at batch 1 (the GEMM path forced) 1 x 128k 138.7 / 138.3 and 1 x 32k 99.5 / 102.5 against
# the query-spectrum kernel, which batch 1 keeps. 64 frequencies per program: 223.2 at 8 x 32k.
# After 8abcfbf the kernel walks the head's run of the compressed list instead of 32-dimension chunks whose loads
# waited on a search of the kept list (offline for sm_90, Triton 3.6: 102 registers against 127, one pipelined loop
# instead of four searches). It ran only inside the one launch with the exact tokens (QX_FUSED): 32.3 us at c80a529
# against 18.3 + 15.5 for the two kernels at 8abcfbf (results/gpu/profile_lowrank-2026-12-06-H100-*.json).
QS_FUSED = True
QP_BLOCK_N = 128
# ... and fewer per program where QP_BLOCK_N would leave the launch with fewer than sms / 2 query-product programs
# (`qp_block_for`). H100 at 4cfc4b7 (results/gpu/tune_lowrank-2026-12-07-H100-4cfc4b7-prologue.json), us with 128 /
# 64 / 32 frequencies: 1 x 4k 50.7 / 46.4 / 46.0, 1 x 32k 64.8 / 61.4 / 60.5, 1 x 128k 101.9 / 98.7 / 98.1,
# 8 x 32k 161.7 / 166.4 / 170.2.
QP_BLOCK_MIN = 32
# `_query_products_kernel` and `_exact_kernel` as one launch (`_prologue_kernel`) where the query spectrum takes that
# kernel: at 8 x 32k the two read 24.5 and 33.6 MB at 1.3 and 2.2 TB/s in 18.3 and 15.5 us (8abcfbf profile), each
# with 256 programs, so each kernel's ramp and tail are a large part of it. H100 at c80a529 (results/gpu/
# tune_lowrank-2026-12-06-H100-c80a529.json), us with one launch / two: 8 x 32k 181.8 / 183.8; the one launch at 4
# warps (QP_WARPS) 178.1 against 8. Batch 1 takes the query-spectrum kernel, so neither.
QX_FUSED = True
QP_WARPS = 4
# ... and `_query_rows_kernel` (2.4 us at 8 x 32k, 32 programs) in that launch too. H100 at 863f673 (results/gpu/
# tune_lowrank-2026-12-06-H100-863f673.json), us with / without: 8 x 32k 174.4 / 177.0 (1 x 128k and 1 x 32k take the
# query-spectrum kernel and separate launches). There the query products writing Z = U_c - i U_s for one complex
# GEMM A = Z W_K (A whole, half the bytes) lost: 180.7 us; it was removed.
QR_FUSED = True
# v_gemm's planes frequency-major (`planes_t`: cuBLAS computes table^T H^T) where the batch has one period. The same
# sweep, us row-major / frequency-major: 8 x 32k 174.4 / 173.3, 1 x 128k 119.1 / 118.6, 1 x 32k 81.6 / 80.4. It was
# on until the profiles said otherwise: at 8 x 32k cuBLAS takes the frequency-major product in one 64 x 64-tile kernel
# without split-K, 17.1 us on the H100 (b80c7e0) and 16.7 on the H200 (bbd8f01), against 11.3 + 3.2 us (split-K and
# its reduction) for the row-major one (H100, 863f673); at 1 x 128k 9.2 + 2.1 against 9.5 + 2.2. The H200 sweep
# agrees (8 x 32k 147.8 us row-major against 149.7 / 150.8; 1 x 128k 107.8 against 106.7 / 105.7): off, with a test
# that holds it to the row-major form (results/gpu/{profile,tune}_lowrank-2026-12-06-*.json).
PLANES_T = False
# The GEMM path's A stored transposed (`a_t`), for the same reason: cuBLAS computes W_K^T [U_c; U_s]^T, a
# [blocks r x N] @ [N x 2 B rows] product (A's GEMM took 12.3 us at 8 x 32k in the 863f673 profile). Not timed yet;
# off until it is (a test runs it).
A_T = False
# v_gemm's channel sums (`_v_sums_kernel`) in the output's launch (`vo_fused`): extra programs of `_output_kernel`
# take each head's compressed channels from the planes and store their outputs, the others the kept channels, so
# one launch boundary goes (`_v_sums_kernel` 10.3-13.3 us and the output 6.6-7.2 us at 8 x 32k in the bbd8f01 and
# 863f673 profiles). Timed on the H100 (5c1c820): 8 x 32k a tie (sweep 180.0 against 179.7-183.6 us, profile 180.2
# against 179.6), 1 x 128k 120.4 against 127.1 us in the profile (the output launch 14.2 against 15.1 + 6.1). The
# target cells with it on, two runs: 1 x 32k 77.7 / 77.3 us (0.73x -> 0.79-0.81x SDPA-flash), 1 x 128k 123.2 / 123.5
# (1.58x), 8 x 32k 180.0 / 180.0 (1.98x), 1 x 4k 55.6 / 55.4; gpu-profile conformance of every low-rank path in
# three dtypes passed (results/conformance.jsonl). On.
VO_FUSED = True
# (A = Z W_K and v_gemm's planes from kernels that made the tables' block rotations on chip and read only the shared
# basis lost on the H100 and were removed: docs/fourier-attention.md, fifth pass. So was `merged_planes`, the merge
# inside a Triton planes GEMM: 196.9 us at 8 x 32k against 179.7-183.6 for cuBLAS's split-K GEMM (H100, 5c1c820;
# docs/fourier-attention.md, eighth pass).)


# The compressed V channels' sums over frequencies as GEMMs (v_gemm: F's weighted planes, then two batched GEMMs
# against the V coefficients) instead of the output kernel's loop: on a GPU from this batch on (None: never), where
# the V coefficients are float32. The float32 version lost 2-9 us at every target cell (2197c4a). H100 at b947a8b
# (results/gpu/tune_lowrank-2026-12-06-H100-b947a8b.json), us with the loop / TF32 GEMMs: 8 x 32k 246.8 / 226.4,
# 4 x 32k 156.8 / 152.5, 2 x 32k 125.1 / 125.0, 8 x 8k 182.4 / 163.1, 2 x 128k 205.7 / 200.7, but 1 x 32k
# 98.9 / 103.3 and 1 x 128k 137.4 / 140.2; float32 GEMMs for F lost 20-50 us everywhere. With the heads' windows and
# 64-token tiles batch 1 gains too (results/gpu/tune_lowrank-2026-12-06-H100-958cefc-full.json): 1 x 32k 82.9 / 80.5,
# 1 x 128k 122.0 / 120.4. The interpreter does not take it by default (suites/conformance/
# test_lowrank_gemm_precisions.py runs it).
V_GEMM_MIN_BATCH: int | None = 1
# v_gemm's sums over frequencies, (w Re F) a'^T - (w Im F) b'^T, as one kernel that reads each KV head's compressed V
# rows once (`_v_sums_kernel`) instead of two cuBLAS GEMMs over every head's channels (19.5 us at 8 x 32k for 24.5
# MB at 1.25 TB/s). H100 at 233e34f (results/gpu/tune_lowrank-2026-12-06-H100-233e34f.json), us with cuBLAS / the
# kernel at 8 x 32k: 209.4 / 205.6 (16 channels per program 205.8, 8 warps 204.6).
V_FUSED = True
# `_exact_kernel`'s programs per KV head on a GPU (capped at one per tile of the sinks and window). The same sweep,
# us with 4 / 8 / 16 / 32: 8 x 32k 205.6 / 206.1 / 207.4 / 210.5, 1 x 128k 134.7 / 132.9 / 132.3 / 132.7.
ESPLITS = 4
# the most splits the merge reads per tile of statistics ([splits, 16 rows] float32, 16 registers a thread at 4 warps)
MERGE_TILE_SPLITS = 128
# ... and the fold path's output per tile of splits, half as many per tile of the merge's partial sums ([splits, rows,
# columns] float32 stays within 32 registers a thread at 4 warps for 4 rows and 16-32 columns)
OUT_TILE_SPLITS = 64
# ... and the output's without the folds ([splits, 16 rows of one query token, 16 channels] float32, 32 registers a
# thread at 4 warps; the H100 at d414dfb: 8 x 32k's output 19.4 -> 18.8 us against 8 splits a step, docs/fourier-
# attention.md, fifteenth pass)
OUT_KEPT_TILE_SPLITS = 16


def v_gemm_for(batch: int, gpu: bool, coefs: torch.dtype) -> bool:
    """Whether a plan of `batch` sequences whose V coefficients are `coefs` sums the V products as GEMMs."""
    return gpu and coefs == torch.float32 and V_GEMM_MIN_BATCH is not None and batch >= V_GEMM_MIN_BATCH


def qs_gemm_for(batch: int, gpu: bool, coefs: torch.dtype) -> bool:
    """Whether a plan of `batch` sequences whose K coefficients are `coefs` takes the query spectrum as GEMMs."""
    on_gpu = QS_GEMM_MIN_BATCH is not None and batch >= QS_GEMM_MIN_BATCH
    return coefs == torch.float32 and (on_gpu or not gpu)


def fused_for(kernel: str, gpu: bool) -> bool:
    """Whether a plan takes the fused form `kernel` ("qs": `_query_products_kernel` instead of cuBLAS, "v":
    `_v_sums_kernel` instead of cuBLAS, "qx": the exact tokens in `_prologue_kernel`, "qr": the query rows there
    too): on a GPU as its constant (QS_FUSED, V_FUSED, QX_FUSED, QR_FUSED) says, always in the interpreter, so the
    CPU's conformance runs it (suites/conformance runs the other forms)."""
    return {"qs": QS_FUSED, "v": V_FUSED, "qx": QX_FUSED, "qr": QR_FUSED}[kernel] or not gpu


def qp_block_for(heads: int, nz: int, sms: int | None) -> int:
    """Frequencies per `_query_products_kernel` program (or, with the folds, columns of A per `fold_products`
    program, nz of them): QP_BLOCK_N, halved (to QP_BLOCK_MIN) while the `heads` (sequences x KV heads) would have
    fewer than sms / 2 programs; QP_BLOCK_N off a GPU."""
    block = QP_BLOCK_N
    while sms and block > QP_BLOCK_MIN and heads * triton.cdiv(max(nz, 1), block) < sms // 2:
        block //= 2
    return block


def v_chunk_for(programs: int, sms: int | None) -> int:
    """V_CHUNK where `programs` output programs leave SMs idle, else 0; on a CPU (sms None) V_CHUNK, so the
    interpreter's conformance runs the chunked path (the other is checked in suites/conformance)."""
    return V_CHUNK if sms is None or programs < sms else 0


# ---------------------------------------------------------------- 1. the query spectrum as a GEMM
@triton.jit
def heads_window(START, row0, n_rows, width, GL: tl.constexpr, BLOCK_R: tl.constexpr, ALIGN: tl.constexpr):
    """The kept-list window of the KV heads of query rows row0 .. row0 + BLOCK_R (rows of one head are GL
    consecutive rows): (its start, rounded down to ALIGN, and its width, to the last head's run end rounded up but
    never past the list's `width` channels: the row's padding beyond them may hold anything). Lanes in it outside a
    row's own head get zero query lanes (QBD) and are never stored (`_middle_kernel`)."""
    h0 = row0 // GL
    h1 = (tl.minimum(row0 + BLOCK_R, n_rows) - 1) // GL
    start = tl.multiple_of(tl.load(START + h0) // ALIGN * ALIGN, ALIGN)
    end = (tl.load(START + h1 + 1) + ALIGN - 1) // ALIGN * ALIGN
    return start, tl.minimum(end - start, width - start)


@triton.jit
def compressed_run(START, h, D: tl.constexpr):
    """KV head h's compressed channels as one run [lo, hi) of the sorted compressed list: the channels below the
    head's are h D, START[h] of them kept."""
    return h * D - tl.load(START + h), (h + 1) * D - tl.load(START + h + 1)


@triton.jit
def _compressed_rows_kernel(Q, KKEPT, KSTART, KCOS, KSC, KSH, QC, Z0, LENS, sqb, sqh, sql, sqd, Hkv, Cck, Nk, n_rows,
                            period, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, VARLEN: tl.constexpr,
                            BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Row r of QC[b] = q_c s_c / T on its KV head's compressed K channels and 0 on the others' (the plan zeroes QC
    once), so QC[b] @ K_cos[b] and QC[b] @ K_sin[b] are every head's u_n / T and u'_n / T at once (eq. scores); and
    Z0 = Re Z_0 = u_0 / T + sum_c q_c mu_c in float32 (the n = 0 bin stays out of the GEMMs' rounding)."""
    b, h, period, rows, row_ok = head_program(LENS, Hkv, period, G * LQ, VARLEN, BLOCK_M)
    qs, q_mu, ci, comp = compressed_query(Q, KKEPT, KSTART, KSC, KSH, b, h, sqb, sqh, sql, sqd, Cck, G, LQ, D, BLOCK_M,
                                          BLOCK_D)
    qs = qs / period
    grow = b * n_rows + h * G * LQ + rows
    tl.store(QC + grow[:, None] * Cck + ci[None, :], qs, mask=row_ok[:, None] & comp[None, :])
    a0 = tl.load(KCOS + b * Cck * Nk + ci * Nk, mask=comp, other=0.0).to(tl.float32)
    tl.store(Z0 + grow, tl.sum(qs * a0[None, :], 1) + q_mu, mask=row_ok)


@triton.jit
def _query_products_kernel(Q, KCOMP, KSTART, KCOS, KSIN, KSC, KSH, U, Z0, LENS, sqb, sqh, sql, sqd, sub, sur, s_half,
                           Hkv, Cck, Nk, NZ, n_rows, period, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr,
                           VARLEN: tl.constexpr, BLOCK_M: tl.constexpr, DC: tl.constexpr, BLOCK_N: tl.constexpr,
                           PREC: tl.constexpr, EMUL_TF32: tl.constexpr):
    """`query_products` of program (bh, frequency tile) = (axis 0, axis 1)."""
    query_products(Q, KCOMP, KSTART, KCOS, KSIN, KSC, KSH, U, Z0, LENS, sqb, sqh, sql, sqd, sub, sur, s_half, Hkv,
                   Cck, Nk, NZ, n_rows, period, tl.program_id(0), tl.program_id(1), G, LQ, D, VARLEN, BLOCK_M, DC,
                   BLOCK_N, PREC, EMUL_TF32)


@triton.jit
def head_query(Q, KSTART, b, h, rows, sqb, sqh, sql, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr):
    """KV head h's run [c_lo, c_hi) of the sorted compressed K list (the channels below the head's are h D, KSTART[h]
    of them kept) and the pointers to its G * LQ query rows `rows` of sequence b."""
    c_lo = h * D - tl.load(KSTART + h)
    c_hi = (h + 1) * D - tl.load(KSTART + h + 1)
    return c_lo, c_hi, Q + b * sqb + (h * G + rows // LQ)[:, None] * sqh + (rows % LQ)[:, None] * sql


@triton.jit
def compressed_query_chunk(q_row, row_ok, KCOMP, KCOS, KSC, KSH, sqd, b, h, c0, c_hi, Cck, Nk, period, first, z0,
                           D: tl.constexpr, DC: tl.constexpr):
    """Channels c0 .. c0 + DC of KV head h's run of the compressed K list (to c_hi): (the channels, which are real,
    q_c s_c / T on them (eq. scores), Re Z_0 so far (z0) plus their sum_c q_c mu_c, then on the `first` tile their
    u_0 / T). The query values are gathered at the channels' dimensions (KCOMP), so no load waits on a search of
    the kept list."""
    cs = c0 + tl.arange(0, DC)
    comp = cs < c_hi
    dims = tl.load(KCOMP + cs, mask=comp, other=h * D).to(tl.int32) - h * D
    q = tl.load(q_row + dims[None, :] * sqd, mask=row_ok[:, None] & comp[None, :], other=0.0).to(tl.float32)
    sc = tl.load(KSC + b * Cck + cs, mask=comp, other=0.0).to(tl.float32)
    sh = tl.load(KSH + b * Cck + cs, mask=comp, other=0.0).to(tl.float32)
    qs = q * sc[None, :] / period
    z0 += tl.sum(q * sh[None, :], 1)
    if first:
        a0 = tl.load(KCOS + b * Cck * Nk + cs * Nk, mask=comp, other=0.0).to(tl.float32)
        z0 += tl.sum(qs * a0[None, :], 1)
    return cs, comp, qs, z0


@triton.jit
def query_products(Q, KCOMP, KSTART, KCOS, KSIN, KSC, KSH, U, Z0, LENS, sqb, sqh, sql, sqd, sub, sur, s_half, Hkv,
                   Cck, Nk, NZ, n_rows, period, bh, tile, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr,
                   VARLEN: tl.constexpr, BLOCK_M: tl.constexpr, DC: tl.constexpr, BLOCK_N: tl.constexpr,
                   PREC: tl.constexpr, EMUL_TF32: tl.constexpr):
    """The GEMM path's U_c = QC K_cos and U_s = QC K_sin for KV head h's G * LQ rows and frequencies
    n0 .. n0 + BLOCK_N (eq. scores), without QC: the head's compressed channels are one run of the compressed list
    (from h D - KSTART[h]), read DC at a time with their BLOCK_N coefficients; each chunk's query values are gathered
    at the channels' dimensions (KCOMP) and scaled on chip (q_c s_c / T). No load waits on a search of the kept
    list. The program of the first frequency tile also writes Re Z_0 = u_0 / T + sum_c q_c mu_c with float32 FMA
    (as `_compressed_rows_kernel`). In the interpreter, EMUL_TF32 cuts both dot operands to TF32's 10 mantissa bits,
    as the tensor cores would."""
    b, h, period, rows, row_ok = head_of(bh, LENS, Hkv, period, G * LQ, VARLEN, BLOCK_M)
    ns = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = ns < NZ
    first = tile == 0
    c_lo, c_hi, q_row = head_query(Q, KSTART, b, h, rows, sqb, sqh, sql, G, LQ, D)
    u_cos = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    u_sin = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    z0 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for c0 in range(c_lo, c_hi, DC):
        cs, comp, qs, z0 = compressed_query_chunk(q_row, row_ok, KCOMP, KCOS, KSC, KSH, sqd, b, h, c0, c_hi, Cck, Nk,
                                                  period, first, z0, D, DC)
        coef = b * Cck * Nk + cs[:, None] * Nk + ns[None, :]
        cmask = comp[:, None] & n_ok[None, :]
        k_cos = tl.load(KCOS + coef, mask=cmask, other=0.0).to(tl.float32)
        k_sin = tl.load(KSIN + coef, mask=cmask, other=0.0).to(tl.float32)
        if EMUL_TF32:
            qs = tf32_cut(qs)
            k_cos = tf32_cut(k_cos)
            k_sin = tf32_cut(k_sin)
        u_cos = tl.dot(qs, k_cos, u_cos, input_precision=PREC)
        u_sin = tl.dot(qs, k_sin, u_sin, input_precision=PREC)
    grow = h * G * LQ + rows
    off = b * sub + grow[:, None] * sur + ns[None, :]
    mask = row_ok[:, None] & n_ok[None, :]
    tl.store(U + off, u_cos, mask=mask)
    tl.store(U + s_half + off, u_sin, mask=mask)
    if first:
        tl.store(Z0 + b * n_rows + grow, z0, mask=row_ok)


# ---------------------------------------------------------------- 3. the stream
@triton.jit
def _query_rows_kernel(Q, KKEPT, KSTART, QBD, sqb, sqh, sql, sqd, n_rows, k_width, G: tl.constexpr,
                       LQ: tl.constexpr, D: tl.constexpr, KWP: tl.constexpr, BLOCK_R: tl.constexpr,
                       CHUNK: tl.constexpr, ALIGN: tl.constexpr):
    """`query_rows` of program (b, row block, chunk) = (axis 0, 1, 2)."""
    query_rows(Q, KKEPT, KSTART, QBD, sqb, sqh, sql, sqd, n_rows, k_width, tl.program_id(0), tl.program_id(1),
               tl.program_id(2), G, LQ, D, KWP, BLOCK_R, CHUNK, ALIGN)


@triton.jit
def query_rows(Q, KKEPT, KSTART, QBD, sqb, sqh, sql, sqd, n_rows, k_width, b, rb, chunk, G: tl.constexpr,
               LQ: tl.constexpr, D: tl.constexpr, KWP: tl.constexpr, BLOCK_R: tl.constexpr, CHUNK: tl.constexpr,
               ALIGN: tl.constexpr):
    """QBD[b, r, c] = q[b, r] at the dimension of kept K channel ks + c when it belongs to row r's KV head, else 0,
    for the rows of row block rb, where [ks, ks + KWP) is the block's window of the kept list (`heads_window`), CHUNK
    channels from chunk * CHUNK (a loop over the chunks left 16 programs at 8 x 32k, 6.5 us of load latency)."""
    rows = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    hq = rows // LQ
    ks, kw = heads_window(KSTART, rb * BLOCK_R, n_rows, k_width, G * LQ, BLOCK_R, ALIGN)
    cs = chunk * CHUNK + tl.arange(0, CHUNK)
    chan = tl.load(KKEPT + ks + cs, mask=cs < kw, other=-1)
    own = (chan[None, :] >= 0) & (chan[None, :] // D == (hq // G)[:, None]) & row_ok[:, None]
    q = tl.load(Q + b * sqb + hq[:, None] * sqh + (rows % LQ)[:, None] * sql + (chan % D)[None, :] * sqd,
                mask=own, other=0.0)
    tl.store(QBD + (b * n_rows + rows)[:, None] * KWP + cs[None, :], q, mask=row_ok[:, None])


@triton.jit
def _middle_kernel(
    QBD, KM, VM, Z, A, VK, VV, KSTART, VSTART, H, HM, MAXM, SUMM, ACCM, LENS,
    skb, skt, svb, svt, szr, svkb, svvb, mid_len, k_width, v_width, n_rows, n_blocks, blocks_per_split, sm_scale,
    a_half, sar, sab, sap, GL: tl.constexpr, VARLEN: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr,
    KWP: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_VC: tl.constexpr, BLOCK_VD: tl.constexpr, BLOCK_T: tl.constexpr, BB: tl.constexpr,
    PK: tl.constexpr, PV: tl.constexpr, HAS_S: tl.constexpr, HAS_H: tl.constexpr, DT: tl.constexpr,
    BDT: tl.constexpr, PREC: tl.constexpr, CPREC: tl.constexpr, EMUL_BF16: tl.constexpr, A_SPLIT: tl.constexpr,
    ALIGN: tl.constexpr, H16: tl.constexpr, HDT: tl.constexpr, HPREC: tl.constexpr, PDL: tl.constexpr = False,
    PDL_EARLY: tl.constexpr = True,
):
    """Split `split` of a block of query rows of sequence b over whole blocks of BB middle tokens (eq. scores,
    factored): scores (Q_bd @ K^T + a_k @ VK^T) * scale, online softmax, P @ V, and per block H_k = P @ VV with
    the running max it is relative to. K and V are read only in the window of the block's KV heads' kept runs
    (`heads_window`: a block of 16 rows of LLaMA-3-8B reads 4 of the 8 heads' channels). Stores per row, at its KV
    head's part, the split's (max, sum) and its own head's kept V channels (the run VSTART[h] .. VSTART[h + 1],
    BLOCK_VD wide). Program axis 2 slices the V window BLOCK_VC channels at a time (one slice unless it is wide);
    every slice scores the same tokens, and the first also stores H and the statistics.

    The rank-r products take BDT operands (bfloat16 for 16-bit inputs, whose own rounding is 2^-9; float32 with
    CPREC otherwise; EMUL_BF16 rounds them to bfloat16 in the interpreter, which has no bfloat16). The n = 0 bin
    (it carries q_c . mu_k, which can dominate the score) is not in the tables: Re Z_0 is added in float32.
    A_SPLIT: A comes as the products of the query spectrum's two real parts, P_c = U_c W_K at A and P_s = U_s W_K
    a_half further, and A = P_c - i P_s (Re A = Re P_c + Im P_s, Im A = Im P_c - Re P_s). A is strided (sar, sab,
    sap: per query row of the batch, block, rank entry), so it may be stored row-major or transposed (`a_t`). PDL:
    launched with programmatic dependent launch (`after_predecessor`). H = P @ VV takes HDT operands in HPREC: BDT
    and CPREC, except with H16 (float16 inputs) float16 operands, P rounded to float16 in the interpreter. P is in
    [0, 1] and VV within 1, so float16's range suffices, and its rounding (2^-11) keeps float16 outputs within their
    tolerance (bfloat16's 2^-9 on P did not, on a magnitude-1000 case). A keeps bfloat16 for its range."""
    after_predecessor(PDL, PDL_EARLY)
    pid = tl.program_id(0)
    split = tl.program_id(1)
    row_blocks = tl.cdiv(n_rows, BLOCK_R)
    b = pid // row_blocks
    row0 = (pid % row_blocks) * BLOCK_R
    rows = row0 + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    if VARLEN:
        mid_len = tl.load(LENS + 3 * b + 1)
    ks, kw = heads_window(KSTART, row0, n_rows, k_width, GL, BLOCK_R, ALIGN)
    vw0, vw = heads_window(VSTART, row0, n_rows, v_width, GL, BLOCK_R, ALIGN)
    cc = tl.arange(0, CHUNK)
    vsl = tl.program_id(2)
    first = (tl.zeros((BLOCK_R,), dtype=tl.int32) + vsl) == 0  # as a row vector: masks combine elementwise
    vc = vsl * BLOCK_VC + tl.arange(0, BLOCK_VC)  # lanes of the V window
    pk = tl.arange(0, PK)
    pv = tl.arange(0, PV)
    m_i = tl.full((BLOCK_R,), -1.0e30, dtype=tl.float32)
    l_i = tl.zeros((BLOCK_R,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_R, BLOCK_VC), dtype=tl.float32)
    z0 = tl.zeros((BLOCK_R,), dtype=tl.float32)
    if HAS_S:
        z0 = tl.load(Z + (b * n_rows + rows) * szr, mask=row_ok, other=0.0)  # Re Z_0
    blk0 = split * blocks_per_split
    blk1 = tl.minimum(blk0 + blocks_per_split, tl.cdiv(mid_len, BB))
    for blk in range(blk0, blk1):
        hrow = (b * n_rows + rows) * n_blocks + blk
        a = tl.zeros((BLOCK_R, PK), dtype=tl.float32)
        if HAS_S:
            a_at = A + ((b * n_rows + rows) * sar)[:, None] + blk * sab
            a = tl.load(a_at + pk[None, :] * sap, mask=row_ok[:, None], other=0.0)
            if A_SPLIT:
                a += tl.where(pk % 2 == 0, 1.0, -1.0)[None, :] * tl.load(
                    a_at + a_half + (pk ^ 1)[None, :] * sap, mask=row_ok[:, None], other=0.0)
            if EMUL_BF16:
                a = bf16_rounded(a)
            a = a.to(BDT)
        h = tl.zeros((BLOCK_R, PV), dtype=tl.float32)
        for sub in range(0, BB, BLOCK_T):
            jj = sub + tl.arange(0, BLOCK_T)
            ts = blk * BB + jj
            ok = ts < mid_len
            s = tl.zeros((BLOCK_R, BLOCK_T), dtype=tl.float32) + z0[:, None]
            if HAS_S:
                vk = tl.load(VK + b * svkb + jj[:, None] * PK + pk[None, :])
                s += tl.dot(a, tl.trans(vk), input_precision=CPREC)
            for c0 in tl.static_range(0, KWP, CHUNK):
                k = tl.load(KM + b * skb + ts[:, None] * skt + ks + (c0 + cc)[None, :],
                            mask=ok[:, None] & (c0 + cc < kw)[None, :], other=0.0)
                q = tl.load(QBD + (b * n_rows + rows)[:, None] * KWP + (c0 + cc)[None, :], mask=row_ok[:, None],
                            other=0.0)
                s += tl.dot(q, tl.trans(k.to(DT)), input_precision=PREC)
            s = tl.where(ok[None, :], s * sm_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp(s - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(VM + b * svb + ts[:, None] * svt + vw0 + vc[None, :], mask=ok[:, None] & (vc < vw)[None, :],
                        other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(DT), v.to(DT), input_precision=PREC)
            if HAS_H:
                vv = tl.load(VV + b * svvb + jj[:, None] * PV + pv[None, :])
                pb = p
                if EMUL_BF16:
                    pb = p.to(tl.float16).to(tl.float32) if H16 else bf16_rounded(p)
                h = h * alpha[:, None] + tl.dot(pb.to(HDT), vv, input_precision=HPREC)
            m_i = m_new
        if HAS_H:
            tl.store(H + hrow[:, None] * PV + pv[None, :], h, mask=(row_ok & first)[:, None])
            tl.store(HM + hrow, m_i, mask=row_ok & first)
    # this split's part of each row's KV head: part = (b * Hkv + head) * splits + split, row within the head
    head = rows // GL
    part = (b * (n_rows // GL) + head) * tl.num_programs(1) + split
    slot = part * BLOCK_M + rows % GL
    tl.store(MAXM + slot, m_i, mask=row_ok & first)
    tl.store(SUMM + slot, l_i, mask=row_ok & first)
    vs = tl.load(VSTART + head, mask=row_ok, other=0)
    ve = tl.load(VSTART + head + 1, mask=row_ok, other=0)
    chans = vw0 + vc  # the lanes' places in the kept V list
    own = row_ok[:, None] & (chans[None, :] >= vs[:, None]) & (chans[None, :] < ve[:, None])
    tl.store(ACCM + slot[:, None] * BLOCK_VD + (chans[None, :] - vs[:, None]), acc, mask=own)


@triton.jit
def _exact_kernel(Q, KE, VE, MAXE, SUME, ACCE, LENS, sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd,
                  Hkv, Le, sm_scale, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, DT: tl.constexpr,
                  PREC: tl.constexpr, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                  BLOCK_T: tl.constexpr):
    """`exact_part` of program (bh, split) = (axis 0, axis 1), axis 1 the splits."""
    exact_part(Q, KE, VE, MAXE, SUME, ACCE, LENS, sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, Hkv, Le,
               sm_scale, tl.program_id(0), tl.program_id(1), tl.num_programs(1), G, LQ, D, DT, PREC, VARLEN, BLOCK_M,
               BLOCK_D, BLOCK_T)


@triton.jit
def exact_part(Q, KE, VE, MAXE, SUME, ACCE, LENS, sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, Hkv, Le,
               sm_scale, bh, split, splits, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, DT: tl.constexpr,
               PREC: tl.constexpr, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
               BLOCK_T: tl.constexpr):
    """The sinks and the local window of (sequence, KV head) bh, split `split` of `splits`: (max, sum, output) at
    part bh x splits + split."""
    b = bh // Hkv
    if VARLEN:
        Le = tl.load(LENS + 3 * b)
    per = tl.cdiv(tl.cdiv(Le, BLOCK_T), splits)
    m_i, l_i, acc = exact_split(Q, KE, VE, b, bh % Hkv, split * per, per, Le, sqb, sqh, sql, sqd, skb, skh, skl, skd,
                                svb, svh, svl, svd, sm_scale, G, LQ, D, DT, PREC, BLOCK_M, BLOCK_D, BLOCK_T)
    part = bh * splits + split
    rows = tl.arange(0, BLOCK_M)
    tl.store(MAXE + part * BLOCK_M + rows, m_i)
    tl.store(SUME + part * BLOCK_M + rows, l_i)
    tl.store(ACCE + (part * BLOCK_M + rows)[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :], acc,
             mask=(rows < G * LQ)[:, None])


@triton.jit
def _prologue_kernel(
    Q, KCOMP, KSTART, KCOS, KSIN, KSC, KSH, U, Z0, KE, VE, MAXE, SUME, ACCE, KKEPT, QBD, LENS, sqb, sqh, sql, sqd,
    sub, sur, s_half, skb, skh, skl, skd, svb, svh, svl, svd, Hkv, Cck, Nk, NZ, n_rows, period, Le, sm_scale, k_width,
    qp_programs, n_tiles, ex_programs, esplits, row_blocks, chunks, G: tl.constexpr, LQ: tl.constexpr,
    D: tl.constexpr, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr, DC: tl.constexpr, BLOCK_N: tl.constexpr,
    QP_PREC: tl.constexpr, EMUL_TF32: tl.constexpr, DT: tl.constexpr, E_PREC: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr, KWP: tl.constexpr, BLOCK_R: tl.constexpr, CHUNK: tl.constexpr, ALIGN: tl.constexpr,
    ROWS: tl.constexpr, PDL: tl.constexpr = False, PDL_EARLY: tl.constexpr = True, FOLDK=None, ZK=None, sfkb=0,
    sfkc=0, szkb=0, n_cols=0, FOLD: tl.constexpr = False, FDT: tl.constexpr = tl.float32, F_PREC: tl.constexpr = None,
    F_EMUL_BF16: tl.constexpr = False, F_EMUL_TF32: tl.constexpr = False,
):
    """What reads only the queries and the cache, in one launch (`qx_fused`): programs 0 .. qp_programs - 1 are
    `query_products` (bh, frequency tile), the next ex_programs `exact_part` (bh, exact split), and with ROWS
    (`qr_fused`) the rest `query_rows` (b, row block, chunk). No part reads what another writes, so their loads
    overlap instead of each kernel's ramp and tail. PDL: launched with programmatic dependent launch. FOLD
    (`folds`): the first programs are `fold_products` (bh, tile of A's n_cols columns; FoldK by dimension at FOLDK,
    z at ZK) and store A itself at U (strides sub, sur), so no GEMM follows."""
    after_predecessor(PDL, PDL_EARLY)
    pid = tl.program_id(0)
    if pid < qp_programs:
        if FOLD:
            bh = pid // n_tiles
            rows = tl.arange(0, BLOCK_M)
            fold_products(Q, FOLDK, ZK, U, Z0, sqb, sqh, sql, sqd, sfkb, sfkc, szkb, sub, sur, n_cols, n_rows,
                          bh // Hkv, bh % Hkv, rows, rows < G * LQ, pid % n_tiles, G, LQ, D, BLOCK_M, BLOCK_D, BLOCK_N,
                          FDT, F_PREC, F_EMUL_BF16, F_EMUL_TF32)
        else:
            query_products(Q, KCOMP, KSTART, KCOS, KSIN, KSC, KSH, U, Z0, LENS, sqb, sqh, sql, sqd, sub, sur, s_half,
                           Hkv, Cck, Nk, NZ, n_rows, period, pid // n_tiles, pid % n_tiles, G, LQ, D, VARLEN, BLOCK_M,
                           DC, BLOCK_N, QP_PREC, EMUL_TF32)
    elif pid < qp_programs + ex_programs:
        e = pid - qp_programs
        exact_part(Q, KE, VE, MAXE, SUME, ACCE, LENS, sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, Hkv,
                   Le, sm_scale, e // esplits, e % esplits, esplits, G, LQ, D, DT, E_PREC, VARLEN, BLOCK_M, BLOCK_D,
                   BLOCK_T)
    elif ROWS:
        r = pid - qp_programs - ex_programs
        query_rows(Q, KKEPT, KSTART, QBD, sqb, sqh, sql, sqd, n_rows, k_width, r // (row_blocks * chunks),
                   r // chunks % row_blocks, r % chunks, G, LQ, D, KWP, BLOCK_R, CHUNK, ALIGN)


# ---------------------------------------------------------------- 4. the spectrum's merge
@triton.jit
def _merge_kernel(MAXE, SUME, MAXM, SUMM, H, HM, M, L, MID, HO, n_blocks, esplits, msplits,
                  GL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_SE: tl.constexpr, STEPS_E: tl.constexpr,
                  BLOCK_SM: tl.constexpr, STEPS_M: tl.constexpr, BLOCK_B: tl.constexpr, PV: tl.constexpr,
                  HAS_H: tl.constexpr, PDL: tl.constexpr = False, PDL_EARLY: tl.constexpr = True,
                  FOLDV=None, VSTART=None, PF=None, sfvb=0, sfvc=0, Hkv=1, D: tl.constexpr = 1,
                  FOLD: tl.constexpr = False, BLOCK_CV: tl.constexpr = 16, FDT: tl.constexpr = tl.float32,
                  F_PREC: tl.constexpr = None, F_EMUL_BF16: tl.constexpr = False, F_EMUL_TF32: tl.constexpr = False):
    """The softmax statistics of KV head bh's rows merged over the exact and middle splits (m, l), and H rescaled to
    them into HO (H itself, or a bfloat16 copy for the planes' bfloat16 GEMM): HO_k = H_k e^{m_k - m} / l, so
    F = H @ W_V^H is the spectrum of the normalized probabilities.
    Program (bh, 0) stores m, l and the middle's probability mass p_mid = sum_t p_t / l (the exact n = 0 bin);
    program (bh, c) rescales blocks c BLOCK_B .. (c + 1) BLOCK_B - 1. One launch replaces a dozen elementwise ops.
    FOLD (`folds`): instead of storing them, the program multiplies its rescaled columns of H by the head's FoldV
    (`fold_partials`) and stores the partial sums of the compressed V channels at PF [bh, c, BLOCK_M, BLOCK_CV].
    The loads come before the first reduction (a reduction across warps is a barrier no load crosses): the head's
    compressed run, tile 0 of each split count's statistics (`stats_tile`: BLOCK_SE exact, BLOCK_SM middle splits;
    STEPS_E, STEPS_M tiles in all), H's block maxima and H, then the fold's rows, the one load that waits on another
    (the run). PDL: launched with programmatic dependent launch."""
    after_predecessor(PDL, PDL_EARLY)
    bh = tl.program_id(0)
    rows = tl.arange(0, BLOCK_M)
    row_ok = rows < GL
    grow = bh * GL + rows  # b * n_rows + h * GL + row
    if FOLD:
        c_lo, c_hi = compressed_run(VSTART, bh % Hkv, D)
    e_mx, e_sm = stats_tile(MAXE, SUME, bh, esplits, 0, rows, BLOCK_M, BLOCK_SE)
    m_mx, m_sm = stats_tile(MAXM, SUMM, bh, msplits, 0, rows, BLOCK_M, BLOCK_SM)
    if HAS_H:
        cols = tl.arange(0, BLOCK_B * PV)
        blk = tl.program_id(1) * BLOCK_B + cols // PV
        ok = row_ok[:, None] & (blk < n_blocks)[None, :]
        hrow = grow[:, None] * n_blocks + blk[None, :]
        at = hrow * PV + (cols % PV)[None, :]
        hm = tl.load(HM + hrow, mask=ok, other=-1.0e30)
        h_raw = tl.load(H + at, mask=ok, other=0.0)
        if FOLD:
            js = tl.program_id(1) * BLOCK_B * PV + cols
            f = fold_rows(FOLDV, bh // Hkv, c_lo, c_hi, js, blk < n_blocks, sfvb, sfvc, BLOCK_CV)
    m_e, l_e = merged_stats_tiled(MAXE, SUME, bh, esplits, rows, e_mx, e_sm, BLOCK_M, BLOCK_SE, STEPS_E)
    m_m, l_m = merged_stats_tiled(MAXM, SUMM, bh, msplits, rows, m_mx, m_sm, BLOCK_M, BLOCK_SM, STEPS_M)
    m = tl.maximum(m_e, m_m)
    mid = l_m * tl.exp(m_m - m)
    l_tot = mid + l_e * tl.exp(m_e - m)
    first = (tl.zeros((BLOCK_M,), dtype=tl.int32) + tl.program_id(1)) == 0
    tl.store(M + grow, m, mask=row_ok & first)
    tl.store(L + grow, l_tot, mask=row_ok & first)
    tl.store(MID + grow, mid / l_tot, mask=row_ok & first)
    if HAS_H:
        hs = h_raw * (tl.exp(hm - m[:, None]) / l_tot[:, None])
        if FOLD:
            part = fold_partials(hs, f, FDT, F_PREC, F_EMUL_BF16, F_EMUL_TF32)
            pf = ((bh * tl.num_programs(1) + tl.program_id(1)) * BLOCK_M + rows)[:, None] * BLOCK_CV
            tl.store(PF + pf + tl.arange(0, BLOCK_CV)[None, :], part, mask=row_ok[:, None])
        else:
            tl.store(HO + at, hs, mask=ok)


@triton.jit
def v_sums_tile(PLANES, VCOS, VSIN, b, grow, row_ok, cs, c_ok, spb, spr, spn, Ccv, Nv, width,
                BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr,
                EMUL_TF32: tl.constexpr):
    """sum_n (w Re F)[row, n] a'_c[n] - (w Im F)[row, n] b'_c[n] (eq. values) for rows grow of sequence b and the
    compressed V channels cs, the coefficients read in tiles of BLOCK_N. The planes are strided (spb, spr, spn: per
    sequence, row, frequency; `planes_t` stores them frequency-major). EMUL_TF32: both operands cut to TF32 in the
    interpreter, as the tensor cores would."""
    plane = PLANES + b * spb + grow[:, None] * spr
    coef = b * Ccv * Nv + cs[:, None] * Nv
    acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for n0 in range(0, width, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)
        n_ok = ns < width
        p_mask = row_ok[:, None] & n_ok[None, :]
        re = tl.load(plane + ns[None, :] * spn, mask=p_mask, other=0.0)
        im = -tl.load(plane + (width + ns[None, :]) * spn, mask=p_mask, other=0.0)
        c_mask = c_ok[:, None] & n_ok[None, :]
        a = tl.load(VCOS + coef + ns[None, :], mask=c_mask, other=0.0).to(tl.float32)
        bs = tl.load(VSIN + coef + ns[None, :], mask=c_mask, other=0.0).to(tl.float32)
        if EMUL_TF32:
            re = tf32_cut(re)
            im = tf32_cut(im)
            a = tf32_cut(a)
            bs = tf32_cut(bs)
        acc = tl.dot(re, tl.trans(a), acc, input_precision=PREC)
        acc = tl.dot(im, tl.trans(bs), acc, input_precision=PREC)
    return acc


@triton.jit
def _v_sums_kernel(PLANES, VSTART, VCOS, VSIN, R, spb, spr, spn, srb, srr, Hkv, Ccv, Nv, width, G: tl.constexpr,
                   LQ: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_N: tl.constexpr, PREC: tl.constexpr, EMUL_TF32: tl.constexpr):
    """`_v_sums` as one kernel: R[b, row, c] = `v_sums_tile` for KV head h's G * LQ rows and BLOCK_C of its
    compressed V channels, which are one run of the compressed list (from h D - VSTART[h]), read once."""
    bh = tl.program_id(0)
    b = bh // Hkv
    h = bh % Hkv
    c_lo, c_hi = compressed_run(VSTART, h, D)
    cs = c_lo + tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < c_hi
    rows = tl.arange(0, BLOCK_M)
    row_ok = rows < G * LQ
    grow = h * G * LQ + rows
    acc = v_sums_tile(PLANES, VCOS, VSIN, b, grow, row_ok, cs, c_ok, spb, spr, spn, Ccv, Nv, width, BLOCK_M, BLOCK_C,
                      BLOCK_N, PREC, EMUL_TF32)
    tl.store(R + b * srb + grow[:, None] * srr + cs[None, :], acc, mask=row_ok[:, None] & c_ok[None, :])


# ---------------------------------------------------------------- 5. output
@triton.jit
def _v_products_kernel(F, VKEPT, VSTART, VCOS, VSIN, PO, LENS, sfb, sfr, Hkv, Ccv, Nv, period,
                       G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, VARLEN: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DO: tl.constexpr, BLOCK_N: tl.constexpr,
                       FCH: tl.constexpr, CPREC: tl.constexpr):
    """PO[bh, c] = sum over the frequencies of chunk c (FCH of them) of w_n (a'_n Re F_n - b'_n Im F_n), for the
    compressed V channels among BLOCK_DO dimensions of KV head bh (eq. values): the output's sum over frequencies
    spread over chunks, so a batch-1 call has programs for every SM instead of one per (head, 16 dimensions)."""
    bh = tl.program_id(0)
    b = bh // Hkv
    h = bh % Hkv
    c = tl.program_id(2)
    if VARLEN:
        period = tl.load(LENS + 3 * b + 2)
    nv = tl.minimum(Nv, period // 2 + 1)
    rows = tl.arange(0, BLOCK_M)
    row_ok = rows < G * LQ
    ds = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    d_ok = ds < D
    vmap = channel_map(VKEPT, VSTART, h, h * D + ds, 64)
    comp = d_ok & (vmap < 0)
    ci = tl.where(comp, -1 - vmap, 0)
    rec = spectrum_range_products(F + b * sfb + (h * G * LQ + rows) * sfr, row_ok, c * FCH,
                                  tl.minimum(c * FCH + FCH, nv), period, ci, comp, b, Ccv, Nv, VCOS, VSIN, BLOCK_M,
                                  BLOCK_DO, BLOCK_N, CPREC)
    po = ((bh * tl.num_programs(2) + c) * BLOCK_M + rows)[:, None] * BLOCK_D + ds[None, :]
    tl.store(PO + po, rec, mask=row_ok[:, None] & comp[None, :])


@triton.jit
def _output_kernel(
    ACCE, MAXE, ACCM, MAXM, M, L, MID, VKEPT, VSTART, F, PO, VCOS, VSIN, VSC, VSH, OUT, LENS,
    sfb, sfr, sob, soh, sol, sod, Hkv, Ccv, Nv, period, esplits, msplits, n_chunks,
    PLANES, VCOMP, spb, spr, spn, width, n_out,
    G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DO: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_VD: tl.constexpr,
    BLOCK_SE: tl.constexpr, STEPS_E: tl.constexpr, BLOCK_SM: tl.constexpr, STEPS_M: tl.constexpr,
    CPREC: tl.constexpr, PARTS: tl.constexpr, V_GEMM: tl.constexpr = False,
    VO: tl.constexpr = False, BLOCK_C: tl.constexpr = 32, BLOCK_NS: tl.constexpr = 64, VPREC: tl.constexpr = "ieee",
    EMUL_TF32: tl.constexpr = False, PDL: tl.constexpr = False, PDL_EARLY: tl.constexpr = True,
):
    """out[:, d-block] = (exact and middle splits merged by log-sum-exp) / l + the compressed V channels from F.
    PARTS > 0: the sum over frequencies comes in n_chunks partial sums (PO, `_v_products_kernel`), added PARTS at a
    time; else it is taken here. V_GEMM: F holds those sums per compressed V channel already (R [b, rows, Ccv],
    `_v_sums`). VO (`vo_fused`, with v_gemm): programs (bh, n_out + c) take those sums from the planes themselves
    (`v_sums_tile`, BLOCK_C channels of the head's compressed run) and store the compressed channels' outputs;
    programs (bh, < n_out) store the kept channels only (the fold path's output is optimized/lowrank_fold_output.py).
    The splits are merged as whole tiles (`acc_tile`, `split_sums`: BLOCK_SE exact and BLOCK_SM middle splits, STEPS_E
    and STEPS_M tiles), the exact tile issued with the program's first loads. PDL: launched with programmatic
    dependent launch."""
    after_predecessor(PDL, PDL_EARLY)
    bh = tl.program_id(0)
    b = bh // Hkv
    h = bh % Hkv
    if VARLEN:
        period = tl.load(LENS + 3 * b + 2)
    rows = tl.arange(0, BLOCK_M)
    row_ok = rows < G * LQ
    grow = h * G * LQ + rows
    n_rows = Hkv * G * LQ
    m = tl.load(M + b * n_rows + grow, mask=row_ok, other=0.0)
    l_tot = tl.load(L + b * n_rows + grow, mask=row_ok, other=1.0)
    p_mid = tl.load(MID + b * n_rows + grow, mask=row_ok, other=0.0)  # F_0: the middle's mass, exact
    o_rows = OUT + b * sob + (h * G + rows // LQ)[:, None] * soh + (rows % LQ)[:, None] * sol
    if VO and tl.program_id(1) >= n_out:
        c_lo, c_hi = compressed_run(VSTART, h, D)
        cs = c_lo + (tl.program_id(1) - n_out) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = cs < c_hi
        c_i = tl.where(c_ok, cs, 0)
        c_d = (tl.load(VCOMP + c_i, mask=c_ok, other=0) - h * D).to(tl.int32)  # the channels' dimensions
        c_sums = v_sums_tile(PLANES, VCOS, VSIN, b, grow, row_ok, cs, c_ok, spb, spr, spn, Ccv, Nv, width, BLOCK_M,
                             BLOCK_C, BLOCK_NS, VPREC, EMUL_TF32)
        c_mx, c_acc = acc_tile(ACCE, MAXE, bh, esplits, 0, rows, row_ok, c_d, c_ok, BLOCK_M, BLOCK_D, BLOCK_SE)
        c_out = split_sums(ACCE, MAXE, bh, esplits, m, rows, row_ok, c_d, c_ok, c_mx, c_acc, BLOCK_M, BLOCK_D,
                           BLOCK_SE, STEPS_E) / l_tot[:, None]
        c_out += compressed_out(c_sums, p_mid, c_i, c_ok, b, VCOS, VSC, VSH, Ccv, Nv, period)
        tl.store(o_rows + c_d[None, :] * sod, c_out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & c_ok[None, :])
    else:
        ds = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
        d_ok = ds < D
        e_mx, e_acc = acc_tile(ACCE, MAXE, bh, esplits, 0, rows, row_ok, ds, d_ok, BLOCK_M, BLOCK_D, BLOCK_SE)
        vmap = channel_map(VKEPT, VSTART, h, h * D + ds, 64)
        kept = d_ok & (vmap >= 0)
        run = tl.where(kept, vmap - tl.load(VSTART + h), 0)
        m_mx, m_acc = acc_tile(ACCM, MAXM, bh, msplits, 0, rows, row_ok, run, kept, BLOCK_M, BLOCK_VD, BLOCK_SM)
        acc = split_sums(ACCE, MAXE, bh, esplits, m, rows, row_ok, ds, d_ok, e_mx, e_acc, BLOCK_M, BLOCK_D, BLOCK_SE,
                         STEPS_E)
        acc += split_sums(ACCM, MAXM, bh, msplits, m, rows, row_ok, run, kept, m_mx, m_acc, BLOCK_M, BLOCK_VD,
                          BLOCK_SM, STEPS_M)
        out = acc / l_tot[:, None]
        if VO:
            d_ok = kept  # the compressed channels are the other programs'
        else:
            comp = d_ok & (vmap < 0)
            ci = tl.where(comp, -1 - vmap, 0)
            if V_GEMM:
                rec = tl.load(F + b * sfb + grow[:, None] * sfr + ci[None, :], mask=row_ok[:, None] & comp[None, :],
                              other=0.0)
            elif PARTS > 0:
                rec = summed_parts(PO, bh, n_chunks, rows, row_ok, ds, comp, BLOCK_M, BLOCK_D, BLOCK_DO, PARTS)
            else:
                nv = tl.minimum(Nv, period // 2 + 1)
                rec = compressed_from_spectrum(F + b * sfb + grow * sfr, row_ok, nv, period, ci, comp, b, Ccv, Nv,
                                               VCOS, VSIN, BLOCK_M, BLOCK_DO, BLOCK_N, CPREC)
            out += compressed_out(rec, p_mid, ci, comp, b, VCOS, VSC, VSH, Ccv, Nv, period)
        tl.store(o_rows + ds[None, :] * sod, out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


# The kernels an offline build checks (optimized/sm90_build.py), by name.
KERNELS = {"stream": _middle_kernel, "prologue": _prologue_kernel, "merge": _merge_kernel,
           "fold output": fold_output_kernel, "output": _output_kernel}


# ---------------------------------------------------------------- host side
def heads_window_width(starts: list[int], n_rows: int, gl: int, block_r: int, align: int) -> int:
    """The widest window of a row block's KV heads over the kept list (`heads_window`, runs `starts`)."""
    widths = []
    for row0 in range(0, n_rows, block_r):
        h0, h1 = row0 // gl, (min(row0 + block_r, n_rows) - 1) // gl
        widths.append(-(-starts[h1 + 1] // align) * align - starts[h0] // align * align)
    return max(widths)


def choose_block(periods: list[int], nz: int, nv: int, block_t: int, tokens: int, max_rank: int = MAX_RANK,
                 row_programs: int = 1, sms: int | None = None) -> int:
    """The largest block (block_t times a power of two, at most MAX_BLOCK and the middle rounded up) whose K and V
    bases keep rank <= max_rank at every period; block_t when none does. With `sms` (a GPU), halved while the stream
    would have fewer than sms / 2 programs (`row_programs` per block: sequences x row blocks), since a split is whole
    blocks: at 1 x 32k 1024-token blocks leave 62 programs on 132 SMs."""
    best, block = block_t, block_t
    while block <= min(MAX_BLOCK, triton.next_power_of_2(max(tokens, 1))):
        if any(max(block_rank(p, min(nz, p // 2 + 1), block), block_rank(p, min(nv, p // 2 + 1), block)) > max_rank
               for p in set(periods)):
            break
        best, block = block, 2 * block
    while sms and best > block_t and row_programs * triton.cdiv(max(tokens, 1), best) < sms // 2:
        best //= 2
    return best


@lru_cache(maxsize=8)
def period_tables(period: int, nz: int, nv: int, tokens: int, block: int, pk: int, pv: int, device: str):
    """(W_K, W_V^H, VK, VV) of one period on `device`, kept across calls (a decode step's plan copies no tables).
    The n = 0 bins are exact elsewhere (Re Z_0 in `_middle_kernel`, the middle's mass in `_output_kernel`), so W_K
    has no n = 0 row and W_V^H no n = 0 column."""
    tk = tile_basis(period, nz, tokens, block, True, TOL, pk)
    tv = tile_basis(period, nv, tokens, block, False, TOL, pv)
    w_k, w_vh = tk.w.clone(), tv.w.conj().transpose(0, 1).contiguous()
    w_k[:1] = 0
    w_vh[:, :1] = 0
    return w_k.to(device), w_vh.to(device), tk.v.to(device), tv.v.to(device)


@lru_cache(maxsize=8)
def planes_table(period: int, nv: int, tokens: int, block: int, pv: int, width: int, device: str) -> torch.Tensor:
    """The real [2 M, 2 width] table that takes H (M complex entries per row, re and im interleaved) to the weighted
    planes [w_n Re F_n | w_n Im F_n] (each half `width` >= nv wide, zero past nv), w_n the inverse real transform's
    weights (eq. values): F = H W_V^H and its weighting as one real GEMM. float32; twice W_V^H's bytes."""
    w_vh = period_tables(period, 0, nv, tokens, block, 16, pv, "cpu")[1].resolve_conj()
    w = dft_weights(nv, period, torch.float32)
    re, im = w_vh.real * w, w_vh.imag * w
    table = torch.zeros(2 * w_vh.shape[0], 2 * width, dtype=torch.float32)
    table[0::2, :nv], table[0::2, width:width + nv] = re, im
    table[1::2, :nv], table[1::2, width:width + nv] = -im, re
    return table.to(device)


def _v_sums(planes, v_cos, v_sin, out, prec: str) -> None:
    """out = (w Re F) @ a'^T - (w Im F) @ b'^T per sequence: the compressed V channels' sums over frequencies (eq.
    values) from the planes [w Re F | w Im F] and the V coefficients [B, Ccv, Nv] (cuBLAS reads them in place)."""
    width = planes.shape[2] // 2
    cos, sin = (t[:, :, :width].transpose(1, 2) for t in (v_cos, v_sin))
    with _in_precision(prec, planes[:, :, :width], planes[:, :, width:], cos, sin) as (re, im, cos, sin):
        torch.bmm(re, cos, out=out)
        out.baddbmm_(im, sin, alpha=-1.0)


def tf32_truncated(x: torch.Tensor) -> torch.Tensor:
    """float32 or complex64 x with each float's mantissa cut to TF32's 10 bits (truncation, the larger of the two
    roundings a tensor core's conversion may use): the interpreter's stand-in for a cuBLAS GEMM in TF32."""
    if x.dtype not in (torch.float32, torch.complex64):
        raise ValueError(f"tf32_truncated: x must be float32 or complex64, got {x.dtype}")
    bits = torch.view_as_real(x.resolve_conj()) if x.is_complex() else x
    cut = (bits.contiguous().view(torch.int32) & -8192).view(torch.float32)
    return torch.view_as_complex(cut) if x.is_complex() else cut


@contextmanager
def tf32_matmul(on: bool):
    """cuBLAS float32 (and complex64) GEMMs on TF32 tensor cores while on, restored after."""
    if not on:
        yield
        return
    matmul = torch.backends.cuda.matmul
    name, value = ("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision") else ("allow_tf32", True)
    prev = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, prev)


@contextmanager
def _in_precision(prec: str, *operands: torch.Tensor):
    """The GEMM operands for precision `prec` (GEMM_PRECS), with the matmul mode set while in the block: "tf32" runs
    on TF32 tensor cores on a GPU (`tf32_matmul`), and off a GPU yields the operands with their mantissas cut as the
    tensor cores would (`tf32_truncated`, the interpreter's stand-in); "ieee" yields them as they are. "bf16" is
    TF32 here: only real GEMMs take bfloat16 (`_product_bf16`)."""
    tf32, gpu = prec in ("tf32", "bf16"), operands[0].is_cuda
    with tf32_matmul(tf32 and gpu):
        yield tuple(tf32_truncated(t) for t in operands) if tf32 and not gpu else operands


def gemm_product(x, w, out, idx=None, prec: str = "ieee", dim: int = 0) -> None:
    """out = x @ w, or only the sequences idx (along `dim`) of it (a period group of a varlen batch), in precision
    `prec`: "bf16" for real operands by `_product_bf16`, else `_in_precision`."""
    if prec == "bf16" and not (x.is_complex() or w.is_complex()):
        _product_bf16(x, w, out, idx, dim)
        return
    with _in_precision(prec, x, w) as (x, w):
        _product_into(x, w, out, idx, dim)


def _product_bf16(x, w, out, idx, dim) -> None:
    """`gemm_product` with bfloat16 operands (either may already be bfloat16: a table cast once per plan), float32
    accumulation and a float32 result (cuBLAS's bf16 x bf16 -> fp32 GEMM on a GPU, `torch.mm(out_dtype=)`). Off a
    GPU the operands are rounded to bfloat16 and multiplied in float32, where the product of two bfloat16 values is
    exact, as on the tensor cores. w is 2-D; x is 2-D or a stack of rows."""
    if w.dim() != 2:
        raise ValueError(f"_product_bf16: w must be 2-D, got shape {tuple(w.shape)}")
    if idx is not None:
        x = x.index_select(dim, idx)
    xb, wb = x.to(torch.bfloat16), w.to(torch.bfloat16)
    if not x.is_cuda:
        r = torch.matmul(xb.to(torch.float32), wb.to(torch.float32))
    else:
        x2 = xb.reshape(-1, xb.shape[-1])
        direct = idx is None and out.is_contiguous() and out.shape == (*x.shape[:-1], w.shape[1])
        try:
            if direct:
                torch.mm(x2, wb, out_dtype=torch.float32, out=out.view(-1, w.shape[1]))
                return
            r = torch.mm(x2, wb, out_dtype=torch.float32)
        except (TypeError, RuntimeError, NotImplementedError):  # no bf16 -> fp32 GEMM in this torch: bf16 result
            r = torch.mm(x2, wb).to(torch.float32)
        r = r.view(*x.shape[:-1], w.shape[1])
    if idx is not None:
        out.index_copy_(dim, idx, r)
    else:
        out.copy_(r)


def _product_into(x, w, out, idx, dim) -> None:
    if idx is not None:
        out.index_copy_(dim, idx, torch.matmul(x.index_select(dim, idx), w))
    elif out.is_contiguous():
        torch.matmul(x, w, out=out)
    else:
        out.copy_(torch.matmul(x, w))


def _check_options(q, block_t, block, num_splits, num_warps, block_r, gemm_precs, folds=None, dense=None) -> None:
    check_triton_dtype("q", q)
    if folds is not None and not isinstance(folds, bool):
        raise ValueError(f"folds must be None or a bool (the coefficient folds), got {folds!r}")
    if dense is not None and not isinstance(dense, bool):
        raise ValueError(f"dense must be None or a bool (the rebuilt middle rows), got {dense!r}")
    if gemm_precs is not None and (not isinstance(gemm_precs, (tuple, list)) or len(gemm_precs) != 2
                                   or any(p not in GEMM_PRECS for p in gemm_precs)):
        raise ValueError(f"gemm_precs must be None or two of {GEMM_PRECS} (A's GEMM, F's GEMM), got {gemm_precs!r}")
    for name, v in (("block_t", block_t), ("block", block), ("block_r", block_r)):
        check_block(name, v)
    check_int("num_splits", num_splits, 1, optional=True)
    check_int("num_warps", num_warps, 1, optional=True)
    if block_t is not None and block is not None and block < block_t:
        raise ValueError(f"block ({block}) must be a multiple of block_t ({block_t}): a block is whole tiles")


class LowRankPlan:
    """Shapes, tables and scratch of one call; `run(upto)` launches phases 1..upto (PHASES)."""

    def __init__(self, q, k_exact, v_exact, k_args, v_args, mid_len, periods, scale, out, block_t=None, block=None,
                 num_splits=None, num_warps=None, block_r=None, lens=None, gemm_precs=None, folds=None, dense=None):
        _check_options(q, block_t, block, num_splits, num_warps, block_r, gemm_precs, folds, dense)
        b, hq, lq, d = q.shape
        hkv, le = k_exact.shape[1], k_exact.shape[2]
        group = check_plan_inputs(q, hkv, out, "fourier_decode_attention_lowrank")
        self.q, self.k_exact, self.v_exact, self.lens = q, k_exact, v_exact, lens
        kc, vc = cache_tensors(k_args), cache_tensors(v_args)
        self._sides = (kc, vc)
        self.k_mid, self.v_mid, self.k_kept, self.v_kept = kc.mid, vc.mid, kc.kept, vc.kept
        self.k_cos, self.k_sin, self.k_sc, self.k_sh = kc.cos, kc.sin, kc.scale, kc.shift
        self.v_cos, self.v_sin, self.v_sc, self.v_sh = vc.cos, vc.sin, vc.scale, vc.shift
        self.ck, self.cv = kc.compressed, vc.compressed
        self.k_comp, self.v_comp = kc.comp, vc.comp
        dev = q.device
        heads = torch.arange(hkv + 1, device=dev) * d
        self.k_start = torch.searchsorted(self.k_kept, heads).to(torch.int32)
        self.v_start = torch.searchsorted(self.v_kept, heads).to(torch.int32)
        v_starts = self.v_start.tolist()
        self.b, self.hq, self.lq, self.d, self.hkv, self.le, self.group = b, hq, lq, d, hkv, le, group
        self.periods, self.t_max, self.mid_len = periods, max(periods), mid_len
        self.sm_scale = float(scale) if scale is not None else d ** -0.5
        gpu = q.is_cuda
        # 64 tokens per tile: best of the H100 sweep with the heads' windows (results/gpu/tune_lowrank-2026-12-06-
        # H100-958cefc-full.json), us with 32 / 64 at 4 warps: 8 x 32k 187.0 / 186.4, 1 x 128k 124.3 / 122.2,
        # 1 x 32k 92.2 / 83.5
        self.block_t = block_t or (64 if gpu else 16)
        self.nz = min(self.k_cos.shape[2], self.t_max // 2 + 1) if self.ck else 0
        self.nv = min(self.v_cos.shape[2], self.t_max // 2 + 1) if self.cv else 0
        sms = torch.cuda.get_device_properties(q.device).multi_processor_count if gpu else None
        self.sms = sms
        row_programs = b * triton.cdiv(hq * lq, block_r or 16)
        self.block = block or choose_block(periods, self.nz, self.nv, self.block_t, mid_len, MAX_RANK, row_programs,
                                           sms)
        self.block = max(self.block, self.block_t)
        self.n_blocks = max(1, triton.cdiv(mid_len, self.block))
        self.n_rows = hq * lq
        self.gl = group * lq
        self.block_m = max(16, triton.next_power_of_2(self.gl))
        self.block_d = max(16, triton.next_power_of_2(d))
        self.block_r = block_r or 16  # 16 rows per program: best of the H100 sweep (no spill; 32 rows spill)
        self.k_width, self.v_width = self.k_mid.shape[2], self.v_mid.shape[2]
        # each row block reads its KV heads' window of the kept lists (`heads_window`), 16-byte aligned when the
        # middles allow it
        self.align = kept_alignment(self.k_mid, self.v_mid)
        k_win = heads_window_width(self.k_start.tolist(), self.n_rows, self.gl, self.block_r, self.align)
        v_win = heads_window_width(v_starts, self.n_rows, self.gl, self.block_r, self.align)
        self.chunk = 64 if k_win > 32 else (32 if k_win > 16 else 16)
        self.kwp = max(self.chunk, triton.cdiv(k_win, self.chunk) * self.chunk)
        # the V window per program: whole up to 256 channels (128 in float32), else in slices of that many
        self.block_vc = min(max(16, triton.next_power_of_2(v_win)), 128 if q.dtype == torch.float32 else 256)
        self.v_slices = max(1, triton.cdiv(v_win, self.block_vc))
        self.block_vd = run_block(v_starts, 1)
        # Software pipelining of the stream's loads: each unrolled chunk of a wide kept K row is a stage's buffer,
        # so wide rows and float32 tiles pipeline at depth 1 (an all-kept float32 row asked 1.19 MB of shared memory
        # on an H100, which allows 227 KB; 84 KB at depth 1, built offline for sm_90).
        self.num_stages = 3 if self.kwp <= 512 and q.dtype != torch.float32 else 1
        # the stream's register cap (ptxas .maxnreg; None: the compiler's choice: at 8 x 32k in 16 bits with 64-token
        # tiles 255 registers and 106 KB of shared memory, 2 programs per SM; 168 with 2 stages, 57 KB, fits 3,
        # offline for sm_90 with Triton 3.6). GPU only: the interpreter takes no such option.
        self.maxnreg = None
        self.prec = "ieee" if q.dtype == torch.float32 else None
        self.cprec = "tf32x3" if gpu else "ieee"
        # the rank-r products: bfloat16 operands for 16-bit inputs (emulated in the interpreter), float32 otherwise
        sixteen = q.dtype != torch.float32
        self.bdt = tl.bfloat16 if sixteen and gpu else tl.float32
        self.emulate_bf16 = sixteen and not gpu
        self.basis_prec = None if self.bdt == tl.bfloat16 else self.cprec
        # ... except H = P @ VV for float16 inputs: float16 operands (`_middle_kernel`'s H16)
        self.h16 = q.dtype == torch.float16
        self.hdt = tl.float16 if self.h16 and gpu else self.bdt
        self.h_prec = None if self.hdt == tl.float16 else self.basis_prec
        sms = sms or 1
        row_blocks = triton.cdiv(self.n_rows, self.block_r)
        target = 2 * sms if gpu else 3  # two waves on a GPU; 3 splits per row block in the interpreter
        self.splits = num_splits or max(1, min(self.n_blocks, triton.cdiv(target, b * row_blocks)))
        self.blocks_per_split = triton.cdiv(self.n_blocks, self.splits)
        self.splits = triton.cdiv(self.n_blocks, self.blocks_per_split)
        # the stream's warps: STREAM_WARPS_FEW where its programs are fewer than the SMs (one program per SM keeps
        # more loads in flight with more warps), else 4
        few = gpu and b * row_blocks * self.splits * self.v_slices < sms
        self.num_warps = num_warps or (STREAM_WARPS_FEW if few else 4)
        self.esplits = ESPLITS if gpu else 2
        # The precision of A = Z W_K and of F = H W_V^H (GEMM_PRECS), and of the query spectrum's GEMM where it is one
        # (qs_gemm): bfloat16 (real GEMMs) or TF32 for 16-bit inputs, float32 otherwise. Attributes, which the tuning
        # sweeps.
        self.gemm_precs = tuple(gemm_precs) if gemm_precs else GEMM_PRECS_16 if sixteen else ("ieee", "ieee")
        self.qs_gemm_prec = "tf32" if sixteen else "ieee"
        # the GEMM path's U from one kernel (`_query_products_kernel`) instead of QC and two cuBLAS GEMMs; its
        # frequencies per program and warps
        self.qs_fused = fused_for("qs", gpu)
        self.qp_block_n, self.qp_warps = qp_block_for(b * hkv, self.nz, sms if gpu else None), QP_WARPS
        # ... and with it the sinks and window in the same launch (`_prologue_kernel`), and the stream's query rows
        self.qx_fused, self.qr_fused = fused_for("qx", gpu), fused_for("qr", gpu)
        self._tables(dev)
        # launch shapes of the small phases (attributes, swept by ci/tune_fourier_lowrank.py): frequencies per
        # query-spectrum program, blocks per merge program (BLOCK_B x PV = 512 H entries per row), the output's
        # frequency chunk and channels per program
        self.qs_block_n, self.merge_blocks = QS_BLOCK_N, max(1, 512 // self.pv)
        self.out_block_n, self.out_block_do = OUT_BLOCK_N, OUT_BLOCK_DO
        # the coefficient products of the query spectrum and of the output: their dots' precision (None: cprec,
        # 3xTF32 on a GPU; "ieee" is float32 FMA, at least as accurate) and warps per program
        self.qs_prec = self.out_prec = None
        self.qs_warps = self.out_warps = 4
        # v_gemm's channel sums from one kernel (`_v_sums_kernel`) instead of two cuBLAS GEMMs; its channels and
        # frequencies per program, warps; the most compressed V channels of any KV head
        self.v_fused = fused_for("v", gpu)
        self.vs_block_c, self.vs_block_n, self.vs_warps = 32, 64, 4
        self.cv_head = max(d - (e - s) for s, e in zip(v_starts, v_starts[1:]))
        # frequencies per program of `_v_products_kernel` (0: the output kernel sums them all itself)
        self.v_chunk = v_chunk_for(b * hkv * triton.cdiv(d, self.out_block_do), sms if gpu else None)
        self.po = None
        f32 = dict(dtype=torch.float32, device=dev)
        rows = self.n_rows
        self.h = torch.zeros(b, rows, self.n_blocks, self.pv, **f32)  # blocks past a short middle stay 0
        self._u16 = self._h16 = None  # bfloat16 U and H for the bf16 GEMMs on a GPU (`_u_target`, `_h_target`)
        self.hm = torch.full((b, rows, self.n_blocks), -1.0e30, **f32)
        self.qbd = torch.zeros(b, rows, self.kwp, dtype=q.dtype, device=dev)
        parts_m = b * hkv * self.splits
        self.maxm = torch.full((parts_m, self.block_m), -1.0e30, **f32)
        self.summ = torch.zeros(parts_m, self.block_m, **f32)
        self.accm = torch.zeros(parts_m, self.block_m, self.block_vd, **f32)
        self.f = torch.zeros(b, rows, max(self.nv, 1), 2, **f32)
        self._a_t = A_T and len(self.groups) == 1  # the GEMM path's A transposed (`a_t`)
        self._folds, self._fold_cache, self._pf = False, None, None  # the coefficient folds (`folds`)
        self._fold_z = None  # z beside FoldK by dimension (`fold_tensors`)
        self._out_tables = None  # the fold path's output slot tables (`output_tables`), made on first use
        self._fold_precs = None  # their precisions, when set (`fold_precs`)
        # the fold path's launch shapes (attributes, swept by ci/tune_fourier_lowrank.py): columns of A per
        # `fold_products` program (None: `qp_block_for`), H's columns per merge program, and the merge's warps
        self.fold_block_n, self.fold_merge_cols, self.merge_warps = None, 128, 4
        self.qs_gemm = qs_gemm_for(b, gpu, self.k_cos.dtype)
        self._planes_t = PLANES_T and len(self.groups) == 1  # v_gemm's planes frequency-major (`planes_t`)
        self._vo_fused = VO_FUSED  # the V sums in the output's launch (`vo_fused`)
        self.v_gemm = v_gemm_for(b, gpu, self.v_cos.dtype)
        self.m, self.l, self.mid = (torch.zeros(b, rows, **f32) for _ in range(3))
        self.result = out if out is not None else torch.empty_like(q)
        self.lens_arg = lens if lens is not None else self.k_start
        # programmatic dependent launch of the four Triton kernels (PDL): sm_90 and later only (an attribute, which
        # the tuning sweeps)
        self.pdl = PDL and gpu and torch.cuda.get_device_capability(dev)[0] >= 9
        self.pdl_trigger = PDL_TRIGGERS[0]
        # the short-middle path (`dense`, optimized/lowrank_dense_rows.py): the rebuilt rows where the folds would be
        # no smaller than them
        kept_plan = FOLDS and b <= FOLDS_MAX_BATCH
        self._dense_rows = None
        self.dense = dense_by_default(gpu, folds, kept_plan, self.block, self.pk, self.pv) if dense is None else dense
        self.folds = False if self.dense else (kept_plan if folds is None else folds)

    @property
    def qs_gemm(self) -> bool:
        """Whether the query spectrum is GEMMs over a block-diagonal query (`_compressed_rows_kernel`, then cuBLAS)
        instead of `query_spectrum_kernel`; setting it makes the scratch of that path."""
        return self._qs_gemm

    @qs_gemm.setter
    def qs_gemm(self, on: bool) -> None:
        if on and self.k_cos.dtype != torch.float32:
            raise ValueError(f"qs_gemm needs float32 K coefficients (k_cos, k_sin), got {self.k_cos.dtype}")
        self._qs_gemm = bool(on)
        b, rows, n, f32 = self.b, self.n_rows, max(self.nz, 1), dict(dtype=torch.float32, device=self.q.device)
        self._alloc_a()
        if on:
            self.qc = torch.zeros(b, rows, max(self.ck, 1), **f32)  # zero off each row's own head, set once here
            self.u = torch.zeros(2, b, rows, n, **f32)
            self.z0 = torch.zeros(b, rows, **f32)
            self.z = None
        else:
            self.z = torch.zeros(b, rows, n, 2, **f32)
            self.qc = self.u = self.z0 = None

    @property
    def a_split(self) -> bool:
        """Whether A comes as the two products P_c, P_s of the GEMM path (`_middle_kernel`'s A_SPLIT); with the folds
        the prologue stores A itself."""
        return self._qs_gemm and not self.folds

    @property
    def a_t(self) -> bool:
        """Whether the GEMM path's A is stored transposed, [blocks x r, 2 x B x rows] (cuBLAS then computes
        W_K^T [U_c; U_s]^T and picks its tiles for that shape); one period only. `a` stays a [2, B, rows, blocks, r]
        view either way, and the stream reads it through its strides."""
        return self._a_t and self.a_split

    @a_t.setter
    def a_t(self, on: bool) -> None:
        self._a_t = bool(on) and len(self.groups) == 1
        self._alloc_a()

    def _alloc_a(self) -> None:
        f32 = dict(dtype=torch.float32, device=self.q.device)
        b, rows, blocks, pk = self.b, self.n_rows, self.n_blocks, self.pk
        self._a_key = (self.a_split, self.a_t)
        if self.a_t:
            self._a_buf = torch.zeros(blocks * pk, 2 * b * rows, **f32)
            self.a = self._a_buf.view(blocks, pk, 2, b, rows).permute(2, 3, 4, 0, 1)
            return
        halves = (2,) if self.a_split else ()
        self.a = torch.zeros(*halves, b, rows, blocks, pk, **f32)

    @property
    def dense(self) -> bool:
        """Whether a step is one flash-decoding pass over the middle's rows rebuilt once per cache (`dense_rows`)."""
        return self._dense_rows is not None

    @dense.setter
    def dense(self, on: bool) -> None:
        if not on:
            self._dense_rows = None
        elif self._dense_rows is None:  # made now, outside any graph capture, like the folds
            lens = self.lens.tolist() if self.lens is not None else [[self.le, self.mid_len, self.periods[0]]] * self.b
            exact, mid, periods = (list(col) for col in zip(*lens))
            self._dense_rows = dense_rows(*self._sides, self.k_exact, self.v_exact, exact, mid, periods)

    @property
    def folds(self) -> bool:
        """Whether the step reads the coefficient folds (FOLDS): only with the prologue (`exact_in_phase_1`) and
        the V sums in the output's launch (`vo_fused`); setting it lays A out for the path."""
        return self._folds and self.exact_in_phase_1 and self.vo_fused

    @folds.setter
    def folds(self, on: bool) -> None:
        self._folds = bool(on)
        self._alloc_a()
        if self.folds:  # made now, outside any graph capture (a later path change makes them on first use)
            self.fold_tensors()

    def fold_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(FoldK by dimension [B, Hkv x D, blocks x PK], FoldV [B, C_v, blocks x PV]) in the GEMMs' precisions
        (`stored_fold`), and z [B, Hkv x D] (`_fold_z`, float32) beside them, made once: they depend on the cache and
        the block, not on the query (`k_fold_dims`)."""
        if self._fold_cache is None:
            opts = dict(dtype=torch.float64, device=self.q.device)
            fk = torch.zeros(self.b, max(self.ck, 1), self.n_blocks * self.pk, **opts)
            fv = torch.zeros(self.b, max(self.cv, 1), self.n_blocks * self.pv, **opts)
            for (_, _, _, idx, w_k, _), table in zip(self.groups, self.v_tables):
                seqs = idx if idx is not None else torch.arange(self.b, device=self.q.device)
                if self.ck:
                    fk[seqs] = k_fold(self.k_cos[seqs], self.k_sin[seqs], w_k)
                if self.cv:
                    fv[seqs] = v_fold(self.v_cos[seqs], self.v_sin[seqs], table)
            gpu = self.q.is_cuda
            periods = torch.tensor(self.periods if len(self.periods) == self.b else self.periods * self.b,
                                   device=self.q.device)
            fk, z = k_fold_dims(fk[:, :self.ck], self.k_comp, self.k_sc, self.k_sh, self.k_cos[:, :, 0], periods,
                                self.hkv * self.d)
            self._fold_z = z.float().contiguous()
            self._fold_cache = (stored_fold(fk, self.fold_precs[0], gpu), stored_fold(fv, self.fold_precs[1], gpu))
        return self._fold_cache

    @property
    def fold_precs(self) -> tuple[str, str]:
        """The precisions of the products with FoldK and FoldV (FOLD_PRECS): the GEMMs' own (bfloat16 for 16-bit
        inputs), except FoldV in TF32 for float16 inputs. A fold is a sum over frequencies: on an H100 both folds in
        bfloat16 failed the float16 tolerances (1.48 of 0.99 uniform, 1.03 of 0.987 varlen) and passed the bfloat16
        ones; FoldK alone in bfloat16 passed both and saved 2.6-3.3 us at batch 1, FoldV too another 2-3.5 us
        (docs/fourier-attention.md, thirteenth pass). Setting it (the sweep's `fold_precs`) makes the folds again."""
        if self._fold_precs is not None:
            return self._fold_precs
        v16 = self.gemm_precs[1] == "bf16" and self.q.dtype != torch.bfloat16  # FoldV in bfloat16 for bfloat16 only
        return self.gemm_precs[0], "tf32" if v16 else self.gemm_precs[1]

    @fold_precs.setter
    def fold_precs(self, precs: tuple[str, str]) -> None:
        if not isinstance(precs, (tuple, list)) or len(precs) != 2 or any(p not in FOLD_PRECS for p in precs):
            raise ValueError(f"fold_precs must be two of {FOLD_PRECS} (FoldK's, FoldV's), got {precs!r}")
        self._fold_precs, self._fold_cache = tuple(precs), None
        if self.folds:
            self.fold_tensors()

    @property
    def fold_merge_blocks(self) -> int:
        """Blocks per merge program with the folds: `fold_merge_cols` (128) of H's columns each (BLOCK_B x PV), so
        the sum over H's columns spreads over many programs."""
        return max(1, self.fold_merge_cols // self.pv)

    @property
    def merge_parts(self) -> int:
        """Merge programs per KV head: the blocks taken `fold_merge_blocks` at a time with the folds (so as many
        partial sums per head for the output), else `merge_blocks` at a time."""
        return triton.cdiv(self.n_blocks, self.fold_merge_blocks if self.folds else self.merge_blocks)

    def _fold_partials(self, parts: int) -> torch.Tensor:
        """The merge's partial sums of the compressed V channels, [B x Hkv, parts, BLOCK_M, BLOCK_CV] float32."""
        width = max(16, triton.next_power_of_2(max(self.cv_head, 1)))
        shape = (self.b * self.hkv, parts, self.block_m, width)
        if self._pf is None or self._pf.shape != shape:
            self._pf = torch.zeros(shape, dtype=torch.float32, device=self.q.device)
        return self._pf

    def _fold_consts(self, prec: str) -> dict:
        """The fold products' constexprs for GEMM precision `prec`: bfloat16 or TF32 operands on a GPU, their
        interpreter stand-ins (`fold_operands`), or float32 FMA."""
        gpu = self.q.is_cuda
        if prec == "bf16":
            return dict(FDT=tl.bfloat16 if gpu else tl.float32, F_PREC=None if gpu else "ieee", F_EMUL_BF16=not gpu)
        return dict(FDT=tl.float32, F_PREC="tf32" if prec == "tf32" and gpu else "ieee",
                    F_EMUL_TF32=prec == "tf32" and not gpu)

    @property
    def esplits(self) -> int:
        """Programs per KV head of `_exact_kernel` (the sinks and window split by tiles); setting it (at most one
        per tile) makes their partial statistics' scratch."""
        return self._esplits

    @esplits.setter
    def esplits(self, splits: int) -> None:
        self._esplits = max(1, min(triton.cdiv(self.le, self.block_t), int(splits)))
        parts, f32 = self.b * self.hkv * self._esplits, dict(dtype=torch.float32, device=self.q.device)
        self.maxe = torch.full((parts, self.block_m), -1.0e30, **f32)
        self.sume = torch.zeros(parts, self.block_m, **f32)
        self.acce = torch.zeros(parts, self.block_m, self.block_d, **f32)

    @property
    def planes_t(self) -> bool:
        """Whether v_gemm's planes are stored frequency-major, [2 width, B * rows] (cuBLAS then sees the transposed
        product, table^T H^T, and picks its tiles for it); one period only. `planes` stays a [B, rows, 2 width]
        view either way."""
        return self._planes_t and self._v_gemm

    @planes_t.setter
    def planes_t(self, on: bool) -> None:
        self._planes_t = bool(on) and len(self.groups) == 1
        self.v_gemm = self._v_gemm

    @property
    def vo_fused(self) -> bool:
        """Whether v_gemm's channel sums run in the output's launch (`_output_kernel`'s VO programs) instead of
        `_v_sums_kernel` (v_fused) or cuBLAS."""
        return self._vo_fused and self._v_gemm

    @vo_fused.setter
    def vo_fused(self, on: bool) -> None:
        self._vo_fused = bool(on)

    @property
    def v_gemm(self) -> bool:
        """Whether the compressed V channels' sums over frequencies are GEMMs in the spectrum phase (`planes_table`,
        `_v_sums`) instead of the output kernel's loop; setting it makes that path's tables and scratch."""
        return self._v_gemm

    @v_gemm.setter
    def v_gemm(self, on: bool) -> None:
        if on and self.cv and self.v_cos.dtype != torch.float32:
            raise ValueError(f"v_gemm needs float32 V coefficients (v_cos, v_sin), got {self.v_cos.dtype}")
        self._v_gemm = bool(on) and self.cv > 0
        self.planes = self.r = None
        self._tables16 = {}  # the planes tables are made again below
        self.v_tables = []
        if self._v_gemm:
            width, dev, tokens = max(self.nv, 1), self.q.device, self.n_blocks * self.block
            self.v_tables = [planes_table(p, nv, tokens, self.block, self.pv, width, str(dev))
                             for p, _, nv, _, _, _ in self.groups]
            if self._planes_t:
                self.planes = torch.zeros(2 * width, self.b, self.n_rows, dtype=torch.float32,
                                          device=dev).permute(1, 2, 0)
            else:
                self.planes = torch.zeros(self.b, self.n_rows, 2 * width, dtype=torch.float32, device=dev)
            self.r = torch.zeros(self.b, self.n_rows, self.cv, dtype=torch.float32, device=dev)

    def _split_tiles(self, cap: int) -> dict:
        """A merging kernel's tiles of splits, at most `cap` a tile: (BLOCK_S, STEPS) for the exact and the middle
        splits (`tile_steps`)."""
        block_e, steps_e = tile_steps(self.esplits, cap)
        block_m, steps_m = tile_steps(self.splits, cap)
        return dict(BLOCK_SE=block_e, STEPS_E=steps_e, BLOCK_SM=block_m, STEPS_M=steps_m)

    @property
    def _pdl_kw(self) -> dict:
        """The launch arguments of programmatic dependent launch: the kernel's PDL and the launcher's launch_pdl."""
        return {"PDL": True, "PDL_EARLY": self.pdl_trigger == "start", "launch_pdl": True} if self.pdl else {}

    @property
    def pdl_trigger(self) -> str:
        """Where a launch lets the next one start under `pdl` (PDL_TRIGGERS): "start", right after its wait, or
        "exit", when its programs end."""
        return self._pdl_trigger

    @pdl_trigger.setter
    def pdl_trigger(self, where: str) -> None:
        if where not in PDL_TRIGGERS:
            raise ValueError(f"pdl_trigger must be one of {PDL_TRIGGERS}, got {where!r}")
        self._pdl_trigger = where

    def _u_target(self) -> torch.Tensor:
        """Where `_query_products_kernel` stores U: a bfloat16 buffer on a GPU when A's GEMM takes "bf16" (the kernel
        rounds on its store, so no copy kernel runs before the GEMM), else U itself (the interpreter has no bfloat16
        stores; `_product_bf16` rounds there)."""
        if self.gemm_precs[0] == "bf16" and self.q.is_cuda and self._qs_gemm and self.qs_fused:
            if self._u16 is None or self._u16.shape != self.u.shape:
                self._u16 = torch.zeros_like(self.u, dtype=torch.bfloat16)
            return self._u16
        return self.u

    def _h_target(self) -> torch.Tensor:
        """Where `_merge_kernel` stores the rescaled H: a bfloat16 buffer on a GPU when v_gemm's planes take "bf16"
        (as `_u_target`), else H itself (rescaled in place)."""
        if self.gemm_precs[1] == "bf16" and self.q.is_cuda and self._v_gemm:
            if self._h16 is None:
                self._h16 = torch.zeros_like(self.h, dtype=torch.bfloat16)
            return self._h16
        return self.h

    def _gemm_table(self, key: tuple, t: torch.Tensor, prec: str) -> torch.Tensor:
        """A GEMM's table operand t, or under "bf16" its bfloat16 copy, cast once per plan (the tables are fixed)."""
        if prec != "bf16" or t.is_complex():
            return t
        if key not in self._tables16:
            self._tables16[key] = t.to(torch.bfloat16)
        return self._tables16[key]

    def _tables(self, dev) -> None:
        """W_K, W_V per distinct period and the per-sequence block bases VK, VV (stride 0 when all share one)."""
        tokens = self.n_blocks * self.block
        distinct = sorted(set(self.periods))
        rank_k = max(block_rank(p, min(self.nz, p // 2 + 1), self.block) for p in distinct) if self.nz else 0
        rank_v = max(block_rank(p, min(self.nv, p // 2 + 1), self.block) for p in distinct) if self.nv else 0
        self.pk, self.pv = padded_width(rank_k), padded_width(rank_v)
        self.groups = []  # (period, sequence index or None, W_K, W_V)
        vk, vv = {}, {}
        for p in distinct:
            nz, nv = min(self.nz, p // 2 + 1), min(self.nv, p // 2 + 1)
            idx = None if len(distinct) == 1 else torch.tensor(
                [i for i, t in enumerate(self.periods) if t == p], device=dev)
            w_k, w_vh, vk[p], vv[p] = period_tables(p, nz, nv, tokens, self.block, self.pk, self.pv, str(dev))
            self.groups.append((p, nz, nv, idx, w_k, w_vh))
        if len(distinct) == 1:
            self.vk, self.vv = vk[distinct[0]], vv[distinct[0]]
        else:
            self.vk = torch.stack([vk[p] for p in self.periods])
            self.vv = torch.stack([vv[p] for p in self.periods])
        if self.bdt == tl.bfloat16 or self.emulate_bf16:  # 16-bit tables (VV float16 for float16 inputs: H16),
            def stored(t, half):  # held as float32 values by the interpreter
                return t.to(half) if self.bdt == tl.bfloat16 else t.to(half).to(torch.float32)
            self.vk = stored(self.vk, torch.bfloat16)
            self.vv = stored(self.vv, torch.float16 if self.h16 else torch.bfloat16)
        self.vk, self.vv = self.vk.to(dev), self.vv.to(dev)
        self.svk, self.svv = (0, 0) if len(distinct) == 1 else (self.vk.stride(0), self.vv.stride(0))

    def run(self, upto: int = len(PHASES)) -> torch.Tensor:
        """Phases 1..upto (PHASES)."""
        q, varlen = self.q, self.lens is not None
        if self.dense:  # all of it in the stream's phase
            if upto >= 3:
                k_rows, v_rows, seq_lens = self._dense_rows
                decode_attention_triton(q, k_rows, v_rows, seq_lens, self.sm_scale, self.result, validate=False)
            return self.result
        dt = TL_DTYPE[q.dtype]
        if self._a_key != (self.a_split, self.a_t):  # a path setting changed after the plan was made
            self._alloc_a()
        if upto >= 1 and self.ck:
            self._query_spectrum(q, varlen)
        if upto >= 2 and self.ck and not self.folds:
            a_prec = self.gemm_precs[0]
            for g, (_, nz, _, idx, w_k, _) in enumerate(self.groups):
                if self.a_t:  # [P_c; P_s]^T = W_K^T [U_c; U_s]^T, [blocks x r, 2 x B x rows]
                    u = self._u_target().view(-1, self.u.shape[-1])[:, :nz]
                    w = self._gemm_table(("w_k^T", g), torch.view_as_real(w_k).flatten(1).t(), a_prec)
                    gemm_product(w, u.t(), self._a_buf, None, a_prec)
                elif self._qs_gemm:  # [P_c; P_s] = [U_c; U_s] W_K, W_K read once as its real view
                    w = self._gemm_table(("w_k", g), torch.view_as_real(w_k).flatten(1), a_prec)
                    gemm_product(self._u_target()[..., :nz], w, self.a.view(2, self.b, self.n_rows, -1), idx,
                                 a_prec, dim=1)
                else:
                    gemm_product(torch.view_as_complex(self.z)[:, :, :nz], w_k,
                                 torch.view_as_complex(self.a.view(self.b, self.n_rows, -1, 2)), idx, a_prec)
        if upto >= 3:
            self._stream(q, dt, varlen)
            if not self.exact_in_phase_1:
                self._exact(q, dt, varlen)
        if upto >= 4:
            self._spectrum()
        if upto >= 5:
            self._output(varlen)
        return self.result

    @property
    def exact_in_phase_1(self) -> bool:
        """Whether the sinks and window run in the query spectrum's launch (`_prologue_kernel`): with qx_fused where
        the query spectrum is `_query_products_kernel`."""
        return self.qx_fused and self._qs_gemm and self.qs_fused and self.ck > 0

    @property
    def rows_in_phase_1(self) -> bool:
        """Whether the stream's query rows QBD are laid out in that launch too (qr_fused)."""
        return self.qr_fused and self.exact_in_phase_1

    def _query_spectrum(self, q, varlen) -> None:
        """Z (`query_spectrum_kernel`), or with qs_gemm: the block-diagonal query rows QC and Re Z_0, then
        U_c = QC @ K_cos and U_s = QC @ K_sin per sequence (cuBLAS, in qs_gemm_prec)."""
        common = dict(G=self.group, LQ=self.lq, D=self.d, VARLEN=varlen, BLOCK_M=self.block_m, BLOCK_D=self.block_d)
        if not self._qs_gemm:
            block_n = self.qs_block_n
            query_spectrum_kernel[(self.b * self.hkv, triton.cdiv(self.nz, block_n))](
                q, self.k_kept, self.k_start, self.k_cos, self.k_sin, self.k_sc, self.k_sh, self.z, self.lens_arg,
                *q.stride(), self.z.stride(0), self.z.stride(1), self.hkv, self.ck, self.k_cos.shape[2], self.nz,
                self.t_max, **common, BLOCK_N=block_n, CPREC=self.qs_prec or self.cprec, num_warps=self.qs_warps)
            return
        if self.qs_fused:
            block_n, gpu = self.qp_block_n, q.is_cuda
            tf32 = self.qs_gemm_prec == "tf32"
            u, tiles = self._u_target(), triton.cdiv(self.nz, block_n)
            fold = dict(FOLDK=None, sfkb=0, sfkc=0, n_cols=0)
            if self.folds:  # A itself, [B, rows, blocks x PK], from the folds
                fk, u, zk = self.fold_tensors()[0], self.a.view(self.b, self.n_rows, -1), self._fold_z
                block_n = self.fold_block_n or qp_block_for(self.b * self.hkv, u.shape[2], self.sms)
                tiles = triton.cdiv(u.shape[2], block_n)
                fold = dict(FOLDK=fk, ZK=zk, sfkb=fk.stride(0), sfkc=fk.stride(1), szkb=zk.stride(0),
                            n_cols=u.shape[2], FOLD=True, **self._fold_consts(self.fold_precs[0]))
            args = (q, self.k_comp, self.k_start, self.k_cos, self.k_sin, self.k_sc, self.k_sh, u, self.z0)
            u_strides = (u.stride(0), u.stride(1), 0) if self.folds else (u.stride(1), u.stride(2), u.stride(0))
            consts = dict(G=self.group, LQ=self.lq, D=self.d, VARLEN=varlen, BLOCK_M=self.block_m,
                          DC=16 if self.d <= 16 else 32, BLOCK_N=block_n, EMUL_TF32=tf32 and not gpu,
                          num_warps=self.qp_warps)
            qp_prec = "tf32" if tf32 and gpu else "ieee"
            if not self.exact_in_phase_1:
                _query_products_kernel[(self.b * self.hkv, tiles)](
                    *args, self.lens_arg, *q.stride(), *u_strides, self.hkv, self.ck, self.k_cos.shape[2], self.nz,
                    self.n_rows, self.t_max, PREC=qp_prec, **consts)
                return
            ke, ve, qp_programs = self.k_exact, self.v_exact, self.b * self.hkv * tiles
            ex_programs = self.b * self.hkv * self.esplits
            row_blocks, chunks = triton.cdiv(self.n_rows, self.block_r), self.kwp // self.chunk
            rows = self.b * row_blocks * chunks if self.rows_in_phase_1 else 0
            _prologue_kernel[(qp_programs + ex_programs + rows,)](
                *args, ke, ve, self.maxe, self.sume, self.acce, self.k_kept, self.qbd, self.lens_arg, *q.stride(),
                *u_strides, *ke.stride(), *ve.stride(), self.hkv, self.ck,
                self.k_cos.shape[2], self.nz, self.n_rows, self.t_max, self.le, self.sm_scale, self.k_width,
                qp_programs, tiles, ex_programs, self.esplits, row_blocks, chunks, QP_PREC=qp_prec,
                DT=TL_DTYPE[q.dtype], E_PREC=self.prec, BLOCK_D=self.block_d, BLOCK_T=self.block_t, KWP=self.kwp,
                BLOCK_R=self.block_r, CHUNK=self.chunk, ALIGN=self.align, ROWS=rows > 0, **consts, **self._pdl_kw,
                **fold)
            return
        _compressed_rows_kernel[(self.b * self.hkv,)](
            q, self.k_kept, self.k_start, self.k_cos, self.k_sc, self.k_sh, self.qc, self.z0, self.lens_arg,
            *q.stride(), self.hkv, self.ck, self.k_cos.shape[2], self.n_rows, self.t_max, **common)
        for half, coefs in enumerate((self.k_cos, self.k_sin)):
            gemm_product(self.qc, coefs[:, :, :self.nz], self.u[half], None, self.qs_gemm_prec)

    def _stream(self, q, dt, varlen) -> None:
        row_blocks = triton.cdiv(self.n_rows, self.block_r)
        if not self.rows_in_phase_1:
            _query_rows_kernel[(self.b, row_blocks, self.kwp // self.chunk)](
                q, self.k_kept, self.k_start, self.qbd, *q.stride(), self.n_rows, self.k_width, G=self.group,
                LQ=self.lq, D=self.d, KWP=self.kwp, BLOCK_R=self.block_r, CHUNK=self.chunk, ALIGN=self.align)
        km, vm = self.k_mid, self.v_mid
        _middle_kernel[(self.b * row_blocks, self.splits, self.v_slices)](
            self.qbd, km, vm, self.z0 if self._qs_gemm else self.z, self.a, self.vk, self.vv, self.k_start,
            self.v_start, self.h, self.hm, self.maxm, self.summ, self.accm, self.lens_arg, km.stride(0), km.stride(1),
            vm.stride(0), vm.stride(1), 1 if self._qs_gemm else self.z.stride(1), self.svk, self.svv,
            self.mid_len, self.k_width, self.v_width, self.n_rows, self.n_blocks, self.blocks_per_split,
            self.sm_scale, self.a.stride(0) if self.a_split else 0, *self.a.stride()[-3:], GL=self.gl,
            VARLEN=varlen, BLOCK_R=self.block_r, BLOCK_M=self.block_m, KWP=self.kwp, CHUNK=self.chunk,
            BLOCK_VC=self.block_vc, BLOCK_VD=self.block_vd, BLOCK_T=self.block_t, BB=self.block, PK=self.pk,
            PV=self.pv, HAS_S=self.ck > 0, HAS_H=self.cv > 0, DT=dt, BDT=self.bdt, PREC=self.prec,
            CPREC=self.basis_prec, EMUL_BF16=self.emulate_bf16, A_SPLIT=self.a_split, ALIGN=self.align,
            H16=self.h16, HDT=self.hdt, HPREC=self.h_prec,
            num_warps=self.num_warps, num_stages=self.num_stages, **self._pdl_kw,
            **({"maxnreg": self.maxnreg} if self.maxnreg and q.is_cuda else {}))

    def _exact(self, q, dt, varlen) -> None:
        ke, ve = self.k_exact, self.v_exact
        _exact_kernel[(self.b * self.hkv, self.esplits)](
            q, ke, ve, self.maxe, self.sume, self.acce, self.lens_arg, *q.stride(), *ke.stride(), *ve.stride(),
            self.hkv, self.le, self.sm_scale, G=self.group, LQ=self.lq, D=self.d, DT=dt, PREC=self.prec,
            VARLEN=varlen, BLOCK_M=self.block_m, BLOCK_D=self.block_d, BLOCK_T=self.block_t)

    def _spectrum(self) -> None:
        """`_merge_kernel` (the statistics m, l, the middle's mass, H rescaled to them), then F = H @ W_V^H (cuBLAS;
        its n = 0 bin stays 0, the output adds the mass exactly)."""
        merge_blocks = self.fold_merge_blocks if self.folds else self.merge_blocks
        chunks = self.merge_parts if self.cv else 1
        fold = {}
        if self.folds and self.cv:  # the merge takes the V folds' partial sums (`fold_partials`)
            fv, pf = self.fold_tensors()[1], self._fold_partials(chunks)
            fold = dict(FOLDV=fv, VSTART=self.v_start, PF=pf, sfvb=fv.stride(0), sfvc=fv.stride(1), Hkv=self.hkv,
                        D=self.d, FOLD=True, BLOCK_CV=pf.shape[3], **self._fold_consts(self.fold_precs[1]))
        ho = self.h if self.folds else self._h_target()  # with the folds the merge stores no rescaled H
        _merge_kernel[(self.b * self.hkv, chunks)](
            self.maxe, self.sume, self.maxm, self.summ, self.h, self.hm, self.m, self.l, self.mid, ho,
            self.n_blocks, self.esplits, self.splits, GL=self.gl, BLOCK_M=self.block_m,
            **self._split_tiles(MERGE_TILE_SPLITS), BLOCK_B=merge_blocks,
            PV=self.pv, HAS_H=self.cv > 0, num_warps=self.merge_warps, **self._pdl_kw, **fold)
        if not self.cv or self.folds:  # the folds: the output adds the merge's partial sums
            return
        if self._v_gemm:
            h, prec = self._h_target().view(self.b, self.n_rows, -1), self.gemm_precs[1]
            if self._planes_t:  # planes^T = table^T H^T, [2 width, B * rows]
                gemm_product(self._gemm_table(("planes^T", 0), self.v_tables[0].t(), prec),
                             h.view(self.b * self.n_rows, -1).t(),
                             self.planes.permute(2, 0, 1).view(self.planes.shape[2], -1), None, prec)
            else:
                for g, ((_, _, _, idx, _, _), table) in enumerate(zip(self.groups, self.v_tables)):
                    gemm_product(h, self._gemm_table(("planes", g), table, prec), self.planes, idx, prec)
            self._channel_sums()
            return
        for _, _, nv, idx, _, w_vh in self.groups:
            gemm_product(torch.view_as_complex(self.h.view(self.b, self.n_rows, -1, 2)), w_vh,
                         torch.view_as_complex(self.f)[:, :, :nv], idx, self.gemm_precs[1])

    def _channel_sums(self) -> None:
        """v_gemm's channel sums R from the planes: `_v_sums_kernel` (v_fused) or cuBLAS; with vo_fused the output's
        launch takes them."""
        if self.vo_fused:
            return
        if self.v_fused:
            self._v_sums_fused()
        else:
            _v_sums(self.planes, self.v_cos, self.v_sin, self.r, self.gemm_precs[1])

    def _v_sums_fused(self) -> None:
        """`_v_sums` as `_v_sums_kernel`: each KV head's compressed V rows read once, in gemm_precs[1]."""
        tf32, gpu, block_c = self.gemm_precs[1] in ("tf32", "bf16"), self.q.is_cuda, self.vs_block_c
        planes, r = self.planes, self.r
        _v_sums_kernel[(self.b * self.hkv, triton.cdiv(self.cv_head, block_c))](
            planes, self.v_start, self.v_cos, self.v_sin, r, planes.stride(0), planes.stride(1), planes.stride(2),
            r.stride(0), r.stride(1), self.hkv, self.cv, self.v_cos.shape[2], planes.shape[2] // 2, G=self.group,
            LQ=self.lq, D=self.d, BLOCK_M=self.block_m, BLOCK_C=block_c, BLOCK_N=self.vs_block_n,
            PREC="tf32" if tf32 and gpu else "ieee", EMUL_TF32=tf32 and not gpu, num_warps=self.vs_warps)

    def _output(self, varlen) -> None:
        if self.folds:
            self._fold_output(varlen)
            return
        res, block_do = self.result, self.out_block_do
        nv_coef = self.v_cos.shape[2] if self.cv else 0
        grid = (self.b * self.hkv, triton.cdiv(self.d, block_do))
        chunks = triton.cdiv(self.nv, self.v_chunk) if self.v_chunk and self.cv and not self._v_gemm else 0
        f = self.r if self._v_gemm else self.f
        if chunks:
            if self.po is None or self.po.shape[1] != chunks:
                self.po = torch.zeros(self.b * self.hkv, chunks, self.block_m, self.block_d, dtype=torch.float32,
                                      device=res.device)
            _v_products_kernel[grid + (chunks,)](
                self.f, self.v_kept, self.v_start, self.v_cos, self.v_sin, self.po, self.lens_arg, self.f.stride(0),
                self.f.stride(1), self.hkv, self.cv, nv_coef, self.t_max, G=self.group, LQ=self.lq, D=self.d,
                VARLEN=varlen, BLOCK_M=self.block_m, BLOCK_D=self.block_d, BLOCK_DO=block_do, BLOCK_N=self.out_block_n,
                FCH=self.v_chunk, CPREC=self.out_prec or self.cprec, num_warps=self.out_warps)
        vo, planes = self.vo_fused, self.planes if self.vo_fused else f
        n_out = grid[1]
        if vo:
            grid = (grid[0], n_out + triton.cdiv(self.cv_head, self.vs_block_c))
        tf32 = self.gemm_precs[1] in ("tf32", "bf16")  # the V sums take TF32 under bf16
        _output_kernel[grid](
            self.acce, self.maxe, self.accm, self.maxm, self.m, self.l, self.mid, self.v_kept, self.v_start, f,
            self.po if chunks else f, self.v_cos, self.v_sin, self.v_sc, self.v_sh, res, self.lens_arg,
            f.stride(0), f.stride(1), *res.stride(), self.hkv, self.cv, nv_coef, self.t_max, self.esplits,
            self.splits, chunks, planes, self.v_comp, *(planes.stride() if vo else (0, 0, 0)),
            planes.shape[2] // 2 if vo else 0, n_out, VO=vo, BLOCK_C=self.vs_block_c, BLOCK_NS=self.vs_block_n,
            VPREC="tf32" if tf32 and res.is_cuda else "ieee", EMUL_TF32=tf32 and not res.is_cuda, G=self.group,
            LQ=self.lq, D=self.d, VARLEN=varlen, BLOCK_M=self.block_m,
            BLOCK_D=self.block_d, BLOCK_DO=block_do, BLOCK_N=self.out_block_n, BLOCK_VD=self.block_vd,
            **self._split_tiles(OUT_KEPT_TILE_SPLITS), CPREC=self.out_prec or self.cprec,
            num_warps=self.out_warps,
            PARTS=min(8, triton.next_power_of_2(chunks)) if chunks else 0, V_GEMM=self._v_gemm, **self._pdl_kw)


    def _fold_output(self, varlen) -> None:
        """The output on the fold path (`fold_output_kernel`): its slot tables made once, its tiles sized to the
        splits and the merge's parts."""
        if self._out_tables is None:
            self._out_tables = output_tables(self.v_kept.tolist(), self.v_comp.tolist(), self.hkv, self.d,
                                             self.out_block_do, self.vs_block_c, self.q.device)
        kdim, cdim, cidx = self._out_tables
        pf, res = self._fold_partials(self.merge_parts), self.result
        n_kept = kdim.shape[1] // self.out_block_do
        block_p, steps_p = tile_steps(pf.shape[1], OUT_TILE_SPLITS // 2)
        fold_output_kernel[(self.b * self.hkv, n_kept + cdim.shape[1] // self.vs_block_c)](
            self.acce, self.maxe, self.accm, self.maxm, self.m, self.l, self.mid, pf, kdim, cdim, cidx, self.v_cos,
            self.v_sc, self.v_sh, res, self.lens_arg, *res.stride(), self.hkv, self.cv, self.v_cos.shape[2],
            self.t_max, self.esplits, self.splits, pf.shape[1], n_kept, kdim.shape[1], cdim.shape[1], G=self.group,
            LQ=self.lq, VARLEN=varlen, BLOCK_M=self.block_m, BLOCK_D=self.block_d, BLOCK_VD=self.block_vd,
            BLOCK_CV=pf.shape[3], RB=max(2, triton.next_power_of_2(self.gl)), BLOCK_K=self.out_block_do,
            BLOCK_C=self.vs_block_c, **self._split_tiles(OUT_TILE_SPLITS), BLOCK_P=block_p, STEPS_P=steps_p,
            num_warps=self.out_warps, **self._pdl_kw)


def lowrank_plan(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None, out=None, block_t=None, block=None, num_splits=None, num_warps=None, block_r=None,
    gemm_precs=None, folds=None, dense=None,
) -> LowRankPlan:
    """The launches of `fourier_decode_attention_lowrank` without its input checks (which synchronize with the
    GPU); `n_init` is taken for the op's signature only (the exact tensors hold the sinks first)."""
    return LowRankPlan(q, k_exact, v_exact, (k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift),
                       (v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift), mid_len, [int(period)],
                       scale, out, block_t, block, num_splits, num_warps, block_r, gemm_precs=gemm_precs, folds=folds,
                       dense=dense)


def planned_lowrank(upto: int | None = None, **knobs) -> Callable[[dict], Any]:
    """run(inputs) with the plan (tables, scratch; one host sync) made once per input set
    (`optimized.fourier_plans.planned`); `upto` runs only phases 1..upto."""
    return planned(lowrank_plan, upto, **knobs)


def phase_times(graph_timer: Callable[..., float], sets: list[dict], **knobs) -> dict:
    """Milliseconds of each phase (PHASES) on the input sets; the short-middle path's one pass (`dense`) counts as
    the stream, with no empty graphs timed for the phases it does not have."""
    first = lowrank_plan(**sets[0], **knobs)
    if first.dense:  # the plan that answered runs the first set (its build includes the middle's rebuild)
        run = planned(lowrank_plan, made={id(sets[0]): first}, **knobs)
        return {name: graph_timer(run, sets) if name == "stream" else 0.0 for name in PHASES}
    return plan_phase_times(lowrank_plan, PHASES, graph_timer, sets, **knobs)


def bench_extra(inputs: dict) -> dict:
    """The tables each call reads (W_K, W_V), the scratch beside the cache, and the plan's knobs."""
    plan = lowrank_plan(**inputs)
    tables = sum(g[4].numel() * g[4].element_size() + g[5].numel() * g[5].element_size() for g in plan.groups)
    tables += sum(4 * t.numel() for t in plan.v_tables)  # v_gemm's planes tables
    if plan.folds:  # the folds stand in for the tables and the coefficients (z: the K ones' n = 0 column)
        tables = sum(t.numel() * t.element_size() for t in plan.fold_tensors()) + 4 * plan._fold_z.numel()
    if plan.dense:  # the rebuilt rows stand in for all of it (the exact tokens copied beside the middle)
        tables = sum(t.numel() * t.element_size() for t in plan._dense_rows[:2])
    rows = plan.b * plan.n_rows
    chunks = -(-plan.nv // plan.v_chunk) if plan.v_chunk and plan.cv else 0  # the V products' partial sums
    gemm_scratch = sum(t.numel() for t in ((plan.u,) if plan.qs_fused else (plan.qc, plan.u))) if plan.qs_gemm else 0
    gemm_scratch += sum(t.numel() for t in (plan.planes, plan.r)) if plan.v_gemm else 0
    scratch = (rows * plan.n_blocks * 4 * ((4 if plan.a_split else 2) * plan.pk + 2 * plan.pv + 2)
               + 4 * gemm_scratch + 4 * plan.accm.numel() + plan.qbd.numel() * plan.qbd.element_size()
               + 4 * plan.b * plan.hkv * chunks * plan.block_m * plan.block_d)
    return {"scratch_bytes": float(scratch), "table_bytes": float(tables),
            "knobs": {"block_t": plan.block_t, "block": plan.block, "rank_pad_k": plan.pk, "rank_pad_v": plan.pv,
                      "num_splits": plan.splits, "num_warps": plan.num_warps, "block_r": plan.block_r,
                      "v_chunk": plan.v_chunk, "gemm_precs": list(plan.gemm_precs), "qs_gemm": plan.qs_gemm,
                      "qs_fused": plan.qs_fused, "v_gemm": plan.v_gemm, "v_fused": plan.v_fused,
                      "esplits": plan.esplits, "exact_in_prologue": plan.exact_in_phase_1,
                      "rows_in_prologue": plan.rows_in_phase_1, "planes_t": plan.planes_t, "a_t": plan.a_t,
                      "qp_warps": plan.qp_warps, "vo_fused": plan.vo_fused, "folds": plan.folds,
                      "dense_rows": plan.dense}}


@register_impl("fourier_decode_attention", "triton_lowrank", bench=ImplBench(
    name="triton_fourier_lowrank", order=3.7, fast=planned_lowrank, phases=phase_times, extra=bench_extra))
@conformance_knobs({"block_t": 16, "block": 32, "num_splits": 2})
def fourier_decode_attention_lowrank(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None, out=None, block_t=None, block=None, num_splits=None, num_warps=None, block_r=None,
    gemm_precs=None, folds=None, dense=None,
):
    """FlashFourierAttention decode with low-rank block bases (module docstring): out [B, Hq, Lq, D] in q's dtype.

    Same layout and result as `reference.ops.fourier.fourier_decode_attention`, to the SVD cut TOL. Knobs:
    `block_t` (tokens per tile, a power of two >= 16; 32), `block` (tokens per basis block, a power-of-two multiple
    of block_t; the largest whose rank stays <= MAX_RANK), `num_splits` (middle splits per row block; two waves),
    `num_warps` (4), `block_r` (query rows per program, a power of two >= 16; 16), `gemm_precs` (the precisions of
    the GEMMs A and F, two of GEMM_PRECS; GEMM_PRECS_16 for 16-bit inputs, ("ieee", "ieee") for float32), `folds`
    (the coefficient folds where the path allows them, optimized/lowrank_folds.py). A call makes its own plan, so
    folds made for it would serve one step: off unless asked for. A plan kept across steps (`lowrank_plan`,
    `planned_lowrank`, the benchmark's) takes them by FOLDS. `dense` (the middle's rows rebuilt once and one
    flash-decoding pass, optimized/lowrank_dense_rows.py): the same, off for a one-off call unless asked for, and a
    kept plan on a GPU takes it where the folds would be no smaller than the rows."""
    check_decode_inputs(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale,
                        k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len,
                        period, scale)
    folds = False if folds is None else folds  # a one-off call: no folds unless asked for (a bad value is named)
    return lowrank_plan(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale,
                        k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len, period,
                        scale, out, block_t, block, num_splits, num_warps, block_r, gemm_precs, folds, dense).run()


@register_impl("fourier_decode_attention_varlen", "triton_lowrank")
@conformance_knobs({"block_t": 16, "block": 32, "num_splits": 2})
def fourier_decode_attention_varlen_lowrank(
    q, k_exact, v_exact, exact_lens, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_lens, periods, scale=None, out=None, block_t=None, block=None, num_splits=None, num_warps=None, block_r=None,
    gemm_precs=None, folds=None, dense=None,
):
    """The low-rank decode over padded sequences of different lengths (`reference.ops.fourier_varlen`): each
    program reads its sequence's lengths; sequences sharing a period share the tables W_K, W_V (one GEMM each).
    `folds` and `dense` as for the uniform op: off for a one-off call unless asked for."""
    check_varlen_inputs(q, k_exact, v_exact, exact_lens, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin,
                        k_scale, k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
                        mid_lens, periods, scale)
    folds = False if folds is None else folds  # as for the uniform op
    return varlen_lowrank_plan(q, k_exact, v_exact, exact_lens, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos,
                               k_sin, k_scale, k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale,
                               v_shift, mid_lens, periods, scale, out, block_t, block, num_splits, num_warps,
                               block_r, gemm_precs, folds, dense).run()


def varlen_lowrank_plan(
    q, k_exact, v_exact, exact_lens, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_lens, periods, scale=None, out=None, block_t=None, block=None, num_splits=None, num_warps=None, block_r=None,
    gemm_precs=None, folds=None, dense=None,
) -> LowRankPlan:
    """The launches of `fourier_decode_attention_varlen_lowrank` without its input checks; reads the periods to the
    host (one sync)."""
    lens = varlen_lens(exact_lens, mid_lens, periods)
    return LowRankPlan(q, k_exact, v_exact, (k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift),
                       (v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift), k_mid_kept.shape[1],
                       [int(p) for p in periods.tolist()], scale, out, block_t, block, num_splits, num_warps,
                       block_r, lens=lens, gemm_precs=gemm_precs, folds=folds, dense=dense)
