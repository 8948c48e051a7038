"""The low-rank kernel's short-middle path (`dense_rows`): the middle rebuilt once per cache, then plain flash decoding.

A block of BB middle tokens is factored through its DFT basis, whose numerical rank is about 2 N BB / T plus a few
(optimized/lowrank_tile_basis.py). Where N is a large fraction of T (1 x 4k in the benchmark: N = 512, T = 3072,
blocks of 64 tokens at real rank width 64) that factorization has as many columns per block as the block has
tokens: the coefficient folds (optimized/lowrank_folds.py) are then the reconstruction itself in another basis,
with no fewer bytes, read in four launches. There the plan stores the rows the folds stand for instead: each
middle token's kept channels and its compressed channels rebuilt and moment matched (x_hat' = scale x_hat + shift,
as reference/ops/fourier.py's `assemble` does) in the queries' dtype, and a step is one flash-decoding pass
(optimized/triton_decode_attention.py: a split launch and its merge) over [middle; sinks + window].

Like the folds, the rows depend on the cache only, not on the query: they are made once per cache and stand in for
the coefficients in the step. Softmax is the same over any order of the keys; the middle goes first so the newest
Lq tokens, the queries' own (bottom-right causal among themselves), stay last.

`dense_rows_pay` is the rule, `dense_by_default` the plan's default; `dense_rows` makes the rows. The rebuild here
is an inverse FFT of length T in float64 (X_n = w_n (a_n - i b_n), x_hat_t = Re sum_n X_n e^{i 2 pi n t / T}), not
the reference's cosine and sine tables (the weights w_n are the reference's), so conformance checks one against the
other.
"""
from __future__ import annotations

import torch

from reference.ops.fourier import dft_weights


def dense_rows_pay(block: int, pk: int, pv: int) -> bool:
    """Whether a block's K and V bases are at least as wide (real columns, `padded_width`) as the block is long: the
    folds then hold no fewer values than the rows they stand for."""
    return min(pk, pv) >= block


def dense_by_default(gpu: bool, folds: bool | None, kept_plan: bool, block: int, pk: int, pv: int) -> bool:
    """A plan's default: the rows on a GPU, for a plan kept across steps that would take the folds by default
    (`kept_plan`, `folds` not set), where they pay. The interpreter's plans keep the low-rank path, which their
    conformance checks; the rows' conformance asks for them. Every plan's G x Lq query rows per KV head fit the
    flash-decoding kernel's tile: both hold at most 128 (MAX_ROWS of optimized/triton_fourier.py and of
    optimized/triton_decode_attention.py)."""
    return gpu and folds is None and kept_plan and dense_rows_pay(block, pk, pv)


def rebuilt(c_cos: torch.Tensor, c_sin: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, length: int,
            period: int) -> torch.Tensor:
    """One sequence's compressed channels at span positions 0..length-1: [length, C] float64, from its coefficients
    (c_cos, c_sin [C, N]) and moment statistics (scale, shift [C]). The orthogonal real DFT's weights w_n
    (`dft_weights`), which are 0 above T/2, so only those bins enter."""
    bins = min(c_cos.shape[1], period // 2 + 1)
    w = dft_weights(bins, period, torch.float64, c_cos.device)
    spectrum = torch.zeros(c_cos.shape[0], period, dtype=torch.complex128, device=c_cos.device)
    spectrum[:, :bins] = torch.complex(c_cos[:, :bins].double(), -c_sin[:, :bins].double()) * w
    x_hat = (torch.fft.ifft(spectrum, dim=1) * period).real[:, :length]
    return (x_hat * scale.double()[:, None] + shift.double()[:, None]).T


def middle_rows(side, b: int, length: int, period: int, hkv: int, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Sequence b's middle [Hkv, length, D] in `dtype`: the kept channels as stored, the compressed ones rebuilt
    (`rebuilt`). `side` is the plan's CacheTensors of K or V (optimized/fourier_plans.py)."""
    rows = torch.empty(length, hkv * d, dtype=torch.float64, device=side.mid.device)
    rows[:, side.kept] = side.mid[b, :length].double()
    if side.compressed:
        rows[:, side.comp] = rebuilt(side.cos[b], side.sin[b], side.scale[b], side.shift[b], length, period)
    return rows.to(dtype).view(length, hkv, d).transpose(0, 1)


def dense_rows(k_side, v_side, k_exact: torch.Tensor, v_exact: torch.Tensor, exact_lens: list[int],
               mid_lens: list[int], periods: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K rows, V rows, seq_lens) for `decode_attention_triton`: sequence b's rows are its middle (mid_lens[b]
    tokens, period periods[b]) then its exact tokens (exact_lens[b]: the sinks, then the window), [B, Hkv, Lmax, D]
    in k_exact's dtype with zeros past seq_lens[b] = mid_lens[b] + exact_lens[b]."""
    b, hkv, _, d = k_exact.shape
    lens = [m + e for m, e in zip(mid_lens, exact_lens)]
    k_rows = k_exact.new_zeros(b, hkv, max(lens), d)
    v_rows = torch.zeros_like(k_rows)
    for i, (m, e, p) in enumerate(zip(mid_lens, exact_lens, periods)):
        for side, exact, out in ((k_side, k_exact, k_rows), (v_side, v_exact, v_rows)):
            out[i, :, :m] = middle_rows(side, i, m, p, hkv, d, out.dtype)
            out[i, :, m:m + e] = exact[i, :, :e]
    return k_rows, v_rows, torch.tensor(lens, dtype=torch.long, device=k_exact.device)
