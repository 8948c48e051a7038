"""Sparse-dLLM saliency and top-k selection in Triton: two kernels, no sort.

Contract: reference/ops/sparse_dllm_saliency.py (q_block [B, Hq, Lb, D], k [B, Hkv, S, D], keep, kernel_size;
returns float32 scores [B, S] and the ascending kept positions, long [B, keep]). Sparse-dLLM: Song et al., arXiv
2508.02558; facts in docs/sparse-dllm.md.

1. `_scores_kernel`, grid (B, tiles). The head-mean score is one dot product per position,
       s[b, j] = sum_kvh qsum[b, kvh] . k[b, kvh, j],   qsum[b, kvh] = sum_{h in group(kvh)} sum_i q_block[b, h, i]
                                                                    / (Lb * Hq),
   so a program builds qsum for each KV head in turn from q_block (in-kernel: no qbar tensor, no second launch; q is
   small and re-read from L2 by every tile) and reads its key tile of every KV head once: the kernel is one pass over
   k, which is the memory that matters. It writes s in float32 (into `scores` itself when kernel_size is 1).
   `_pool_kernel`, grid (B, tiles): the max-pool, max over o in [-kernel_size // 2, kernel_size // 2] of s[j + o]
   with -inf outside [0, S) (max_pool1d's padding), from kernel_size shifted loads of s. A first version pooled
   inside `_scores_kernel` from shifted copies made with `tl.gather`, which go through shared memory for every
   window offset (racecheck reported there the replicated-lane write pairs it also reports in `tl.sum`, a pattern of
   Triton's lowering: docs/conformance.md). The separate pass needs no shared memory and keeps the scores kernel a
   plain reduction; it costs 8 bytes per position read and written beside the Hkv * D * 2 bytes of k each position
   costs (under 1.6% for Hkv * D >= 512, fp16).
2. `_select_kernel`, grid (B,): the keep-th largest score T by bisection on the order-preserving int32 image of the
   float32 scores (flip the 31 low bits of negatives; -0.0 is first made +0.0): 32 halvings of the int32 range, each a
   counting pass "how many keys >= mid" over the row (L1/L2 resident: S floats), then one compaction pass in index
   order writing every position with key > T and the first keep - #(key > T) positions with key == T, at offsets
   from tl.cumsum. The output is ascending, ties go to the lower position (the reference's rule), and no sort or
   torch.topk runs. keep = 0 launches nothing; keep = S selects every position.

Accumulation in float32 whatever the input dtype (fp16/bf16/fp32 loads are widened); no tl.dot, so bf16 is exact
under the interpreter too. Strides are passed, so q_block and k need not be contiguous.

Not measured on a GPU yet: tile sizes in `launch_config` are untuned guesses, and the one-program-per-row
select (33 passes over S) is the part to watch at batch 1.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from reference.ops.checks import check_triton_dtype, check_triton_runnable
from reference.ops.sparse_dllm_saliency import check_sparse_dllm_saliency_inputs
from reference.registry import register_impl


@triton.jit
def _scores_kernel(
    q_ptr, k_ptr, scores_ptr, inv_count, S, LB, GROUP, HKV,
    s_qb, s_qh, s_ql, s_qd, s_kb, s_kh, s_kn, s_kd, s_sb,
    HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    pos = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    pos_ok = pos < S
    dims = tl.arange(0, D_PAD)
    dim_ok = dims < HEAD_DIM
    ls = tl.arange(0, BLOCK_L)

    s = tl.zeros([BLOCK_N], tl.float32)
    for kvh in range(HKV):
        qsum = tl.zeros([D_PAD], tl.float32)
        for g in range(GROUP):
            q_head = q_ptr + b * s_qb + (kvh * GROUP + g) * s_qh
            for l0 in range(0, LB, BLOCK_L):
                q_ok = (l0 + ls < LB)[:, None] & dim_ok[None, :]
                qt = tl.load(q_head + (l0 + ls)[:, None] * s_ql + dims[None, :] * s_qd, mask=q_ok, other=0.0)
                qsum += tl.sum(qt.to(tl.float32), 0)
        k_tile = k_ptr + b * s_kb + kvh * s_kh + pos[:, None] * s_kn + dims[None, :] * s_kd
        kt = tl.load(k_tile, mask=pos_ok[:, None] & dim_ok[None, :], other=0.0)
        s += tl.sum(kt.to(tl.float32) * qsum[None, :], 1)
    tl.store(scores_ptr + b * s_sb + pos, s * inv_count, mask=pos_ok)


@triton.jit
def _pool_kernel(raw_ptr, scores_ptr, S, s_rb, s_sb, PAD: tl.constexpr, BLOCK: tl.constexpr):
    """scores[b, j] = max_{|o| <= PAD} raw[b, j + o], -inf outside [0, S): max_pool1d(kernel 2 PAD + 1, stride 1)."""
    b = tl.program_id(0).to(tl.int64)
    pos = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    pooled = tl.full([BLOCK], float("-inf"), tl.float32)
    for o in tl.static_range(2 * PAD + 1):
        src = pos + (o - PAD)
        pooled = tl.maximum(pooled, tl.load(raw_ptr + b * s_rb + src, mask=(src >= 0) & (src < S),
                                            other=float("-inf")))
    tl.store(scores_ptr + b * s_sb + pos, pooled, mask=pos < S)


@triton.jit
def _keys(row_ptr, n0, S, BLOCK: tl.constexpr):
    """Positions n0.. of one row as order-preserving int32 keys (a < b as floats iff key(a) < key(b))."""
    n = n0 + tl.arange(0, BLOCK)
    ok = n < S
    x = tl.load(row_ptr + n, mask=ok, other=0.0)
    x = tl.where(x == 0.0, 0.0, x)  # -0.0 == +0.0 as floats: give them one key
    bits = x.to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF), ok, n


@triton.jit
def _select_kernel(scores_ptr, idx_ptr, S, keep, s_sb, s_ib, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    row = scores_ptr + b * s_sb
    # Invariant: #(key >= lo) >= keep; the largest such lo is the keep-th largest key.
    lo = tl.full([], -2147483648, tl.int64)
    hi = tl.full([], 2147483647, tl.int64)
    for _ in range(32):  # the range holds 2**32 values: 32 halvings leave one
        mid = (lo + hi + 1) >> 1  # arithmetic shift: floor, also for negatives
        count = tl.zeros([], tl.int32)
        for n0 in range(0, S, BLOCK):
            key, ok, _n = _keys(row, n0, S, BLOCK)
            count += tl.sum((ok & (key >= mid)).to(tl.int32), 0)
        ge = count >= keep
        lo = tl.where(ge, mid, lo)
        hi = tl.where(ge, hi, mid - 1)

    above = tl.zeros([], tl.int32)
    for n0 in range(0, S, BLOCK):
        key, ok, _n = _keys(row, n0, S, BLOCK)
        above += tl.sum((ok & (key > lo)).to(tl.int32), 0)
    ties = keep - above  # >= 1: how many positions holding the threshold itself are kept, lowest first
    written = tl.zeros([], tl.int32)
    seen = tl.zeros([], tl.int32)
    for n0 in range(0, S, BLOCK):
        key, ok, n = _keys(row, n0, S, BLOCK)
        eq = (ok & (key == lo)).to(tl.int32)
        sel = ((ok & (key > lo)) | ((eq == 1) & (seen + tl.cumsum(eq, 0) - eq < ties))).to(tl.int32)
        dst = written + tl.cumsum(sel, 0) - sel  # exclusive prefix sum: ascending positions, no gaps
        tl.store(idx_ptr + b * s_ib + dst, n.to(tl.int64), mask=(sel == 1) & (dst < keep))
        written += tl.sum(sel, 0)
        seen += tl.sum(eq, 0)


def launch_config(device: torch.device) -> dict:
    """Tiles: BLOCK_N positions per scores program, BLOCK_POOL per pooling program, BLOCK_SELECT per select step.

    GPU: untuned (module docstring). CPU: 32-position tiles, so the explicit examples (33, 64, 65 and 127
    positions) cross tile boundaries in every pass.
    """
    if device.type != "cuda":
        return {"BLOCK_N": 32, "BLOCK_POOL": 32, "BLOCK_SELECT": 32, "num_warps": 4}
    return {"BLOCK_N": 128, "BLOCK_POOL": 1024, "BLOCK_SELECT": 4096, "num_warps": 8}


@register_impl("sparse_dllm_saliency", "triton")
def sparse_dllm_saliency_triton(q_block: torch.Tensor, k: torch.Tensor, keep: int,
                                kernel_size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as reference.ops.sparse_dllm_saliency.sparse_dllm_saliency:
    (scores float32 [B, S], kept_idx long [B, keep] ascending)."""
    check_sparse_dllm_saliency_inputs(q_block, k, keep, kernel_size)
    check_triton_dtype("q_block", q_block)
    check_triton_runnable("sparse_dllm_saliency_triton", q_block)
    b, hq, lb, d = q_block.shape
    hkv, s = k.shape[1], k.shape[2]
    scores = torch.empty(b, s, dtype=torch.float32, device=q_block.device)
    kept = torch.empty(b, int(keep), dtype=torch.long, device=q_block.device)
    if s == 0:
        return scores, kept
    config = launch_config(q_block.device)
    pad = int(kernel_size) // 2
    block_n = config["BLOCK_N"]
    raw = torch.empty_like(scores) if pad > 0 else scores  # the head-mean score before the max-pool
    _scores_kernel[(b, triton.cdiv(s, block_n))](
        q_block, k, raw, 1.0 / (lb * hq), s, lb, hq // hkv, hkv, *q_block.stride(), *k.stride(), raw.stride(0),
        HEAD_DIM=d, D_PAD=triton.next_power_of_2(d), BLOCK_L=min(32, triton.next_power_of_2(lb)), BLOCK_N=block_n,
        num_warps=config["num_warps"],
    )
    if pad > 0:
        _pool_kernel[(b, triton.cdiv(s, config["BLOCK_POOL"]))](raw, scores, s, raw.stride(0), scores.stride(0),
                                                                PAD=pad, BLOCK=config["BLOCK_POOL"])
    if keep > 0:
        _select_kernel[(b,)](scores, kept, s, int(keep), scores.stride(0), kept.stride(0),
                             BLOCK=config["BLOCK_SELECT"], num_warps=config["num_warps"])
    return scores, kept
