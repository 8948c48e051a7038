"""The Fourier decode kernels read each head's kept channels through windows aligned to 8 whatever the kept set
(`kept_runs` in optimized/triton_fourier_spectral.py), when the kept rows allow it. Conformance pads its rows by 3
channels, so its cases rarely promise the alignment; here random kept sets sit in rows padded to 8 (the layout of a
real cache), the plans must choose the windows, and the output must still be the reference's."""
from __future__ import annotations

import pytest
import torch

from optimized.triton_fourier_spectral import kept_alignment, run_block, spectral_plan, window_overread
from optimized.triton_fourier_tiles import tiles_plan
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_impl

PLANS = {"triton_spectral": spectral_plan, "triton_tiles": tiles_plan}


def _cache(seed: int, kept_pad: int) -> dict:
    # 3 KV heads of 24 channels, random kept sets: runs start anywhere; 70 middle tokens cross several tiles
    return make_fourier_cache(2, 6, 3, 24, 85, 9, k_fraction=0.6, v_fraction=0.55, n_init=3, n_local=12,
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
    """Rows padded to 8 allow windows; unpadded rows of a width that is not a multiple of 8 do not (a window past
    the last head's run would leave the row), nor does a stride of another multiple."""
    padded, tight = _cache(1, 8), _cache(1, 1)
    assert kept_alignment(padded["k_mid_kept"], padded["v_mid_kept"]) == 8
    assert tight["k_mid_kept"].shape[2] % 8 and kept_alignment(tight["k_mid_kept"], tight["v_mid_kept"]) == 1
    assert kept_alignment(padded["k_mid_kept"][:, :, 1:]) == 1  # a row that starts off 16 bytes


def test_window_arithmetic():
    # runs [3, 10) and [10, 30): windows [0, 16) and [8, 32), 16 and 24 lanes -> a 32-lane block; 9 + 4 extra lanes
    assert run_block([3, 10, 30], 8) == 32 and run_block([3, 10, 30], 1) == 32 and run_block([0, 8, 16], 8) == 16
    assert window_overread([3, 10, 30], [0, 8], tokens=5, itemsize=2, align=8) == (9 + 4) * 5 * 2
    assert window_overread([3, 10, 30], [0, 8], tokens=5, itemsize=2, align=1) == 0
