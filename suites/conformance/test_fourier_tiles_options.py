"""The token-major FlashFourierAttention kernel (optimized/triton_fourier_tiles.py): its knobs are checked by name
before any launch, and every accepted setting computes the same function (the conformance suite checks the defaults
and one tuned setting; here the tile and range sizes are swept on one explicit example)."""
from __future__ import annotations

import pytest
import torch

from reference.registry import get_impl, get_op

OPS = ("fourier_decode_attention", "fourier_decode_attention_varlen")
# An explicit example per op whose middle spans several 16-token tiles, at magnitude 1 (float32 error ~1e-6)
EXAMPLE = {"fourier_decode_attention": 6, "fourier_decode_attention_varlen": 5}


def _inputs(op: str) -> dict:
    spec = get_op(op)
    return spec.make_inputs(spec.examples[EXAMPLE[op]], torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("knob, value, error", [
    ("range_t", 0, ValueError), ("range_t", 3, ValueError), ("block_t", 8, ValueError), ("block_t", 48, ValueError),
    ("exact_splits", 0, ValueError), ("num_warps", 0, ValueError), ("num_stages", 0, ValueError),
    ("range_t", 2.0, TypeError), ("fold", 1, TypeError),
])
def test_bad_knobs_are_refused_by_name(op, knob, value, error):
    with pytest.raises(error, match=knob):
        get_impl(op, "triton_tiles")(**_inputs(op), **{knob: value})


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("block_t, range_t, exact_splits, fold", [(16, 1, 2, True), (32, 4, 5, False),
                                                                   (16, 2, 1, False)])
def test_every_tile_and_range_size_computes_the_same_function(op, block_t, range_t, exact_splits, fold):
    x = _inputs(op)
    want = get_impl(op, "coefficients")(**x)
    got = get_impl(op, "triton_tiles")(**x, block_t=block_t, range_t=range_t, exact_splits=exact_splits, fold=fold)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("tuned_range, group, want_range", [(8, 1, 16), (8, 4, 8), (2, 2, 8), (8, 8, 4)])
def test_a_tuned_table_entry_is_used_and_kept_within_the_pair_minimum(monkeypatch, tuned_range, group, want_range):
    """With no knob given the plan takes this GPU's tuned knobs (optimized/tiles_tuning.json); a range measured at
    LLaMA-3-8B's group of 4 is raised to the 16 (row, tile) pairs the basis products need for a smaller group, and
    shortened to the tuned 32 pairs for a larger one (optimized/tiles_fit.py)."""
    from optimized import triton_fourier_tiles as tiles
    from reference.ops.fourier_cache import make_fourier_cache

    monkeypatch.setattr(tiles, "tuned_knobs", lambda *a: {"block_t": 16, "range_t": tuned_range, "num_warps": 4,
                                                          "exact_splits": 3, "fold": group == 1})
    x = make_fourier_cache(1, 2 * group, 2, 16, 150, 9, n_init=2, n_local=12, dtype=torch.float32, device="cpu",
                           seed=group)
    plan = tiles.tiles_plan(**x)
    assert (plan.block_t, plan.range_t, plan.exact_splits, plan.num_warps) == (16, want_range, 3, 4)
    assert plan.fold == (group == 1)  # the sweep's fold is taken too
    torch.testing.assert_close(plan.run(), get_impl("fourier_decode_attention", "coefficients")(**x),
                               atol=2e-5, rtol=2e-5)
