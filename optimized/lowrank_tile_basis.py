"""The DFT basis of a block of tokens is numerically low-rank: tables for a decode whose Fourier work is a few GEMMs.

For a block of BB tokens starting at t0 = k BB, the coefficient-space decode (docs/fourier-attention.md,
"Decoding: two formulations") needs, per query row,

    scores    S_{t0+j} = Re sum_{n<N} c_n Z_n e^{i w_n t0} E[n, j],        E[n, j] = e^{i w_n j},  w_n = 2 pi n / T
    spectrum  F_n      = sum_k e^{-i w_n t0} sum_j p_{t0+j} conj(E[n, j])

E is N x BB, but where N BB / T is small its singular values fall off faster than exponentially past about
2 N BB / T (the prolate-spheroidal concentration of a band-limited block). With the SVD E = U diag(sigma) V^H
truncated where sigma_r / sigma_1 < tol:

    S_{t0+j} ~ Re sum_rho A_k[rho] conj(V[j, rho]),   A = Z @ W_K,  W_K[n, (k, rho)] = c_n e^{i w_n t0} U[n, rho] sigma_rho
    F_n      ~ sum_(k, rho) conj(W_V[n, (k, rho)]) H_k[rho],   H_k[rho] = sum_j p_{t0+j} V[j, rho]

so the per-token work is two products of rank r (LLaMA-3-8B at 32k, N = 512, BB = 256: r = 15 for tol 1e-8,
against 512 frequencies), and everything of length N is one GEMM per call over all blocks. The phases w_n t0 are
reduced in integers (n t0 mod T) before they become angles, as everywhere in this repository. Tables are float64
until the end and cached per (period, bins, tokens, block, tol).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

TOL = 1e-8  # relative singular-value cut: below float32's own rounding of the GEMMs that use the tables


@dataclass(frozen=True)
class TileBasis:
    """Tables of one (period, bins, block): rank r, padded real width `pad` (2 r rounded up to a power of two >= 16),
    W [bins, blocks * pad / 2] complex (c_n folded in when `weighted`), and the block's real basis `v` [BB, pad]:
    columns 2 rho / 2 rho + 1 are Re / Im V[:, rho] (zero past 2 r)."""
    period: int
    bins: int
    block: int
    blocks: int
    rank: int
    pad: int
    w: torch.Tensor
    v: torch.Tensor


def padded_width(rank: int) -> int:
    """The real width of a rank-r table: 2 r rounded up to a power of two, at least 16."""
    return max(16, 1 << max(0, (2 * rank - 1).bit_length()))


def block_rotations(period: int, bins: int, blocks: int, block: int) -> torch.Tensor:
    """[bins, blocks] complex128: e^{i w_n k block} for n < bins, k < blocks, the phases reduced in integers (n k block
    mod T) before they become angles. With block 1 it is the in-block basis E[n, j] = e^{i w_n j}."""
    n = torch.arange(bins, dtype=torch.int64)[:, None]
    t0 = torch.arange(blocks, dtype=torch.int64)[None, :] * block
    angle = (n * t0 % period).to(torch.float64) * (2 * math.pi / period)
    return torch.polar(torch.ones_like(angle), angle)


@lru_cache(maxsize=64)
def _svd(period: int, bins: int, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e = block_rotations(period, bins, block, 1)
    return canonical_gauge(e, *torch.linalg.svd(e, full_matrices=False))


def canonical_gauge(e: torch.Tensor, u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The SVD e = U diag(s) V^H in one canonical gauge, so the tables do not depend on the LAPACK build. An SVD fixes
    each singular pair only up to a phase (u e^{i phi}, v e^{i phi}), and where all singular values are equal (the
    rows of E orthogonal, as when the block spans whole periods) up to any unitary U. MKL's AVX-512 and SSE paths
    return different ones, and the kernels round the tables to 16 or 32 bits in that gauge, so their errors differed
    by machine (docs/fourier-attention.md, "The basis's gauge"). Canonical: U = I where the rows are orthogonal
    (s is then sqrt(block) exactly, E's entries having modulus 1), else each U column's first entry of (near) largest
    modulus real and positive. A few equal singular values short of all would keep LAPACK's rotation among them."""
    if s.numel() == e.shape[0] and bool(s[-1] >= s[0] * (1 - 1e-12)):
        s = torch.full_like(s, math.sqrt(e.shape[1]))
        return torch.eye(e.shape[0], dtype=e.dtype), s, e / s[:, None]
    mod = u.abs()
    lead = (mod >= mod.amax(dim=0, keepdim=True) * (1 - 1e-9)).to(torch.int64).argmax(dim=0)  # first near-largest
    phase = u[lead, torch.arange(u.shape[1])]
    phase = phase / phase.abs()
    return u * phase.conj()[None, :], s, vh * phase[:, None]


def block_rank(period: int, bins: int, block: int, tol: float = TOL) -> int:
    """Rank of the bins x block DFT basis at relative tolerance `tol` (0 without bins)."""
    if bins == 0:
        return 0
    s = _svd(period, bins, block)[1]
    return int((s > tol * s[0]).sum())


@lru_cache(maxsize=64)
def tile_basis(period: int, bins: int, tokens: int, block: int, weighted: bool, tol: float = TOL,
               pad: int | None = None) -> TileBasis:
    """The tables for `tokens` middle tokens in blocks of `block` (see the module docstring); `weighted` folds the
    inverse real transform's c_n (1 at n = 0 and n = T/2, else 2) into W (the scores' table). `pad`: a wider real
    width than the rank needs (tables of several periods share one). CPU tensors; the caller moves them."""
    if period < 1 or bins < 0 or tokens < 0 or block < 1:
        raise ValueError(f"tile_basis: period {period}, bins {bins}, tokens {tokens}, block {block} out of range")
    blocks = max(1, -(-tokens // block))
    rank = block_rank(period, bins, block, tol)
    width = pad if pad is not None else padded_width(rank)
    if width < 2 * rank or width % 2:
        raise ValueError(f"tile_basis: pad {width} is below 2 x rank {rank} or odd")
    w = torch.zeros(bins, blocks, width // 2, dtype=torch.complex128)
    v = torch.zeros(block, width, dtype=torch.float64)
    if rank:
        u, s, vh = _svd(period, bins, block)
        n = torch.arange(bins, dtype=torch.int64)[:, None]
        rot = block_rotations(period, bins, blocks, block)  # [bins, blocks]: e^{i w_n t0}
        c = torch.where((n == 0) | (2 * n == period), 1.0, 2.0).to(torch.float64) if weighted else torch.ones(bins, 1, dtype=torch.float64)
        w[:, :, :rank] = (c * rot)[:, :, None] * (u[:, :rank] * s[:rank])[:, None, :]
        vr = vh[:rank].conj().transpose(0, 1)  # V [block, rank]
        v[:, 0:2 * rank:2] = vr.real
        v[:, 1:2 * rank:2] = vr.imag
    return TileBasis(period, bins, block, blocks, rank, width, w.reshape(bins, blocks * width // 2).to(torch.complex64),
                     v.to(torch.float32))
