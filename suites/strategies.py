"""Shared hypothesis strategies for the method suites: random prefills, ratios, seeds (never zeros)."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from reference.kv.base import PrefillLayer


def seeds():
    return st.integers(0, 2**31 - 1)


def compression_ratios(max_ratio: float = 0.9):
    return st.floats(0.0, max_ratio, allow_nan=False)


@st.composite
def prefill_layers(draw, min_len: int = 8, max_len: int = 160, max_protected: int = 0, num_layers: int | None = None,
                   min_protected: int = 0):
    """A PrefillLayer of random normal float32 q/k/v: B 1..2, Hkv 1..3, group 1..3, D in {8, 16, 32}.

    Length in [min_len, max_len] (at least protected + 2, so the context has 2+ tokens); protected (question) tokens
    in [min_protected, max_protected]; num_layers drawn in 1..8 unless given, layer_idx below it.
    """
    b, hkv, group = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    d = draw(st.sampled_from([8, 16, 32]))
    protected = draw(st.integers(min_protected, max(min_protected, max_protected)))
    n = draw(st.integers(max(min_len, protected + 2), max(max_len, protected + 2)))
    layers = num_layers or draw(st.integers(1, 8))
    g = torch.Generator().manual_seed(draw(seeds()))
    return PrefillLayer(
        layer_idx=draw(st.integers(0, layers - 1)),
        num_layers=layers,
        queries=torch.randn(b, hkv * group, n, d, generator=g),
        keys=torch.randn(b, hkv, n, d, generator=g),
        values=torch.randn(b, hkv, n, d, generator=g),
        protected=protected,
        max_new_tokens=draw(st.integers(0, 8)),
    )


TOKEN_METHODS = ("full", "streaming_llm", "h2o", "snapkv", "pyramidkv", "tova", "knorm")
