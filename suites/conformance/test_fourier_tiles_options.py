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
    ("exact_splits", 0, ValueError), ("num_warps", 0, ValueError), ("range_t", 2.0, TypeError),
])
def test_bad_knobs_are_refused_by_name(op, knob, value, error):
    with pytest.raises(error, match=knob):
        get_impl(op, "triton_tiles")(**_inputs(op), **{knob: value})


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("block_t, range_t, exact_splits", [(16, 1, 2), (32, 4, 5)])
def test_every_tile_and_range_size_computes_the_same_function(op, block_t, range_t, exact_splits):
    x = _inputs(op)
    want = get_impl(op, "coefficients")(**x)
    got = get_impl(op, "triton_tiles")(**x, block_t=block_t, range_t=range_t, exact_splits=exact_splits)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
