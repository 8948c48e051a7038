"""Sparse-dLLM block attention in Triton: split-K flash attention over kept cache rows read through kept_idx.

Contract: reference/ops/sparse_block_attention.py (q [B, Hq, Lb, D], k_block/v_block [B, Hkv, Lb, D], k_cache/v_cache
[B, Hkv, S, D], kept_idx None or long [B, K], bidirectional, GQA). Sparse-dLLM: Song et al., arXiv 2508.02558; facts
in docs/sparse-dllm.md.

The keys a block sees are numbered n = 0 .. K + Lb - 1: n < K is cache row kept_idx[b, n] (n itself when kept_idx
is None), n >= K is block row n - K. Nothing is concatenated or gathered into memory: each key tile loads its K/V
rows straight from k_cache/v_cache through the loaded indices, or from k_block/v_block.

1. `_split_kernel`, grid (B * Hkv * row_blocks, num_splits). A program owns one KV head of one batch row, BLOCK_M of
   the group * Lb query rows that read it (the rows of every query head of the group packed together, as in
   optimized/triton_decode_attention.py, so a key tile is loaded once per KV head, not once per query head), and one
   contiguous split of the n range (BLOCK_N multiples). It walks the cached part of its split, then the block part,
   with the online softmax (Milakov & Gimelshein, 2018; FlashAttention, Dao et al., 2022) in float32: running max m,
   sum l, unnormalised accumulator acc. No mask but the end of the range: the attention is bidirectional. It writes
   (m, l, acc) to a float32 workspace, or with one split normalises and writes `out` directly.
2. `_merge_kernel`, grid (B * Hkv * row_blocks,), the split kernel's row blocks: the log-sum-exp merge of the
   splits, out = sum_s e^{m_s - M} acc_s / sum_s e^{m_s - M} l_s, M = max_s m_s, taken one split at a time with a
   running M (the online softmax again). Split 0 always holds key 0 (Lb >= 1), so M is finite from it on and empty
   splits (m = -inf, l = 0) get weight 0.
Splits matter at Sparse-dLLM's shapes: Lb = 32 rows per KV head and S = 16k gives B * Hkv = 32 programs for
LLaDA-8B at batch 1, a quarter of an H100's SMs, so the keys are split until there are ~2 waves.

Products: q k^T and p v with tl.dot in the input dtype (p rounded to it, as flash-attention does), float32
accumulation; float32 inputs use IEEE products (input_precision="ieee"), not TF32. head_dim is padded to a power of
two >= 16 with masks. Strides are passed, so no input needs to be contiguous.

Not measured on a GPU yet: the GPU tile sizes in `launch_config` are the decode kernel's, untuned here.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from reference.ops.checks import check_int, check_out, check_triton_dtype, check_triton_runnable
from reference.ops.sparse_block_attention import check_sparse_block_attention_inputs
from reference.registry import register_impl

MAX_SPLITS = 256


@triton.jit
def _attend_tile(q, kt, vt, key_ok, m_i, l_i, acc, sm_scale, PRECISION: tl.constexpr):
    """One online-softmax step over a key tile (kt [D_PAD, BLOCK_N], vt [BLOCK_N, D_PAD]) with >= 1 valid key."""
    s = tl.dot(q, kt, input_precision=PRECISION) * sm_scale
    s = tl.where(key_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: the tile holds a valid key
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _load_kv(k_base, v_base, pos, key_ok, dims, s_kn, s_kd, s_vn, s_vd, HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr):
    """K rows `pos` transposed [D_PAD, BLOCK_N] and V rows [BLOCK_N, D_PAD]; masked keys and padded dims load 0."""
    if HEAD_DIM == D_PAD:  # no mask along D, so the loads stay vectorised along it
        kt = tl.load(k_base + pos[None, :] * s_kn + dims[:, None] * s_kd, mask=key_ok[None, :], other=0.0)
        vt = tl.load(v_base + pos[:, None] * s_vn + dims[None, :] * s_vd, mask=key_ok[:, None], other=0.0)
    else:
        dim_ok = dims < HEAD_DIM
        kt = tl.load(k_base + pos[None, :] * s_kn + dims[:, None] * s_kd, mask=dim_ok[:, None] & key_ok[None, :],
                     other=0.0)
        vt = tl.load(v_base + pos[:, None] * s_vn + dims[None, :] * s_vd, mask=key_ok[:, None] & dim_ok[None, :],
                     other=0.0)
    return kt, vt


@triton.jit
def _split_kernel(
    q_ptr, kb_ptr, vb_ptr, kc_ptr, vc_ptr, idx_ptr, out_ptr, m_ptr, l_ptr, acc_ptr, sm_scale,
    s_qb, s_qh, s_ql, s_qd, s_kbb, s_kbh, s_kbn, s_kbd, s_vbb, s_vbh, s_vbn, s_vbd,
    s_kcb, s_kch, s_kcn, s_kcd, s_vcb, s_vch, s_vcn, s_vcd, s_ib, s_in, s_ob, s_oh, s_ol, s_od,
    HKV, n_kept, num_splits, row_blocks,
    HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, LB: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, HAS_IDX: tl.constexpr, DIRECT: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    rb = pid % row_blocks
    bh = pid // row_blocks
    b = (bh // HKV).to(tl.int64)  # int64: b * stride overflows int32 for caches past 2**31 elements
    kvh = bh % HKV

    # Row r of the packed tile is block token r % LB of query head kvh * GROUP + r // LB.
    rows = rb * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < GROUP * LB
    head = kvh * GROUP + rows // LB
    tok = rows % LB
    dims = tl.arange(0, D_PAD)
    dim_ok = dims < HEAD_DIM
    q_rows = q_ptr + b * s_qb + head * s_qh + tok * s_ql
    q = tl.load(q_rows[:, None] + dims[None, :] * s_qd, mask=row_ok[:, None] & dim_ok[None, :], other=0.0)

    total = n_kept + LB
    chunk = tl.cdiv(tl.cdiv(total, num_splits), BLOCK_N) * BLOCK_N
    start = split * chunk
    end = tl.minimum(start + chunk, total)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    # Cached keys n in [start, min(end, K)), read through kept_idx.
    kc_head = kc_ptr + b * s_kcb + kvh * s_kch
    vc_head = vc_ptr + b * s_vcb + kvh * s_vch
    cache_end = tl.minimum(end, n_kept)
    for n0 in range(start, cache_end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        key_ok = n < cache_end
        if HAS_IDX:
            pos = tl.load(idx_ptr + b * s_ib + n * s_in, mask=key_ok, other=0)
        else:
            pos = n.to(tl.int64)
        kt, vt = _load_kv(kc_head, vc_head, pos, key_ok, dims, s_kcn, s_kcd, s_vcn, s_vcd, HEAD_DIM, D_PAD)
        m_i, l_i, acc = _attend_tile(q, kt, vt, key_ok, m_i, l_i, acc, sm_scale, PRECISION)
    # The block's own keys n in [max(start, K), end), block row n - K.
    kb_head = kb_ptr + b * s_kbb + kvh * s_kbh
    vb_head = vb_ptr + b * s_vbb + kvh * s_vbh
    for n0 in range(tl.maximum(start, n_kept), end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        key_ok = n < end
        kt, vt = _load_kv(kb_head, vb_head, n - n_kept, key_ok, dims, s_kbn, s_kbd, s_vbn, s_vbd, HEAD_DIM, D_PAD)
        m_i, l_i, acc = _attend_tile(q, kt, vt, key_ok, m_i, l_i, acc, sm_scale, PRECISION)

    if DIRECT:  # one split: normalise and write out, no workspace
        o_rows = out_ptr + b * s_ob + head * s_oh + tok * s_ol
        tl.store(o_rows[:, None] + dims[None, :] * s_od, (acc / l_i[:, None]).to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & dim_ok[None, :])
    else:  # workspace row: [B * Hkv, num_splits, row_blocks * BLOCK_M]
        ws = (bh * num_splits + split) * (row_blocks * BLOCK_M) + rows
        tl.store(m_ptr + ws, m_i, mask=row_ok)
        tl.store(l_ptr + ws, l_i, mask=row_ok)
        tl.store(acc_ptr + ws[:, None] * D_PAD + dims[None, :], acc, mask=row_ok[:, None])


@triton.jit
def _merge_kernel(
    m_ptr, l_ptr, acc_ptr, out_ptr, s_ob, s_oh, s_ol, s_od, HKV, num_splits, row_blocks,
    HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, LB: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
):
    pid = tl.program_id(0)
    rb = pid % row_blocks
    bh = pid // row_blocks
    b = (bh // HKV).to(tl.int64)
    kvh = bh % HKV
    rows = rb * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < GROUP * LB
    dims = tl.arange(0, D_PAD)
    m_run = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_run = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    for split in range(num_splits):
        ws = (bh * num_splits + split) * (row_blocks * BLOCK_M) + rows
        m = tl.load(m_ptr + ws, mask=row_ok, other=0.0)
        m_new = tl.maximum(m_run, m)  # finite from split 0 on (module docstring)
        alpha = tl.exp(m_run - m_new)
        beta = tl.exp(m - m_new)  # an empty split has m = -inf: weight 0
        l_run = l_run * alpha + tl.load(l_ptr + ws, mask=row_ok, other=1.0) * beta
        acc_s = tl.load(acc_ptr + ws[:, None] * D_PAD + dims[None, :], mask=row_ok[:, None], other=0.0)
        acc = acc * alpha[:, None] + acc_s * beta[:, None]
        m_run = m_new
    o_rows = out_ptr + b * s_ob + (kvh * GROUP + rows // LB) * s_oh + (rows % LB) * s_ol
    tl.store(o_rows[:, None] + dims[None, :] * s_od, (acc / l_run[:, None]).to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (dims < HEAD_DIM)[None, :])


@functools.lru_cache(maxsize=16)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def default_num_splits(programs: int, num_keys: int, block_n: int, device: torch.device) -> int:
    """Splits of the K + Lb keys: ~2 waves of programs over the SMs, each split >= 4 key tiles.

    Off the GPU (the Triton interpreter) up to 3, so both the merged and the one-split paths run on short inputs.
    """
    tiles = triton.cdiv(num_keys, block_n)
    if device.type != "cuda":
        return max(1, min(3, tiles))
    sms = _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    return max(1, min(triton.cdiv(2 * sms, programs), triton.cdiv(tiles, 4), 64))


def launch_config(device: torch.device) -> dict:
    """BLOCK_M query rows and BLOCK_N keys per tile, warps, stages.

    GPU: the decode kernel's tuned tile (64 keys, 4 warps, 3 stages) and up to 128 query rows (Lb = 32 times a GQA
    group of 4); not tuned for this op. CPU: small tiles, so the interpreter's short inputs cross tile and row-block
    boundaries.
    """
    if device.type != "cuda":
        return {"MAX_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 1}
    return {"MAX_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}


@register_impl("sparse_block_attention", "triton")
def sparse_block_attention_triton(q: torch.Tensor, k_block: torch.Tensor, v_block: torch.Tensor,
                                  k_cache: torch.Tensor, v_cache: torch.Tensor, kept_idx: torch.Tensor | None = None,
                                  scale: float | None = None, out: torch.Tensor | None = None,
                                  num_splits: int | None = None, validate: bool = True) -> torch.Tensor:
    """Same contract as reference.ops.sparse_block_attention.sparse_block_attention: out [B, Hq, Lb, D], q's dtype.

    out: optional [B, Hq, Lb, D] tensor of q's dtype and device, written and returned.
    num_splits: splits of the K + Lb keys per (batch row, KV head, row block); default `default_num_splits`.
    validate: False skips the checks that read values (kept_idx in range and distinct, NaN/inf in the rows read:
      the host syncs), so the call can be timed back to back or captured in a CUDA graph; shapes, dtypes and devices
      are checked either way.
    """
    check_sparse_block_attention_inputs(q, k_block, v_block, k_cache, v_cache, kept_idx, scale,
                                        check_values=bool(validate))
    check_out(out, q.shape, q.dtype, q.device)
    check_int("num_splits", num_splits, 1, MAX_SPLITS, optional=True)
    check_triton_dtype("q", q)
    check_triton_runnable("sparse_block_attention_triton", q)
    batch, hq, lb, d = q.shape
    hkv = k_block.shape[1]
    group = hq // hkv
    n_kept = k_cache.shape[2] if kept_idx is None else kept_idx.shape[1]
    if out is None:
        out = torch.empty_like(q)
    config = launch_config(q.device)
    block_m = min(config.pop("MAX_M"), max(16, triton.next_power_of_2(group * lb)))
    row_blocks = triton.cdiv(group * lb, block_m)
    if num_splits is None:
        num_splits = default_num_splits(batch * hkv * row_blocks, n_kept + lb, config["BLOCK_N"], q.device)
    if n_kept == 0:  # nothing cached is read: point at the block so no empty tensor's pointer reaches the kernel
        k_cache, v_cache, kept_idx = k_block, v_block, None
    idx = kept_idx if kept_idx is not None else k_cache  # unused when HAS_IDX is False
    idx_strides = kept_idx.stride() if kept_idx is not None else (0, 0)
    d_pad = max(16, triton.next_power_of_2(d))
    precision = "ieee" if q.dtype == torch.float32 else "tf32"  # "tf32" only names the default; fp16/bf16 ignore it
    meta = dict(HEAD_DIM=d, D_PAD=d_pad, LB=lb, GROUP=group)
    rows_pad = row_blocks * block_m
    if num_splits == 1:
        m_ws = l_ws = acc_ws = out  # unused by the one-split path
    else:
        m_ws = torch.empty(batch * hkv * num_splits * rows_pad, dtype=torch.float32, device=q.device)
        l_ws = torch.empty_like(m_ws)
        acc_ws = torch.empty(m_ws.numel() * d_pad, dtype=torch.float32, device=q.device)
    sm_scale = d ** -0.5 if scale is None else float(scale)
    _split_kernel[(batch * hkv * row_blocks, num_splits)](
        q, k_block, v_block, k_cache, v_cache, idx, out, m_ws, l_ws, acc_ws, sm_scale,
        *q.stride(), *k_block.stride(), *v_block.stride(), *k_cache.stride(), *v_cache.stride(), *idx_strides,
        *out.stride(), hkv, n_kept, num_splits, row_blocks,
        BLOCK_M=block_m, HAS_IDX=kept_idx is not None, DIRECT=num_splits == 1, PRECISION=precision, **meta, **config,
    )
    if num_splits > 1:
        _merge_kernel[(batch * hkv * row_blocks,)](
            m_ws, l_ws, acc_ws, out, *out.stride(), hkv, num_splits, row_blocks, BLOCK_M=block_m, **meta,
        )
    return out


def bytes_read(q: torch.Tensor, k_block: torch.Tensor, v_block: torch.Tensor, k_cache: torch.Tensor,
               v_cache: torch.Tensor, kept_idx: torch.Tensor | None = None, **_) -> int:
    """Compulsory memory traffic of one call in bytes: the kept K/V rows, the block's K/V, q read, out written,
    kept_idx. Divide by the measured time for the achieved bandwidth (the small split workspace excluded)."""
    b, hkv, s, d = k_cache.shape
    kept = s if kept_idx is None else kept_idx.shape[1]
    cache = b * hkv * kept * d * (k_cache.element_size() + v_cache.element_size())
    block = k_block.numel() * k_block.element_size() + v_block.numel() * v_block.element_size()
    idx = 0 if kept_idx is None else kept_idx.numel() * kept_idx.element_size()
    return cache + block + 2 * q.numel() * q.element_size() + idx
