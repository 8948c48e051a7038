"""Sums over a decode's splits read as whole tiles, so no load waits on the one before it.

A split-K decode leaves per split s a row maximum m_s, a row sum l_s and an accumulator acc_s; merging them is
m = max_s m_s, l = sum_s e^{m_s - m} l_s, out = sum_s e^{m_s - m} acc_s / l (log-sum-exp). At batch 1 the merging
kernels are latency-bound (Nsight Compute: under one wave, 2-25% of DRAM's peak), and a loop of one load per split
is a chain of as many round trips to L2. Here every split's entries come in [BLOCK_S, rows(, columns)] tiles over
STEPS unrolled steps (`tile_steps`): all their addresses are known at the start, so the loads are in flight together.
A kernel issues tile 0 of each sum itself, before its first reduction: a reduction across warps synchronizes the
program, and the compiler moves no load across that barrier.
"""
from __future__ import annotations

import triton
import triton.language as tl


def tile_steps(n: int, cap: int) -> tuple[int, int]:
    """(BLOCK_S, STEPS) for n splits: tiles of the next power of two >= n, at most `cap`, and as many of them."""
    block = min(cap, triton.next_power_of_2(max(n, 1)))
    return block, triton.cdiv(max(n, 1), block)


@triton.jit
def stats_tile(MAX, SUM, bh, n_splits, step, rows, BLOCK_M: tl.constexpr, BLOCK_S: tl.constexpr):
    """Tile `step` of the splits' row maxima and sums of program bh (MAX, SUM [part, BLOCK_M]): two [BLOCK_S, rows]
    tensors, -1e30 and 0 past the last split."""
    ss = step * BLOCK_S + tl.arange(0, BLOCK_S)
    off = (bh * n_splits + ss)[:, None] * BLOCK_M + rows[None, :]
    ok = (ss < n_splits)[:, None]
    return tl.load(MAX + off, mask=ok, other=-1.0e30), tl.load(SUM + off, mask=ok, other=0.0)


@triton.jit
def stats_folded(mx, sm, m, l_tot):
    """(m, l) after one more tile of splits, online: m' = max(m, max_s m_s), l' = l e^{m - m'} + sum_s e^{m_s - m'} l_s
    (a masked split adds e^{-1e30 - m'} 0 = 0, or 1 x 0 while every split so far is empty)."""
    m_new = tl.maximum(m, tl.max(mx, 0))
    return m_new, l_tot * tl.exp(m - m_new) + tl.sum(tl.exp(mx - m_new[None, :]) * sm, 0)


@triton.jit
def merged_stats_tiled(MAX, SUM, bh, n_splits, rows, mx, sm, BLOCK_M: tl.constexpr, BLOCK_S: tl.constexpr,
                       STEPS: tl.constexpr):
    """(m, l) per row over the n_splits splits of program bh: m = max_s m_s, l = sum_s e^{m_s - m} l_s (1 where it
    is 0: an empty middle). The caller loads tile 0 (mx, sm: `stats_tile`) with its other loads; the STEPS - 1
    further tiles, if any, are loaded here."""
    m, l_tot = stats_folded(mx, sm, tl.full((rows.shape[0],), -1.0e30, dtype=tl.float32),
                            tl.zeros((rows.shape[0],), dtype=tl.float32))
    for step in tl.static_range(1, STEPS):
        mx, sm = stats_tile(MAX, SUM, bh, n_splits, step, rows, BLOCK_M, BLOCK_S)
        m, l_tot = stats_folded(mx, sm, m, l_tot)
    return m, tl.where(l_tot > 0, l_tot, 1.0)


@triton.jit
def acc_tile(ACC, MAX, bh, n_splits, step, rows, row_ok, cols, col_ok, BLOCK_M: tl.constexpr, WIDTH: tl.constexpr,
             BLOCK_S: tl.constexpr):
    """Tile `step` of the splits' row maxima [BLOCK_S, rows] and accumulators acc_s[rows, cols] [BLOCK_S, rows,
    cols] of program bh (MAX [part, BLOCK_M], ACC [part, BLOCK_M, WIDTH]); -1e30 and 0 where masked."""
    ss = step * BLOCK_S + tl.arange(0, BLOCK_S)
    slot = (bh * n_splits + ss)[:, None] * BLOCK_M + rows[None, :]
    rs = (ss < n_splits)[:, None] & row_ok[None, :]
    mx = tl.load(MAX + slot, mask=rs, other=-1.0e30)
    a = tl.load(ACC + slot[:, :, None] * WIDTH + cols[None, None, :], mask=rs[:, :, None] & col_ok[None, None, :],
                other=0.0)
    return mx, a


@triton.jit
def split_sums(ACC, MAX, bh, n_splits, m, rows, row_ok, cols, col_ok, mx, a, BLOCK_M: tl.constexpr,
               WIDTH: tl.constexpr, BLOCK_S: tl.constexpr, STEPS: tl.constexpr):
    """sum_s e^{m_s - m} acc_s[rows, cols] over the n_splits splits of program bh: the splits' share of the output
    before / l. The caller loads tile 0 (mx, a: `acc_tile`) with its other loads; further tiles are loaded here."""
    acc = tl.sum(tl.exp(mx - m[None, :])[:, :, None] * a, 0)
    for step in tl.static_range(1, STEPS):
        mx, a = acc_tile(ACC, MAX, bh, n_splits, step, rows, row_ok, cols, col_ok, BLOCK_M, WIDTH, BLOCK_S)
        acc += tl.sum(tl.exp(mx - m[None, :])[:, :, None] * a, 0)
    return acc


@triton.jit
def part_tile(PART, bh, n_parts, step, rows, row_ok, cols, col_ok, BLOCK_M: tl.constexpr, WIDTH: tl.constexpr,
              BLOCK_S: tl.constexpr):
    """Tile `step` of program bh's partial sums part[rows, cols] (PART [program, part, BLOCK_M, WIDTH]), 0 where
    masked: [BLOCK_S, rows, cols]."""
    ps = step * BLOCK_S + tl.arange(0, BLOCK_S)
    at = ((bh * n_parts + ps)[:, None, None] * BLOCK_M + rows[None, :, None]) * WIDTH + cols[None, None, :]
    ok = (ps < n_parts)[:, None, None] & row_ok[None, :, None] & col_ok[None, None, :]
    return tl.load(PART + at, mask=ok, other=0.0)


@triton.jit
def part_sums(PART, bh, n_parts, rows, row_ok, cols, col_ok, parts, BLOCK_M: tl.constexpr, WIDTH: tl.constexpr,
              BLOCK_S: tl.constexpr, STEPS: tl.constexpr):
    """The sum of program bh's n_parts partial sums (on one scale already, so unweighted), tile 0 (`part_tile`)
    loaded by the caller."""
    acc = tl.sum(parts, 0)
    for step in tl.static_range(1, STEPS):
        acc += tl.sum(part_tile(PART, bh, n_parts, step, rows, row_ok, cols, col_ok, BLOCK_M, WIDTH, BLOCK_S), 0)
    return acc
