"""A plain float32 Triton GEMM for the low-rank kernel's two table products, with tiles a sweep can choose.

cuBLAS picks its tiles for large GEMMs. The low-rank kernel's table products are small and skinny: at 8 x 32k
(LLaMA-3-8B) A = [U_c; U_s] W_K is [512 x 512] @ [512 x 1984] and v_gemm's planes are [256 x 992] @ [992 x 1024].
On the H100 cuBLAS took 11.3 us for the first (64 x 128 tiles, 0.8 TB/s on 9 MB) and 11.2 + 3.2 us for the
second (64 x 256 tiles: 16 programs for 132 SMs, then a split-K reduction). Tiles of 32 x 64 give the second 128
programs. Y = X @ W, each program one [BLOCK_M, BLOCK_N] tile of Y over the whole K; TF32 tensor cores for "tf32"
(in the interpreter both operands are cut to TF32's 10 mantissa bits first, as `tf32_cut`), float32 FMA for "ieee".
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from reference.ops.checks import check_block, check_int

PRECS = ("ieee", "tf32")


@triton.jit
def tf32_cut(x):
    """float32 x with its mantissa cut to TF32's 10 bits (truncation): the interpreter's stand-in for a tensor
    core's conversion of a dot operand."""
    return (x.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)


@triton.jit
def _gemm_kernel(X, W, Y, M, N, K, sxm, sxk, swk, swn, sym, syn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, PREC: tl.constexpr, EMUL_TF32: tl.constexpr):
    """Y[m-tile, n-tile] = sum_k X[m-tile, k] W[k, n-tile] in float32 (program axis 0: m tiles, 1: n tiles)."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok, n_ok = rm < M, rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        x = tl.load(X + rm[:, None] * sxm + rk[None, :] * sxk, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(W + rk[:, None] * swk + rn[None, :] * swn, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if EMUL_TF32:
            x = tf32_cut(x)
            w = tf32_cut(w)
        acc = tl.dot(x, w, acc, input_precision=PREC)
    tl.store(Y + rm[:, None] * sym + rn[None, :] * syn, acc, mask=m_ok[:, None] & n_ok[None, :])


def rows_2d(t: torch.Tensor) -> torch.Tensor | None:
    """t's leading dims folded into rows, as a strided [rows, cols] view of the same memory; None where the
    strides do not allow it (the caller falls back to cuBLAS)."""
    if t.dim() < 2:
        return None
    for i in range(t.dim() - 2):
        if t.shape[i] > 1 and t.stride(i) != t.stride(i + 1) * t.shape[i + 1]:
            return None
    rows = t.numel() // max(t.shape[-1], 1)
    return t.as_strided((rows, t.shape[-1]), (t.stride(-2), t.stride(-1)))


def check_tiles(name: str, tiles) -> tuple[int, int, int, int, int]:
    """`tiles` as (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages), each block a power of two >= 16."""
    if not isinstance(tiles, (tuple, list)) or len(tiles) != 5:
        raise ValueError(f"{name} must be (block_m, block_n, block_k, num_warps, num_stages), got {tiles!r}")
    for part, v in zip(("block_m", "block_n", "block_k"), tiles[:3]):
        check_block(f"{name}.{part}", v)
    check_int(f"{name}.num_warps", tiles[3], 1)
    check_int(f"{name}.num_stages", tiles[4], 1)
    return tuple(int(v) for v in tiles)


def gemm_into(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, prec: str, tiles) -> bool:
    """out = x @ w for float32 x [..., K], w [K, N], out [..., N] whose leading dims fold into rows (`rows_2d`), in
    precision `prec` (PRECS) with `tiles` (`check_tiles`). False, and nothing launched, where they do not fold."""
    if prec not in PRECS:
        raise ValueError(f"prec must be one of {PRECS}, got {prec!r}")
    for name, t in (("x", x), ("w", w), ("out", out)):
        if t.dtype != torch.float32:
            raise ValueError(f"gemm_into: {name} must be float32, got {t.dtype}")
    if w.dim() != 2 or x.shape[-1] != w.shape[0] or out.shape[-1] != w.shape[1] or x.shape[:-1] != out.shape[:-1]:
        raise ValueError(f"gemm_into: shapes x {tuple(x.shape)}, w {tuple(w.shape)}, out {tuple(out.shape)} do not "
                         "make out = x @ w")
    bm, bn, bk, warps, stages = check_tiles("tiles", tiles)
    x2, y2 = rows_2d(x), rows_2d(out)
    if x2 is None or y2 is None:
        return False
    (m, k), n = x2.shape, w.shape[1]
    tf32, gpu = prec == "tf32", x.is_cuda
    _gemm_kernel[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
        x2, w, y2, m, n, k, *x2.stride(), *w.stride(), *y2.stride(), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        PREC="tf32" if tf32 and gpu else "ieee", EMUL_TF32=tf32 and not gpu, num_warps=warps, num_stages=stages)
    return True
