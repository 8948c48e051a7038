"""The low-rank block bases of `optimized/lowrank_tile_basis.py` against the direct transforms, in float64.

The factored scores Re(Z W_K) V^T and spectrum (P V) W_V^H must equal the direct sums over all N frequencies to the
SVD's cut (TOL relative to the largest singular value; the tables are stored in complex64/float32, so the bound is
float32's), for random spectra and probabilities, any period (odd, even with its Nyquist term kept, N past T/2),
any block size and a middle that ends inside its last block.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optimized.lowrank_tile_basis import TOL, block_rank, canonical_gauge, padded_width, tile_basis


def _direct(period: int, bins: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """E[n, t] = e^{i w_n t} [bins, tokens] and the inverse real transform's weights c_n [bins, 1], float64."""
    n = torch.arange(bins, dtype=torch.int64)[:, None]
    t = torch.arange(tokens, dtype=torch.int64)[None, :]
    e = torch.polar(torch.ones(bins, tokens, dtype=torch.float64), (n * t % period).double() * 2 * math.pi / period)
    return e, torch.where((n == 0) | (2 * n == period), 1.0, 2.0).double()


cases = st.tuples(st.integers(2, 700), st.sampled_from([16, 32, 64, 128]), st.integers(0, 2**31 - 1)).map(
    lambda x: dict(period=x[0], block=x[1], seed=x[2]))


@given(case=cases, bins_frac=st.floats(0.05, 1.2), tokens_frac=st.floats(0.3, 1.0))
def test_factored_scores_and_spectrum_equal_the_direct_sums(case, bins_frac, tokens_frac):
    period, block = case["period"], case["block"]
    bins = max(1, min(period // 2 + 1, round(bins_frac * (period // 2 + 1))))
    tokens = max(1, round(tokens_frac * period))
    gen = torch.Generator().manual_seed(case["seed"])
    z = torch.randn(3, bins, dtype=torch.complex128, generator=gen)
    p = torch.rand(3, tokens, dtype=torch.float64, generator=gen)
    e, c = _direct(period, bins, tokens)

    tk = tile_basis(period, bins, tokens, block, True)
    a = torch.view_as_real(z @ tk.w.to(torch.complex128)).reshape(3, tk.blocks, tk.pad)
    scores = (a @ tk.v.double().T).reshape(3, -1)[:, :tokens]
    want = (z @ (c * e)).real
    assert (scores - want).abs().max() <= 1e-5 * (1 + want.abs().max())

    tv = tile_basis(period, bins, tokens, block, False)
    padded = torch.zeros(3, tv.blocks * block, dtype=torch.float64)
    padded[:, :tokens] = p
    h = (padded.reshape(3, tv.blocks, block) @ tv.v.double()).reshape(3, tv.blocks, tv.pad // 2, 2)
    spectrum = torch.view_as_complex(h.contiguous()).reshape(3, -1) @ tv.w.to(torch.complex128).conj().T
    want = p.to(torch.complex128) @ e.conj().T
    assert (spectrum - want).abs().max() <= 1e-5 * (1 + want.abs().max())


def test_the_rank_is_small_where_n_block_over_t_is_small_and_the_cut_holds():
    """LLaMA-3-8B's 512 frequencies at 32k: rank 15 at BB = 256 (of 256), growing like 2 N BB / T; every singular
    value past the rank is below TOL of the largest."""
    assert block_rank(31744, 512, 256) == 15
    assert block_rank(130048, 512, 1024) == 15
    assert block_rank(31744, 512, 64) < block_rank(31744, 512, 256) < block_rank(31744, 512, 1024)
    s = torch.linalg.svdvals(_direct(31744, 512, 256)[0])
    assert s[15] <= TOL * s[0] < s[14]
    assert padded_width(15) == 32 and padded_width(16) == 32 and padded_width(17) == 64


@pytest.mark.parametrize("args, match", [
    ((0, 4, 8, 16, True), "period"), ((10, -1, 8, 16, True), "bins"), ((10, 4, 8, 0, True), "block")])
def test_out_of_range_arguments_are_refused_by_name(args, match):
    with pytest.raises(ValueError, match=match):
        tile_basis(*args)


def test_a_pad_below_twice_the_rank_is_refused():
    rank = block_rank(64, 20, 32)
    with pytest.raises(ValueError, match="pad"):
        tile_basis(64, 20, 64, 32, True, TOL, 2 * rank - 2)


@given(case=cases, bins_frac=st.floats(0.05, 1.2))
def test_the_basis_gauge_does_not_depend_on_the_svd_routine(case, bins_frac):
    """Another LAPACK build may return each singular pair with another phase, or, where E's rows are orthogonal
    (equal singular values), any unitary U: `canonical_gauge` maps every such SVD to the same factors, which still
    factor E with orthonormal U and V."""
    period, block = case["period"], case["block"]
    bins = max(1, min(period // 2 + 1, round(bins_frac * (period // 2 + 1))))
    e = _direct(period, bins, block)[0]
    u, s, vh = torch.linalg.svd(e, full_matrices=False)
    gen = torch.Generator().manual_seed(case["seed"])
    k = s.numel()
    phases = torch.polar(torch.ones(k, dtype=torch.float64), 2 * math.pi * torch.rand(k, dtype=torch.float64,
                                                                                      generator=gen))
    other = (u * phases, s, vh * phases.conj()[:, None])
    if bool(s[-1] >= s[0] * (1 - 1e-12)) and k == bins:  # the whole space is one singular value's: any unitary
        w = torch.linalg.qr(torch.randn(k, k, dtype=torch.complex128, generator=gen))[0]
        other = (u @ w, s, w.conj().T @ vh)
    assert (other[0] @ torch.diag(s).to(e.dtype) @ other[2] - e).abs().max() < 1e-9 * (1 + s[0])  # still an SVD
    mine, theirs = canonical_gauge(e, u, s, vh), canonical_gauge(e, *other)
    for a, b in zip(mine, theirs):
        assert (a - b).abs().max() < 1e-8
    cu, cs, cvh = mine
    eye = torch.eye(k, dtype=e.dtype)
    assert (cu @ torch.diag(cs).to(e.dtype) @ cvh - e).abs().max() < 1e-9 * (1 + s[0])
    assert (cu.conj().T @ cu - eye).abs().max() < 1e-9 and (cvh @ cvh.conj().T - eye).abs().max() < 1e-9


def test_the_block_rule_keeps_the_rank_and_fills_the_gpu():
    """`choose_block` at the LLaMA-3-8B target cells (N = 512, 64-token tiles, 132 SMs, two row blocks per
    sequence): the largest block whose bases keep rank <= MAX_RANK, halved while the stream has fewer than sms / 2
    programs; off a GPU (no sms) never halved."""
    from optimized.triton_fourier_lowrank import MAX_BLOCK, MAX_RANK, choose_block

    def block(batch: int, context: int, sms: int | None = 132) -> int:
        mid = context - 1024
        return choose_block([mid], 512, 512, 64, mid, MAX_RANK, 2 * batch, sms)

    assert block(8, 32768) == 1024 and block(2, 32768) == 1024  # 496 and 124 programs
    assert block(1, 32768) == 512 and block(1, 32768, None) == 1024  # 62 programs at 1024 on a GPU
    assert block(1, 131072) == 2048 == MAX_BLOCK  # past the old cap of 1024: 128 programs
    assert block(1, 4096) == 64  # the rank passes MAX_RANK at 128 tokens
    mid = 131072 - 1024
    assert block_rank(mid, 512, 2048) <= MAX_RANK and block_rank(32768 - 1024, 512, 2048) > MAX_RANK


def test_the_query_products_take_fewer_frequencies_where_programs_are_few():
    """`qp_block_for`: 128 frequencies per program at 8 x 8 heads, 64 at 2 x 8, 32 (the floor) at 1 x 8 on 132 SMs;
    128 off a GPU."""
    from optimized.triton_fourier_lowrank import QP_BLOCK_MIN, QP_BLOCK_N, qp_block_for

    assert [qp_block_for(h, 512, 132) for h in (64, 16, 8, 1)] == [QP_BLOCK_N, 64, QP_BLOCK_MIN, QP_BLOCK_MIN]
    assert qp_block_for(8, 512, None) == QP_BLOCK_N == 128
