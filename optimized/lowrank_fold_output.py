"""The low-rank decode's output launch with the coefficient folds (`folds`): each KV head's kept V channels and its
compressed ones, from the splits and the merge's partial sums, with no load waiting on an index search.

Programs (bh, j < n_kept) take BLOCK_K of KV head bh's kept V channels: the exact and middle splits merged by
log-sum-exp, / l. Programs (bh, n_kept + j) take BLOCK_C of its compressed channels: the exact splits / l plus the
channels' sums over frequencies, which are the merge's partial sums of H @ FoldV (eq. values, folded), plus the
n = 0 bin and moment matching (`compressed_out`). The channels come as slots of the head's kept or compressed run,
so the middle's accumulators (by kept slot) and the partial sums (by compressed slot) are read at addresses known
from the program ids; only the exact accumulators and the coefficients wait on the slots' dimensions
(`output_tables`). Every sum over splits or parts is one tile (optimized/lowrank_split_tiles.py), and the rows are
the head's G x Lq padded to a power of two, not the 16 a dot would need.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from optimized.lowrank_programs import after_predecessor, head_of
from optimized.lowrank_split_tiles import acc_tile, part_sums, part_tile, split_sums


@triton.jit
def compressed_channels(rec, p_mid, w0a0, sc, sh, comp):
    """The compressed V channels' share of the output from their sums over frequencies rec (eq. values): F's n = 0
    bin is the middle's exact probability mass p_mid (W_V^H has no n = 0 column; w0a0 = a'_0 / T), then moment
    matching (scale sc, shift sh)."""
    rec += p_mid[:, None] * w0a0[None, :]  # w_0 a'_0 F_0
    return tl.where(comp[None, :], rec * sc[None, :] + p_mid[:, None] * sh[None, :], 0.0)


@triton.jit
def channel_constants(ci, comp, b, VCOS, VSC, VSH, Ccv, Nv):
    """Sequence b's compressed V channels ci (where comp): their n = 0 coefficients a'_0, moment-matching scales and
    shifts, in float32."""
    a0 = tl.load(VCOS + b * Ccv * Nv + ci * Nv, mask=comp, other=0.0).to(tl.float32)
    sc = tl.load(VSC + b * Ccv + ci, mask=comp, other=0.0).to(tl.float32)
    sh = tl.load(VSH + b * Ccv + ci, mask=comp, other=0.0).to(tl.float32)
    return a0, sc, sh


@triton.jit
def compressed_out(rec, p_mid, ci, comp, b, VCOS, VSC, VSH, Ccv, Nv, period):
    """`compressed_channels` with the channels' constants loaded at their compressed indices ci
    (`channel_constants`)."""
    a0, sc, sh = channel_constants(ci, comp, b, VCOS, VSC, VSH, Ccv, Nv)
    return compressed_channels(rec, p_mid, a0 / period, sc, sh, comp)


@triton.jit
def fold_output_kernel(
    ACCE, MAXE, ACCM, MAXM, M, L, MID, PF, KDIM, CDIM, CIDX, VCOS, VSC, VSH, OUT, LENS,
    sob, soh, sol, sod, Hkv, Ccv, Nv, period, esplits, msplits, n_parts, n_kept, k_width, c_width,
    G: tl.constexpr, LQ: tl.constexpr, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_VD: tl.constexpr, BLOCK_CV: tl.constexpr, RB: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_SE: tl.constexpr, STEPS_E: tl.constexpr, BLOCK_SM: tl.constexpr, STEPS_M: tl.constexpr,
    BLOCK_P: tl.constexpr, STEPS_P: tl.constexpr, PDL: tl.constexpr = False, PDL_EARLY: tl.constexpr = True,
):
    """out[b, head bh's rows, the program's channels] (module docstring). KDIM [Hkv, k_width] and CDIM, CIDX
    [Hkv, c_width]: each head's kept and compressed V slots' dimensions (-1 past the run) and the compressed ones'
    indices. PDL: launched with programmatic dependent launch."""
    after_predecessor(PDL, PDL_EARLY)
    bh = tl.program_id(0)
    j = tl.program_id(1)
    b, h, per, rows, row_ok = head_of(bh, LENS, Hkv, period, G * LQ, VARLEN, RB)
    grow = bh * G * LQ + rows  # b * n_rows + h * G * LQ + row
    m = tl.load(M + grow, mask=row_ok, other=0.0)
    l_tot = tl.load(L + grow, mask=row_ok, other=1.0)
    o_rows = OUT + b * sob + (h * G + rows // LQ)[:, None] * soh + (rows % LQ)[:, None] * sol
    if j < n_kept:
        slots = j * BLOCK_K + tl.arange(0, BLOCK_K)
        dims = tl.load(KDIM + h * k_width + slots)
        m_mx, m_acc = acc_tile(ACCM, MAXM, bh, msplits, 0, rows, row_ok, slots, slots < BLOCK_VD, BLOCK_M, BLOCK_VD,
                               BLOCK_SM)
        ok = dims >= 0
        e_mx, e_acc = acc_tile(ACCE, MAXE, bh, esplits, 0, rows, row_ok, dims, ok, BLOCK_M, BLOCK_D, BLOCK_SE)
        out = split_sums(ACCM, MAXM, bh, msplits, m, rows, row_ok, slots, slots < BLOCK_VD, m_mx, m_acc, BLOCK_M,
                         BLOCK_VD, BLOCK_SM, STEPS_M)
        out += split_sums(ACCE, MAXE, bh, esplits, m, rows, row_ok, dims, ok, e_mx, e_acc, BLOCK_M, BLOCK_D, BLOCK_SE,
                          STEPS_E)
        out = out / l_tot[:, None]
        tl.store(o_rows + dims[None, :] * sod, out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & ok[None, :])
    else:
        # (names of their own: a runtime branch's values must match the other branch's shapes)
        c_slots = (j - n_kept) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_dims = tl.load(CDIM + h * c_width + c_slots)
        ci = tl.load(CIDX + h * c_width + c_slots)
        p_mid = tl.load(MID + grow, mask=row_ok, other=0.0)  # F_0: the middle's mass, exact
        parts = part_tile(PF, bh, n_parts, 0, rows, row_ok, c_slots, c_slots < BLOCK_CV, BLOCK_M, BLOCK_CV, BLOCK_P)
        c_ok = c_dims >= 0
        c_mx, c_acc = acc_tile(ACCE, MAXE, bh, esplits, 0, rows, row_ok, c_dims, c_ok, BLOCK_M, BLOCK_D, BLOCK_SE)
        a0, sc, sh = channel_constants(ci, c_ok, b, VCOS, VSC, VSH, Ccv, Nv)  # loaded before the first reduction
        sums = part_sums(PF, bh, n_parts, rows, row_ok, c_slots, c_slots < BLOCK_CV, parts, BLOCK_M, BLOCK_CV, BLOCK_P,
                         STEPS_P)
        c_out = split_sums(ACCE, MAXE, bh, esplits, m, rows, row_ok, c_dims, c_ok, c_mx, c_acc, BLOCK_M, BLOCK_D,
                           BLOCK_SE, STEPS_E) / l_tot[:, None]
        c_out += compressed_channels(sums, p_mid, a0 / per, sc, sh, c_ok)
        tl.store(o_rows + c_dims[None, :] * sod, c_out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & c_ok[None, :])


def output_tables(kept: list[int], comp: list[int], hkv: int, d: int, block_k: int, block_c: int,
                  device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(KDIM [hkv, k_width], CDIM and CIDX [hkv, c_width]) int32 from the sorted kept and compressed V channel
    lists: slot j of head h is the head's j-th kept (compressed) channel, its dimension within the head (-1 past the
    head's run), and for a compressed slot its index in the compressed list; widths are multiples of the blocks."""
    runs_k = [[c - h * d for c in kept if c // d == h] for h in range(hkv)]
    runs_c = [[(i, c - h * d) for i, c in enumerate(comp) if c // d == h] for h in range(hkv)]
    k_width = max(1, triton.cdiv(max(map(len, runs_k)), block_k)) * block_k
    c_width = max(1, triton.cdiv(max(map(len, runs_c)), block_c)) * block_c
    kdim = torch.full((hkv, k_width), -1, dtype=torch.int32)
    cdim = torch.full((hkv, c_width), -1, dtype=torch.int32)
    cidx = torch.zeros((hkv, c_width), dtype=torch.int32)
    for h in range(hkv):
        kdim[h, :len(runs_k[h])] = torch.tensor(runs_k[h], dtype=torch.int32)
        if runs_c[h]:
            idx, dims = zip(*runs_c[h])
            cidx[h, :len(idx)] = torch.tensor(idx, dtype=torch.int32)
            cdim[h, :len(dims)] = torch.tensor(dims, dtype=torch.int32)
    return kdim.to(device), cdim.to(device), cidx.to(device)
