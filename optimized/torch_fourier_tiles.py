"""FlashFourierAttention's token-major plan in PyTorch: the tiles, ranges and merges a fused decode kernel would run,
checked by conformance before that kernel is written (docs/fourier-attention.md, "The token-major plan").
FourierAttention is Liu et al., arXiv 2506.11886; the equations below follow reference/ops/fourier_coefficients.py.

Same function as `fourier_decode_attention` (reference/ops/fourier.py). With Z_n = w_n (u_n - i u'_n) the query
spectrum of a row (reference/ops/fourier_coefficients.py, eq. "scores"), the compressed-K score of middle token
t = t0 + j, j < BLOCK_T, is

    Re sum_n (Z_n e^{i w_n t0}) e^{i w_n j} + q_c . mu_k                                                (tile scores)

the spectrum rotated to the tile's first phase (n t0 reduced mod T in integers) times one fixed [2N x BLOCK_T] basis.
Its rows are (query row, tile) pairs, so a range of tiles fills the M side of a tensor-core product even for the
G = 4 query rows of one KV head. The probabilities' spectrum is the same basis transposed:

    sum_t p_t e^{-i w_n t} = sum_tiles e^{-i w_n t0} sum_j p_j e^{-i w_n j}                              (tile spectrum)

A range of `range_tiles` tiles keeps its own softmax statistics (max, sum), kept-V output and spectrum, like a
split of flash decoding; the ranges and the exact tokens (sinks, local window) merge by log-sum-exp, and the
compressed V channels come from the merged spectrum (eq. "values"). Nothing here is a rebuilt channel.

The two basis products take rounded operands, as tensor cores would: bfloat16 for 16-bit inputs (the rotated
spectrum, the basis and the probabilities; bfloat16 keeps float32's exponent range, so no spectrum overflows),
float32 for float32 inputs (a kernel's 3xTF32), float64 for float64. Everything else is float32
(float64 for float64 inputs). Registered as `tiles` (not benchmarked: a plan, not a kernel).
"""
from __future__ import annotations

import torch

from reference.ops.checks import check_int, check_out
from reference.ops.fourier import check_decode_inputs, dft_basis, dft_weights
from reference.ops.fourier_coefficients import exact_scores, query_operands
from reference.registry import conformance_knobs, register_impl

BLOCK_T = 64  # tokens per tile: the basis is [2N x BLOCK_T]
RANGE_TILES = 16  # tiles per range: a range's (row, tile) pairs are the M side of the basis products


def _round_bf16(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bfloat16, the tensor-core operand of the basis products for 16-bit inputs (bfloat16's float32
    exponent range: a rotated spectrum of any magnitude fits without scaling)."""
    return x.to(torch.bfloat16).to(x.dtype)


def _tile_basis(block_t: int, n: int, period: int, work: torch.dtype, device) -> torch.Tensor:
    """[2n, block_t]: cos(w_n j) rows, then sin(w_n j) rows, j < block_t."""
    cos, sin = dft_basis(torch.arange(block_t, device=device), n, period, torch.float64)
    return torch.cat([cos.T, sin.T]).to(work)


def _rotations(tiles: int, block_t: int, n: int, period: int, work: torch.dtype, device) -> torch.Tensor:
    """complex [tiles, n]: e^{i w_n t0} at each tile's first phase t0 = k * block_t."""
    cos, sin = dft_basis(torch.arange(tiles, device=device) * block_t, n, period, torch.float64)
    return torch.complex(cos, sin).to(torch.complex128 if work == torch.float64 else torch.complex64)


def decode_tiles(q, k_exact, v_exact, n_init, k_args, v_args, mid_len, period, scale, block_t, range_tiles,
                 round_operands: bool):
    """The plan on checked inputs; round_operands: the basis products' operands rounded to bfloat16."""
    rnd = _round_bf16 if round_operands else (lambda x: x)
    b, hq, lq, d = q.shape
    hkv, le = k_exact.shape[1], k_exact.shape[2]
    work, k_args, v_args, plan, q_rows, q_sel = query_operands(q, k_exact, k_args, v_args, scale)
    k_mid, _, _, k_cos, k_sin, k_scale, k_shift = k_args
    v_mid, _, _, v_cos, v_sin, v_scale, v_shift = v_args
    rows = q_rows.shape[2]
    q_k, q_c = q_sel[..., : plan.k_kept], q_sel[..., plan.k_kept:]

    # The exact tokens: one more split (m_e is finite: a sink or the query's own token is always visible).
    s_e = exact_scores(q_rows, k_exact, n_init, lq).reshape(b, hkv * rows, le)
    m_e = s_e.amax(-1)
    p_e = torch.exp(s_e - m_e[..., None])
    l_e = p_e.sum(-1)
    o_e = (p_e.reshape(b, hkv, rows, le) @ v_exact.to(work)).reshape(b, hkv * rows, d)

    tiles = -(-mid_len // block_t)
    ranges = -(-tiles // range_tiles)
    if ranges == 0:  # no middle span
        return (o_e / l_e[..., None]).reshape(b, hq, lq, d).to(q.dtype)
    width = ranges * range_tiles * block_t  # the middle padded to whole ranges; padding is masked out
    s_mid = q_k @ k_mid.transpose(1, 2)  # [B, rows, M]

    def plan_for(num_freqs):  # the frequencies with weight, their tile basis and rotations (K and V may differ)
        n = min(num_freqs, period // 2 + 1)
        return (n, rnd(_tile_basis(block_t, n, period, work, q.device)),
                _rotations(ranges * range_tiles, block_t, n, period, work, q.device))

    if q_c.shape[-1]:
        n, basis, rot = plan_for(k_cos.shape[2])
        qs = q_c * k_scale[:, None, :]
        z = torch.complex(qs @ k_cos[..., :n], -(qs @ k_sin[..., :n])) * dft_weights(n, period, work, q.device)
        a = z[:, :, None, :] * rot  # [B, rows, tiles, n]: (tile scores), rotated to each tile's t0
        s_comp = rnd(torch.cat([a.real, -a.imag], -1)) @ basis  # [B, rows, tiles, block_t]
        s_mid = s_mid + s_comp.flatten(2)[..., :mid_len] + q_c @ k_shift[:, :, None]
    s_mid = torch.nn.functional.pad(s_mid, (0, width - mid_len), value=float("-inf"))
    s_r = s_mid.reshape(b, hkv * rows, ranges, range_tiles * block_t)
    m_r = s_r.amax(-1)  # -inf for a range of padding only
    p_r = torch.exp(s_r - torch.where(torch.isinf(m_r), 0.0, m_r)[..., None])
    l_r = p_r.sum(-1)
    v_pad = torch.nn.functional.pad(v_mid, (0, 0, 0, width - mid_len))
    o_r = torch.einsum("brkw,bkwc->brkc", p_r, v_pad.reshape(b, ranges, range_tiles * block_t, -1))

    m = torch.maximum(m_e, m_r.amax(-1))  # the log-sum-exp merge of the exact split and the ranges
    w_e, w_r = torch.exp(m_e - m), torch.exp(m_r - m[..., None])
    total = l_e * w_e + (l_r * w_r).sum(-1)
    kept = (o_r * w_r[..., None]).sum(2) / total[..., None]  # [B, rows, Ck_v]
    if v_cos.shape[1]:
        n, basis, rot = plan_for(v_cos.shape[2])
        q_t = rnd(p_r.reshape(b, hkv * rows, -1, block_t)) @ basis.T  # [B, rows, tiles, 2n]
        spec_t = torch.complex(q_t[..., :n], -q_t[..., n:]) * rot.conj()  # (tile spectrum)
        spec = (spec_t.reshape(b, hkv * rows, ranges, range_tiles, n).sum(3) * w_r[..., None]).sum(2)
        spec = spec / total[..., None]  # sum_t p_t e^{-i w_n t}, p the softmax over the whole cache
        wn = dft_weights(n, period, work, q.device)
        rec = (spec.real * wn) @ v_cos[..., :n].transpose(1, 2) - (spec.imag * wn) @ v_sin[..., :n].transpose(1, 2)
        mass = ((l_r * w_r).sum(-1) / total)[..., None]  # sum_t p_t over the middle
        kept = torch.cat([kept, rec * v_scale[:, None, :] + mass * v_shift[:, None, :]], -1)
    own = plan.own[None, :, None, :].expand(b, hkv, rows, d)
    out = torch.gather(kept.reshape(b, hkv, rows, -1), 3, own) + (o_e * (w_e / total)[..., None]).reshape(b, hkv, rows, d)
    return out.reshape(b, hq, lq, d).to(q.dtype)


@register_impl("fourier_decode_attention", "tiles", bench=False)  # a plan for a kernel: not benchmarked
@conformance_knobs({"block_t": 4, "range_tiles": 2}, {"block_t": 16, "range_tiles": 1})
def fourier_decode_attention_tiles(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None, out=None, block_t: int = BLOCK_T, range_tiles: int = RANGE_TILES,
):
    """Same contract as reference.ops.fourier.fourier_decode_attention, computed by the token-major plan
    (module docstring); block_t tokens per tile, range_tiles tiles per softmax range."""
    check_int("block_t", block_t, 1)
    check_int("range_tiles", range_tiles, 1)
    check_decode_inputs(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale,
                        k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len,
                        period, scale)
    check_out(out, q.shape, q.dtype, q.device)
    result = decode_tiles(q, k_exact, v_exact, n_init,
                          (k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift),
                          (v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift), mid_len, period,
                          scale, block_t, range_tiles, q.dtype not in (torch.float32, torch.float64))
    return result if out is None else out.copy_(result)
