"""The spectral Fourier kernel's per-GPU knob table: which measured case a call takes its knobs from."""
from __future__ import annotations

import torch

from optimized.triton_fourier_spectral import nearest_knobs, tuned_knobs


def test_tuned_knobs_pick_the_nearest_measured_case():
    entries = [{"programs": 8, "mid_len": 3072, "knobs": {"block_t": 32}},
               {"programs": 8, "mid_len": 31744, "knobs": {"block_t": 64}},
               {"programs": 64, "mid_len": 31744, "knobs": {"block_t": 128}}]
    assert nearest_knobs(entries, 8, 130048) == {"block_t": 64}  # same programs, nearest length
    assert nearest_knobs(entries, 8, 2000) == {"block_t": 32}
    assert nearest_knobs(entries, 48, 8000) == {"block_t": 128}  # programs first
    assert nearest_knobs([], 8, 100) == {} and tuned_knobs(torch.device("cpu"), 8, 100) == {}
