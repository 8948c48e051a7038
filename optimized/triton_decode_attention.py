"""Flash-decoding in Triton: split-K decode attention over a padded, ragged KV cache (op `decode_attention`).

Contract: reference/ops/decode_attention.py (q [B, Hq, Lq, D] the newest Lq tokens, k/v [B, Hkv, Lmax, D], seq_lens
long [B], bottom-right causal, GQA). Design, after the flash-decoding idea (Dao, Haziza, Massa, Sizov, "Flash-Decoding
for long-context inference", 2023): with one or a few query tokens per sequence, one program per (sequence, head)
leaves most of the GPU idle, so the keys are also split.

1. `_split_kernel`, grid (B * Hkv, num_splits). A program owns one KV head of one sequence and one contiguous split
   of its keys 0..seq_lens[b]-1 (each sequence split by its own length, in BLOCK_N multiples). It loads the query
   rows of every query head that reads this KV head, `group * Lq` rows padded to a power of two >= 16 (a tl.dot
   operand), once, so each key tile is read once per KV head rather than once per query head. It walks its split in
   BLOCK_N tiles with the online softmax (Milakov & Gimelshein, 2018) in float32: running max m, sum l, unnormalised
   accumulator acc, with the bottom-right causal mask and the mask at seq_lens[b]. It writes (m, l, acc) to a float32
   workspace; with one split it normalises and writes `out` directly (no workspace, no second kernel).
2. `_merge_kernel`, grid (B * Hkv, group * Lq): out = sum_s e^{m_s - M} acc_s / sum_s e^{m_s - M} l_s with
   M = max_s m_s (the log-sum-exp merge); empty splits carry m = -inf, l = 0 and drop out. M is finite because
   key 0 lies in split 0 and every query sees it.

Products: q k^T and p v on tensor cores in the input dtype (p rounded to it, as flash-attention does) with float32
accumulation; float32 inputs use IEEE products (input_precision="ieee"), not TF32. head_dim is padded to a power of
two >= 16 with masks, so any D works. Strides are passed, so q, k, v and out need not be contiguous.

Memory traffic (`bytes_read`, what a bandwidth figure should divide by): K and V of positions 0..seq_lens[b]-1 only,
Hkv * D elements each per position; q once; out written once; seq_lens. The split workspace (num_splits * group * Lq
* (D + 2) floats per KV head, independent of the length) is not counted. Padding past seq_lens is never loaded.

Timing: an eager call costs ~200 us of host time on an H200 with triton 3.6 (input checks, the seq_lens range check's
host sync, two launches), more than the kernels themselves below ~500 MB of KV. Time with `validate=False` inside a
CUDA graph (triton.testing.do_bench_cudagraph): seen there, 22.5 us for one LLaMA-3-8B sequence of 16k tokens (bf16,
Lq 1; 2.99 TB/s by `bytes_read`, SDPA 23.5 us) and 134.5 us for 8 of them (3.99 TB/s, SDPA 127.3 us).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from reference.bench_spec import ImplBench
from reference.ops.checks import check_int, check_out, check_triton_dtype, check_triton_runnable
from reference.ops.decode_attention import check_decode_attention_inputs
from reference.registry import register_impl

MAX_ROWS = 128  # group * Lq rows per program, padded: more would spill registers (16 x 8 heads = 128 is fine)
MAX_SPLITS = 256


@triton.jit
def _split_kernel(
    q_ptr, k_ptr, v_ptr, seq_lens_ptr, out_ptr, m_ptr, l_ptr, acc_ptr, sm_scale,
    s_qb, s_qh, s_ql, s_qd, s_kb, s_kh, s_kn, s_kd, s_vb, s_vh, s_vn, s_vd, s_ob, s_oh, s_ol, s_od,
    HKV, num_splits,
    HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, LQ: tl.constexpr, GROUP: tl.constexpr, ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr, DIRECT: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    b = (pid // HKV).to(tl.int64)  # int64: b * stride overflows int32 for caches past 2**31 elements
    kvh = pid % HKV
    seq_len = tl.load(seq_lens_ptr + b).to(tl.int32)

    # Row r of the tile is query token i = r % LQ of query head kvh * GROUP + r // LQ.
    rows = tl.arange(0, ROWS)
    row_ok = rows < GROUP * LQ
    head = kvh * GROUP + rows // LQ
    tok = rows % LQ
    dims = tl.arange(0, D_PAD)
    dim_ok = dims < HEAD_DIM
    q_rows = q_ptr + b * s_qb + head * s_qh + tok * s_ql
    q = tl.load(q_rows[:, None] + dims[None, :] * s_qd, mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    # Query i sits at position seq_len - LQ + i and sees keys up to it; padding rows (q = 0) see everything, so
    # their softmax stays finite and is never stored.
    last_key = tl.where(row_ok, seq_len - LQ + tok, seq_len - 1)

    chunk = tl.cdiv(tl.cdiv(seq_len, num_splits), BLOCK_N) * BLOCK_N
    start = split * chunk
    end = tl.minimum(start + chunk, seq_len)

    m_i = tl.full([ROWS], float("-inf"), tl.float32)
    l_i = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, D_PAD], tl.float32)
    k_head = k_ptr + b * s_kb + kvh * s_kh
    v_head = v_ptr + b * s_vb + kvh * s_vh
    for n0 in range(start, end, BLOCK_N):
        keys = n0 + tl.arange(0, BLOCK_N)
        key_ok = keys < end
        k_tile = k_head + keys[None, :] * s_kn + dims[:, None] * s_kd  # [D_PAD, BLOCK_N]: K transposed
        if HEAD_DIM == D_PAD:  # no mask along D, so the loads stay vectorised along it
            kt = tl.load(k_tile, mask=key_ok[None, :], other=0.0)
        else:
            kt = tl.load(k_tile, mask=dim_ok[:, None] & key_ok[None, :], other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * sm_scale
        s = tl.where(key_ok[None, :] & (keys[None, :] <= last_key[:, None]), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row that has seen no visible key yet keeps m = -inf; shift by 0 there so exp gives 0, not NaN.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_shift)
        p = tl.exp(s - m_shift[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v_tile = v_head + keys[:, None] * s_vn + dims[None, :] * s_vd  # [BLOCK_N, D_PAD]
        if HEAD_DIM == D_PAD:
            vt = tl.load(v_tile, mask=key_ok[:, None], other=0.0)
        else:
            vt = tl.load(v_tile, mask=key_ok[:, None] & dim_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt, input_precision=PRECISION)
        m_i = m_new

    if DIRECT:  # one split: normalise and write out, no workspace
        o_rows = out_ptr + b * s_ob + head * s_oh + tok * s_ol
        res = acc / l_i[:, None]
        tl.store(o_rows[:, None] + dims[None, :] * s_od, res.to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & dim_ok[None, :])
    else:
        ws = (pid * num_splits + split) * ROWS + rows  # workspace row: [B * Hkv, num_splits, ROWS]
        tl.store(m_ptr + ws, m_i, mask=row_ok)
        tl.store(l_ptr + ws, l_i, mask=row_ok)
        tl.store(acc_ptr + ws[:, None] * D_PAD + dims[None, :], acc, mask=row_ok[:, None])


@triton.jit
def _merge_kernel(
    m_ptr, l_ptr, acc_ptr, out_ptr, s_ob, s_oh, s_ol, s_od,
    HKV, num_splits,
    HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, LQ: tl.constexpr, GROUP: tl.constexpr, ROWS: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
):
    pid = tl.program_id(0)
    row = tl.program_id(1)
    b = (pid // HKV).to(tl.int64)
    kvh = pid % HKV
    splits = tl.arange(0, SPLITS_PAD)
    split_ok = splits < num_splits
    dims = tl.arange(0, D_PAD)
    ws = (pid * num_splits + splits) * ROWS + row
    m = tl.load(m_ptr + ws, mask=split_ok, other=float("-inf"))
    l_s = tl.load(l_ptr + ws, mask=split_ok, other=0.0)
    acc = tl.load(acc_ptr + ws[:, None] * D_PAD + dims[None, :], mask=split_ok[:, None], other=0.0)
    w = tl.exp(m - tl.max(m, 0))  # the max is finite (module docstring), so empty splits get weight 0
    res = tl.sum(acc * w[:, None], 0) / tl.sum(l_s * w, 0)
    head = kvh * GROUP + row // LQ
    o = out_ptr + b * s_ob + head * s_oh + (row % LQ) * s_ol + dims * s_od
    tl.store(o, res.to(out_ptr.dtype.element_ty), mask=dims < HEAD_DIM)


@functools.lru_cache(maxsize=16)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def default_num_splits(batch_kv_heads: int, max_len: int, block_n: int, device: torch.device) -> int:
    """Splits per (sequence, KV head): enough programs for ~2 waves over the SMs, each split >= 4 key tiles.

    max_len is k's Lmax, not max(seq_lens): reading seq_lens would sync with the host; a split past a sequence's
    end exits at once. Off the GPU (the Triton interpreter) up to 4, so both the merged and one-split paths run.
    """
    tiles = triton.cdiv(max_len, block_n)
    if device.type != "cuda":
        return max(1, min(4, tiles))
    sms = _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    return max(1, min(triton.cdiv(2 * sms, batch_kv_heads), triton.cdiv(tiles, 4), 64))


def launch_config(device: torch.device) -> dict:
    """Tile and launch options: BLOCK_N keys per tile, warps and pipeline stages.

    GPU: 64 keys, 4 warps, 3 stages had the best geometric mean over 9 LLaMA-3-8B / SmolLM2 bf16 shapes (B 1..32,
    L 4k-16k, Lq 1 and 16) among 6 configs x 4 split counts on one H200 (triton 3.6, CUDA graphs, 2026-11-26): within
    9% of the best config of every shape. CPU: 32-key tiles, so the interpreter's short test sequences cross tiles.
    """
    if device.type != "cuda":
        return {"BLOCK_N": 32, "num_warps": 4, "num_stages": 1}
    return {"BLOCK_N": 64, "num_warps": 4, "num_stages": 3}


def unchecked_call():
    """The benchmark's graph-capturable call: the kernel with validate=False (its inputs were checked once)."""
    return lambda inputs: decode_attention_triton(**inputs, validate=False)


def bench_extra(inputs: dict) -> dict:
    """The kernel's own byte count (`bytes_read`, with seq_lens), kept beside the op's model as a cross-check."""
    return {"kernel_bytes_read": float(bytes_read(**inputs))}


@register_impl("decode_attention", "triton", bench=ImplBench(name="triton_dense", order=1, fast=unchecked_call,
                                                            extra=bench_extra))
def decode_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor,
                            scale: float | None = None, out: torch.Tensor | None = None,
                            num_splits: int | None = None, validate: bool = True) -> torch.Tensor:
    """Same contract as reference.ops.decode_attention.decode_attention: out [B, Hq, Lq, D] in q's dtype.

    out: optional [B, Hq, Lq, D] tensor of q's dtype and device, written and returned.
    num_splits: key splits per (sequence, KV head); default `default_num_splits`.
    validate: False skips the checks that read values (seq_lens' range, NaN/inf in q and the valid k/v: the host
      syncs), so the call can be timed back to back or captured in a CUDA graph; shapes, dtypes and devices are
      checked either way.
    """
    check_decode_attention_inputs(q, k, v, seq_lens, scale, check_values=bool(validate))
    check_out(out, q.shape, q.dtype, q.device)
    check_int("num_splits", num_splits, 1, MAX_SPLITS, optional=True)
    check_triton_dtype("q", q)
    batch, hq, lq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    rows = max(16, triton.next_power_of_2(group * lq))
    if rows > MAX_ROWS:
        raise ValueError(f"q holds group * Lq = {hq // hkv} * {lq} = {group * lq} query rows per KV head; this kernel "
                         f"keeps them in one tile of at most {MAX_ROWS} rows (Lq up to {MAX_ROWS // group} here)")
    check_triton_runnable("decode_attention_triton", q)
    if out is None:
        out = torch.empty_like(q)
    config = launch_config(q.device)
    if num_splits is None:
        num_splits = default_num_splits(batch * hkv, k.shape[2], config["BLOCK_N"], q.device)
    d_pad = max(16, triton.next_power_of_2(d))
    sm_scale = d ** -0.5 if scale is None else float(scale)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"  # "tf32" only names the default; fp16/bf16 ignore it
    meta = dict(HEAD_DIM=d, D_PAD=d_pad, LQ=lq, GROUP=group, ROWS=rows)
    if num_splits == 1:
        m_ws = l_ws = acc_ws = out  # unused by the one-split path
    else:
        m_ws = torch.empty(batch * hkv * num_splits * rows, dtype=torch.float32, device=q.device)
        l_ws = torch.empty_like(m_ws)
        acc_ws = torch.empty(m_ws.numel() * d_pad, dtype=torch.float32, device=q.device)
    _split_kernel[(batch * hkv, num_splits)](
        q, k, v, seq_lens.contiguous(), out, m_ws, l_ws, acc_ws, sm_scale,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), hkv, num_splits,
        DIRECT=num_splits == 1, PRECISION=precision, **meta, **config,
    )
    if num_splits > 1:
        _merge_kernel[(batch * hkv, group * lq)](
            m_ws, l_ws, acc_ws, out, *out.stride(), hkv, num_splits,
            SPLITS_PAD=triton.next_power_of_2(num_splits), **meta,
        )
    return out


def bytes_read(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor) -> int:
    """Compulsory memory traffic of one call in bytes: K and V up to seq_lens, q read, out written, seq_lens.

    Divide by the measured time for the achieved bandwidth (module docstring; the small split workspace excluded).
    """
    kv_positions = int(seq_lens.sum())
    kv = kv_positions * k.shape[1] * k.shape[3] * (k.element_size() + v.element_size())
    return kv + 2 * q.numel() * q.element_size() + seq_lens.numel() * seq_lens.element_size()
