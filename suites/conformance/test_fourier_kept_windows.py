"""The Fourier decode kernels read each head's kept channels through windows aligned to 8 whatever the kept set
(`kept_runs` in optimized/triton_fourier_spectral.py), when the kept rows allow it. Conformance pads its rows by 3
channels, so its cases rarely promise the alignment; here random kept sets sit in rows padded to 8 (the layout of a
real cache), the plans must choose the windows, and the output must still be the reference's."""
from __future__ import annotations

import pytest
import torch

from optimized.triton_fourier_lowrank import heads_window_width, lowrank_plan
from optimized.triton_fourier_spectral import kept_alignment, run_block, spectral_plan, window_overread
from optimized.triton_fourier_tiles import tiles_plan
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_impl

PLANS = {"triton_spectral": spectral_plan, "triton_tiles": tiles_plan}


def _cache(seed: int, kept_pad: int, k_fraction: float = 40 / 72, v_fraction: float = 48 / 72) -> dict:
    # 3 KV heads of 24 channels, random kept sets (32 K and 24 V channels of the 72 by default: widths a multiple of
    # 8, as the windows need): runs start anywhere; 70 middle tokens cross several tiles
    return make_fourier_cache(2, 6, 3, 24, 85, 9, k_fraction=k_fraction, v_fraction=v_fraction, n_init=3, n_local=12,
                              dtype=torch.float32, device="cpu", seed=seed, kept_pad=kept_pad)


@pytest.mark.parametrize("impl", sorted(PLANS))
@pytest.mark.parametrize("seed", [1, 2])
def test_windows_over_random_kept_sets_give_the_reference_output(impl, seed):
    x = _cache(seed, kept_pad=8)
    starts = torch.searchsorted(x["k_kept_idx"], torch.arange(4) * 24).tolist()
    assert any(s % 8 for s in starts), "the case must hold a run that starts off a multiple of 8"
    plan = PLANS[impl](**x)
    assert plan.align == 8
    torch.testing.assert_close(plan.run(), get_impl("fourier_decode_attention", "coefficients")(**x),
                               atol=2e-5, rtol=2e-5)


def test_rows_without_room_for_a_window_keep_the_runs():
    """Rows of a width that is a multiple of 8 in a stride of a multiple of 8 allow windows; a width that is not
    does not, even in rows padded to 8 (a window past the last head's run would read the caller's padding), nor
    does a stride of another multiple or a row that starts off 16 bytes."""
    padded, odd = _cache(1, 8), _cache(1, 8, k_fraction=0.6, v_fraction=0.55)
    assert kept_alignment(padded["k_mid_kept"], padded["v_mid_kept"]) == 8
    assert odd["k_mid_kept"].shape[2] % 8 and kept_alignment(odd["k_mid_kept"], odd["v_mid_kept"]) == 1
    assert kept_alignment(_cache(1, 1, 0.6, 0.55)["k_mid_kept"]) == 1
    assert kept_alignment(padded["k_mid_kept"][:, :, 1:]) == 1  # a row that starts off 16 bytes


@pytest.mark.parametrize("impl", sorted(PLANS))
@pytest.mark.parametrize("kept_pad", [8, 16])
def test_windows_never_read_the_rows_padding(impl, kept_pad):
    """NaN past each kept row's width, in rows padded to 8 or 16 where the K rows are 29 channels wide (the V rows
    32): the output is still the reference's (a window aligned past the width read the NaN into a product with a
    zero query lane, which gave NaN everywhere)."""
    x = _cache(3, kept_pad, k_fraction=0.6, v_fraction=0.55)
    for mid in (x["k_mid_kept"], x["v_mid_kept"]):
        _poison_row_padding(mid)
    torch.testing.assert_close(PLANS[impl](**x).run(), get_impl("fourier_decode_attention", "coefficients")(**x),
                               atol=2e-5, rtol=2e-5)


def test_window_arithmetic():
    # runs [3, 10) and [10, 30): windows [0, 16) and [8, 32), 16 and 24 lanes -> a 32-lane block; 9 + 4 extra lanes
    assert run_block([3, 10, 30], 8) == 32 and run_block([3, 10, 30], 1) == 32 and run_block([0, 8, 16], 8) == 16
    assert window_overread([3, 10, 30], [0, 8], tokens=5, itemsize=2, align=8) == (9 + 4) * 5 * 2
    assert window_overread([3, 10, 30], [0, 8], tokens=5, itemsize=2, align=1) == 0


def _poison_row_padding(mid: torch.Tensor) -> None:
    """NaN in the padding past each kept row's width: a kernel that reads it into a product fails the comparison."""
    full = mid.as_strided((*mid.shape[:2], mid.stride(1)), mid.stride())
    full[:, :, mid.shape[2]:] = float("nan")


# (Hq, Hkv, Lq): rows per KV head 12 (a 16-row block holds two heads, the next one of them), 4 (four heads a block,
# the second block's window starting mid-list), 24 (a head spans two blocks)
LOWRANK_ROWS = [(8, 2, 3), (32, 8, 1), (8, 1, 3)]


@pytest.mark.parametrize("kept_pad", [1, 8])
@pytest.mark.parametrize("shape", LOWRANK_ROWS)
def test_lowrank_row_blocks_read_only_their_heads_windows(shape, kept_pad):
    """The low-rank stream reads, per block of 16 query rows, the window of the kept lists that holds those rows' KV
    heads (`heads_window`), aligned to 8 where the rows allow it and never into the rows' padding."""
    hq, hkv, lq = shape
    x = make_fourier_cache(2, hq, hkv, 16, 90, 9, k_fraction=0.55, v_fraction=0.6, n_init=3, n_local=12,
                           dtype=torch.float32, device="cpu", seed=hq + lq + kept_pad, q_len=lq, kept_pad=kept_pad)
    for mid in (x["k_mid_kept"], x["v_mid_kept"]):
        _poison_row_padding(mid)
    plan = lowrank_plan(**x)
    assert plan.align == kept_alignment(x["k_mid_kept"], x["v_mid_kept"])
    starts = torch.searchsorted(x["k_kept_idx"], torch.arange(hkv + 1) * 16).tolist()
    window = heads_window_width(starts, hq * lq, hq // hkv * lq, plan.block_r, plan.align)
    assert plan.kwp == max(plan.chunk, -(-window // plan.chunk) * plan.chunk)
    if shape == (32, 8, 1):  # two blocks of four heads each: each reads about half the list
        assert window < x["k_mid_kept"].shape[2] * 3 // 4
    torch.testing.assert_close(plan.run(), get_impl("fourier_decode_attention", "coefficients")(**x),
                               atol=2e-5, rtol=2e-5)


def test_heads_window_width_arithmetic():
    # runs [0, 5), [5, 13), [13, 20), [20, 31); 2 rows per head, 4-row blocks: heads (0, 1) and (2, 3)
    starts = [0, 5, 13, 20, 31]
    assert heads_window_width(starts, 8, 2, 4, 1) == max(13 - 0, 31 - 13)
    assert heads_window_width(starts, 8, 2, 4, 8) == max(16 - 0, 32 - 8)
    # 3 rows per head, 4-row blocks: rows 0-3 heads 0-1, rows 4-7 heads 1-2 (6 rows: the last block rows 4-5)
    assert heads_window_width(starts, 6, 3, 4, 1) == max(13 - 0, 13 - 5)
    assert heads_window_width(starts, 8, 3, 4, 1) == max(13 - 0, 20 - 5)


@pytest.mark.parametrize("seed", [5, 6])
def test_lowrank_query_rows_are_the_same_in_the_prologue_launch(seed):
    """The stream's block-diagonal query rows QBD laid out in `_prologue_kernel` (qr_fused) equal those of
    `_query_rows_kernel`, on windows of several 64-lane chunks (head_dim 64, most channels kept), two row blocks."""
    x = make_fourier_cache(2, 32, 4, 64, 120, 10, k_fraction=0.1, v_fraction=0.5, n_init=2, n_local=10,
                           dtype=torch.float32, device="cpu", seed=seed, kept_pad=8)
    qbd = {}
    for fused in (True, False):
        plan = lowrank_plan(**x, block_r=16)
        plan.qr_fused = fused
        assert plan.rows_in_phase_1 == fused and plan.kwp // plan.chunk > 1 and plan.n_rows > plan.block_r
        plan.qbd.fill_(float("nan"))
        plan.run(upto=3)
        qbd[fused] = plan.qbd.clone()
    assert not qbd[False].isnan().any() and qbd[False].abs().max() > 0
    torch.testing.assert_close(qbd[True], qbd[False], rtol=0, atol=0)
