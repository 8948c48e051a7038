"""How many tokens the token-eviction methods keep (docs/kv-baselines.md, "Budget" and "pyramidkv").

- At compression ratio R a method keeps floor((1 - R) * n) of n context tokens (at least one), so the bytes it holds
  never exceed (1 - R) of the full cache beyond the always-kept parts: the protected question, SnapKV's and
  PyramidKV's observation window, and that one token.
- PyramidKV's per-layer budgets follow the official schedule (Zefan-Cai/KVCache-Factory, pyramidkv_utils.py):
  uniform when the prompt is shorter than twice the base, otherwise a progression from 2 * base - floor(base / beta)
  down to floor(base / beta), clamped at the prefix; we keep its total exact where the official code's floored step
  keeps a few tokens more.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.kv import make_method
from reference.kv.base import PrefillLayer
from reference.kv.pyramidkv import layer_budgets
from suites.strategies import TOKEN_METHODS, compression_ratios, prefill_layers

WINDOWED = ("snapkv", "pyramidkv")  # methods whose observation window is kept whatever the budget


def token_bytes(layer: PrefillLayer) -> int:
    """Bytes of one token's K and V over the batch and the KV heads."""
    b, hkv, _, d = layer.keys.shape
    return b * hkv * d * (layer.keys.element_size() + layer.values.element_size())


@given(n=st.integers(1, 100_000), ratio=compression_ratios(0.99))
def test_budget_is_the_floor_of_what_the_ratio_allows(n, ratio):
    budget = make_method("snapkv", ratio).token_budget(n)
    assert budget == max(1, math.floor((1 - ratio) * n + 1e-9)), (n, ratio, budget)


def test_budget_examples():
    method = make_method("h2o", 0.5)
    assert method.token_budget(2025) == 1012  # removing at least half of 2025 leaves 1012
    assert method.token_budget(2024) == 1012
    assert make_method("knorm", 0.7).token_budget(10) == 3 and make_method("knorm", 0.9).token_budget(10) == 1


@pytest.mark.parametrize("name", TOKEN_METHODS)
@given(layer=prefill_layers(max_protected=6), ratio=compression_ratios(0.95))
def test_kv_bytes_never_exceed_the_ratio_beyond_the_always_kept_parts(name, layer, ratio):
    """One layer (PyramidKV, whose layers differ, is summed over its layers below)."""
    if name == "pyramidkv":
        layer = PrefillLayer(0, 1, layer.queries, layer.keys, layer.values, protected=layer.protected)
    method = make_method(name, ratio)
    state = method.compress(layer)
    n, per = layer.context_length, token_bytes(layer)
    if name == "full":  # the uncompressed reference keeps every token whatever the ratio
        assert state.nbytes() == layer.length * per
        return
    always = 1
    if name in WINDOWED and not layer.protected:
        always = max(always, min(method.window, n - 1))
    allowed = max((1 - ratio) * n + 1e-6, always) + layer.protected
    assert state.nbytes() <= allowed * per, f"{name}: {state.nbytes() / per} tokens held, {allowed:.3f} allowed"
    if ratio > 0 and (1 - ratio) * n >= always + 1:  # the budget is used, not undershot
        assert state.nbytes() == (math.floor((1 - ratio) * n + 1e-9) + layer.protected) * per


@given(layer=prefill_layers(min_len=40, max_protected=6), ratio=compression_ratios(0.95), num_layers=st.integers(2, 40))
def test_pyramidkv_bytes_over_all_layers_never_exceed_the_ratio(layer, ratio, num_layers):
    method = make_method("pyramidkv", ratio)
    n, per = layer.context_length, token_bytes(layer)
    held = sum(method.compress(PrefillLayer(i, num_layers, layer.queries, layer.keys, layer.values,
                                            protected=layer.protected)).nbytes() for i in range(num_layers))
    window = 0 if layer.protected else min(method.window, n - 1)
    allowed = num_layers * (max((1 - ratio) * n + 1e-6, window, 1) + layer.protected)
    assert held <= allowed * per, f"{held / per} tokens held over {num_layers} layers, {allowed:.3f} allowed"


def _official_endpoints(base: int, prefix: int, window: int, beta: float) -> tuple[int, int]:
    """(first layer, last layer) of the official schedule, from the rule as the docstring states it."""
    if prefix + window < 2 * base:
        return base, base
    smallest = math.floor(base / beta)
    largest = 2 * base - smallest
    if largest >= prefix:
        return prefix, 2 * base - prefix
    return largest, smallest


@given(prefix=st.integers(1, 5000), frac=st.floats(0.0, 1.0), window=st.integers(1, 64), num_layers=st.integers(2, 48),
       beta=st.sampled_from([1.0, 2.0, 8.0, 20.0, 33.0]))
def test_pyramidkv_schedule_matches_the_official_endpoints_and_keeps_the_total(prefix, frac, window, num_layers, beta):
    base = math.floor(frac * prefix)
    b = layer_budgets(base, prefix, window, num_layers, beta)
    assert sum(b) == num_layers * base, "the same total as SnapKV's uniform budget"
    assert all(x >= y for x, y in zip(b, b[1:])), f"budgets must not grow with depth: {b}"
    assert all(0 <= x <= prefix for x in b)
    if base < prefix:
        assert (b[0], b[-1]) == _official_endpoints(base, prefix, window, beta)
    steps = {x - y for x, y in zip(b, b[1:])}
    assert max(steps) - min(steps) <= 1, "an arithmetic progression up to rounding"


def test_pyramidkv_worked_example():
    """2025 context tokens, ratio 0.75, window 32, 30 layers (docs/kv-baselines.md): SnapKV keeps 506 per layer; the
    official schedule goes from 925 + 32 down to 23 + 32 (its floored step ends at 26 + 32, 45 tokens over budget)."""
    method = make_method("pyramidkv", 0.75)
    x = torch.randn(1, 1, 2025, 4, generator=torch.Generator().manual_seed(7))
    kept = [method.layer_budget(PrefillLayer(i, 30, x, x, x))[0] for i in range(30)]
    assert method.token_budget(2025) == 506
    assert kept[0] == 957 and kept[-1] == 55 and sum(kept) == 30 * 506
    # A prompt shorter than twice the base: every layer keeps SnapKV's budget (the official code's middle branch).
    assert layer_budgets(600, 1100, 32, 30, 20.0) == [600] * 30
    assert layer_budgets(100, 100, 8, 4, 20.0) == [100] * 4  # nothing to evict
    # The official clamp: 2 * 50 - floor(50 / 20) = 98 reaches the 97-token prefix, so layer 0 keeps all of it.
    assert layer_budgets(50, 97, 8, 4, 20.0) == [97, 66, 34, 3]


@given(bad=st.integers(-5, -1))
def test_layer_budgets_name_bad_arguments(bad):
    with pytest.raises(ValueError, match="num_layers"):
        layer_budgets(10, 20, 4, 0, 20.0)
    with pytest.raises(ValueError, match="base, prefix and window"):
        layer_budgets(bad, 20, 4, 3, 20.0)
