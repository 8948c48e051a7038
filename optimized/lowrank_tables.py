"""The low-rank decode's per-period tables (optimized/triton_fourier_lowrank.py): W_K, W_V^H and the block bases
VK, VV (`period_tables`), and the weighted planes' table (`planes_table`), each made once per period and device.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from optimized.lowrank_tile_basis import TOL, tile_basis
from reference.ops.fourier import dft_weights


@lru_cache(maxsize=8)
def period_tables(period: int, nz: int, nv: int, tokens: int, block: int, pk: int, pv: int, device: str):
    """(W_K, W_V^H, VK, VV) of one period on `device`, kept across calls (a decode step's plan copies no tables).
    The n = 0 bins are exact elsewhere (Re Z_0 in `_middle_kernel`, the middle's mass in `_output_kernel`), so W_K
    has no n = 0 row and W_V^H no n = 0 column."""
    tk = tile_basis(period, nz, tokens, block, True, TOL, pk)
    tv = tile_basis(period, nv, tokens, block, False, TOL, pv)
    w_k, w_vh = tk.w.clone(), tv.w.conj().transpose(0, 1).contiguous()
    w_k[:1] = 0
    w_vh[:, :1] = 0
    return w_k.to(device), w_vh.to(device), tk.v.to(device), tv.v.to(device)


@lru_cache(maxsize=8)
def planes_table(period: int, nv: int, tokens: int, block: int, pv: int, width: int, device: str) -> torch.Tensor:
    """The real [2 M, 2 width] table that takes H (M complex entries per row, re and im interleaved) to the weighted
    planes [w_n Re F_n | w_n Im F_n] (each half `width` >= nv wide, zero past nv), w_n the inverse real transform's
    weights (eq. values): F = H W_V^H and its weighting as one real GEMM. float32; twice W_V^H's bytes."""
    w_vh = period_tables(period, 0, nv, tokens, block, 16, pv, "cpu")[1].resolve_conj()
    w = dft_weights(nv, period, torch.float32)
    re, im = w_vh.real * w, w_vh.imag * w
    table = torch.zeros(2 * w_vh.shape[0], 2 * width, dtype=torch.float32)
    table[0::2, :nv], table[0::2, width:width + nv] = re, im
    table[1::2, :nv], table[1::2, width:width + nv] = -im, re
    return table.to(device)
