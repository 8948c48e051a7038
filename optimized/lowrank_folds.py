"""The low-rank kernel's coefficient folds (`folds`): each sequence's Fourier coefficients multiplied once by the
block tables, so a decode step needs no GEMM between its Triton launches.

With the block tables of `triton_fourier_lowrank` (W_K [n, (k, rho)], the planes table T [(k, rho), n]), the
step's two products over frequencies are
- scores (eq. scores, factored): A = Z W_K with Z_n = sum_c (q_c s_c / T) (a_{c,n} - i b_{c,n}), so
  A = sum_c (q_c s_c / T) FoldK[c], FoldK[c] = (a_c - i b_c) W_K, a [C_k, 2 M] real table per sequence;
- values (eq. values): the compressed channel's sum over frequencies is planes a'^T - ... with planes = H T, so it
  is H FoldV[c], FoldV[c] = T_re a'_c - T_im b'_c, a [C_v, 2 M'] real table per sequence.
The folds depend on the cache and the block only, not on the query: they are made once per cache, as the
coefficients are, and stand in for the coefficients and the tables in the step. The step reads FoldK by dimension
(`k_fold_dims`): each compressed channel's row at its dimension, times s_c / T, and zeros at the kept ones, so the
prologue multiplies the head's query as it is, with no channel list to walk and no gather. Per sequence that holds
D x Hkv x blocks x PK values for K and C_v x blocks x PV for V (each block's rank padded to 64): at 1 x 128k
(2048-token blocks) FoldK by dimension 16.8 MB and FoldV 13.6 MB in float32, against 6.4 MB of float32 coefficients
and the per-period tables the step no longer reads. The plan's default (`fold_precs`) stores FoldK in bfloat16 for
16-bit inputs, and FoldV too for bfloat16 inputs (float16 keeps it in float32, TF32 products).

`fold_products` is the prologue's part (A and Re Z_0 for one KV head and one tile of A's columns);
`fold_partials` the merge's (each merge program's columns of the rescaled H against the head's FoldV, so the sum
over H's columns is split over as many programs as the merge has); the output adds those partial sums
(optimized/lowrank_fold_output.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from optimized.triton_fourier_tiles import bf16_rounded, tf32_cut

FOLD_PRECS = ("ieee", "tf32", "bf16")


def k_fold(k_cos: torch.Tensor, k_sin: torch.Tensor, w_k: torch.Tensor) -> torch.Tensor:
    """FoldK [S, C_k, 2 M] (float64) of S sequences' K coefficients [S, C_k, >= nz] and a period's W_K [nz, M]
    (complex; its n = 0 row is zero): the real view of (a - i b) W_K, re and im interleaved as the stream reads A
    (A = P_c - i P_s: Re A = Re P_c + Im P_s, Im A = Im P_c - Re P_s)."""
    nz = w_k.shape[0]
    w = torch.view_as_real(w_k.resolve_conj()).flatten(1).double()
    p_c = k_cos[:, :, :nz].double() @ w
    p_s = k_sin[:, :, :nz].double() @ w
    swapped = p_s.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # P_s at the partner column j ^ 1
    sign = torch.ones(2, dtype=torch.float64, device=w.device)
    sign[1] = -1.0
    return p_c + sign.repeat(w.shape[1] // 2) * swapped


def v_fold(v_cos: torch.Tensor, v_sin: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """FoldV [S, C_v, 2 M'] (float64) of S sequences' V coefficients [S, C_v, N_v] and a period's planes table
    [2 M', 2 width] (H to [w Re F | w Im F]): the compressed channel's sum (w Re F) a'^T - (w Im F) b'^T as one
    product with H."""
    width = table.shape[1] // 2
    cols = min(width, v_cos.shape[2])
    t = table.double()
    return (v_cos[:, :, :cols].double() @ t[:, :cols].T - v_sin[:, :, :cols].double() @ t[:, width:width + cols].T)


def k_fold_dims(fold: torch.Tensor, comp: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, a0: torch.Tensor,
                periods: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(FoldK by dimension [S, channels, cols], z [S, channels]), float64, from FoldK [S, C_k, cols] and the
    compressed K channels' dimensions `comp`, moment-matching scales s and shifts mu [S, C_k], n = 0 coefficients a0
    [S, C_k] and the sequences' periods T [S]: channel c's row moves to its dimension times s_c / T, and
    z_c = mu_c + s_c a_{c,0} / T; kept dimensions hold zeros. Then A = q @ FoldK_dims and Re Z_0 = q . z over all
    of a KV head's dimensions (eq. scores), with nothing to gather."""
    scaled = scale.double() / periods.double()[:, None]
    rows = fold.new_zeros(fold.shape[0], channels, fold.shape[2])
    rows[:, comp] = fold * scaled[:, :, None]
    z = fold.new_zeros(fold.shape[0], channels)
    z[:, comp] = shift.double() + scaled * a0.double()
    return rows, z


def stored_fold(fold: torch.Tensor, prec: str, gpu: bool) -> torch.Tensor:
    """A fold as the kernels read it: bfloat16 on a GPU for "bf16" (the interpreter keeps float32 values rounded
    to bfloat16, its stand-in), else float32."""
    if prec not in FOLD_PRECS:
        raise ValueError(f"fold precision must be one of {FOLD_PRECS}, got {prec!r}")
    f32 = fold.float().contiguous()
    if prec != "bf16":
        return f32
    return f32.to(torch.bfloat16) if gpu else f32.to(torch.bfloat16).float()


@triton.jit
def fold_operands(x, y, FDT: tl.constexpr, EMUL_BF16: tl.constexpr, EMUL_TF32: tl.constexpr):
    """The dot operands in the fold's precision: FDT on a GPU (bfloat16 or float32), and in the interpreter x
    rounded to bfloat16 (y is stored so) or both cut to TF32, as the tensor cores would."""
    if EMUL_BF16:
        x = bf16_rounded(x)
    if EMUL_TF32:
        x = tf32_cut(x)
        y = tf32_cut(y)
    return x.to(FDT), y.to(FDT)


@triton.jit
def fold_products(Q, FOLDK, ZK, A, Z0, sqb, sqh, sql, sqd, sfb, sfc, szb, sab, sar, n_cols, n_rows, b, h, rows,
                  row_ok, tile, G: tl.constexpr, LQ: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, FDT: tl.constexpr, PREC: tl.constexpr,
                  EMUL_BF16: tl.constexpr, EMUL_TF32: tl.constexpr):
    """A[b, rows, tile] = q @ FoldK_dims[b, KV head h's D dimensions, tile] for the head's G * LQ rows (eq. scores,
    folded by `k_fold_dims`) as one product over the head's dimensions (BLOCK_D of them, padded), and from the first
    tile Re Z_0 = q . z in float32. Every address comes from the program's ids, so no load waits on another (the
    compressed list's walk had a channel-list load, then the query gathered at it, per step)."""
    js = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    j_ok = js < n_cols
    ds = tl.arange(0, BLOCK_D)
    d_ok = ds < D
    q = tl.load(Q + b * sqb + (h * G + rows // LQ)[:, None] * sqh + (rows % LQ)[:, None] * sql + ds[None, :] * sqd,
                mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
    z = tl.load(ZK + b * szb + h * D + ds, mask=d_ok, other=0.0)
    f = tl.load(FOLDK + b * sfb + (h * D + ds)[:, None] * sfc + js[None, :], mask=d_ok[:, None] & j_ok[None, :],
                other=0.0)
    x, y = fold_operands(q, f, FDT, EMUL_BF16, EMUL_TF32)
    grow = h * G * LQ + rows
    tl.store(A + b * sab + grow[:, None] * sar + js[None, :], tl.dot(x, y, input_precision=PREC),
             mask=row_ok[:, None] & j_ok[None, :])
    tl.store(Z0 + b * n_rows + grow, tl.sum(q * z[None, :], 1), mask=row_ok & ((tl.zeros_like(rows) + tile) == 0))


@triton.jit
def fold_rows(FOLDV, b, c_lo, c_hi, js, j_ok, sfvb, sfvc, BLOCK_CV: tl.constexpr):
    """FoldV[b, c_lo .. c_hi, js]^T: a merge program's columns js of the folds of one KV head's compressed V
    channels, [js, BLOCK_CV] (0 past the head's run)."""
    cs = c_lo + tl.arange(0, BLOCK_CV)
    return tl.load(FOLDV + b * sfvb + cs[None, :] * sfvc + js[:, None], mask=j_ok[:, None] & (cs < c_hi)[None, :],
                   other=0.0)


@triton.jit
def fold_partials(hs, f, FDT: tl.constexpr, PREC: tl.constexpr, EMUL_BF16: tl.constexpr, EMUL_TF32: tl.constexpr):
    """hs @ f (eq. values, folded): one merge program's share of the compressed V channels' sums, from its columns
    of the rescaled H (hs, float32, [rows, js]) and those columns' folds (`fold_rows`)."""
    x, y = fold_operands(hs, f, FDT, EMUL_BF16, EMUL_TF32)
    return tl.dot(x, y, input_precision=PREC)
