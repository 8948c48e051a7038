"""Properties of the token-eviction methods (DESIGN.md, "Method properties worth testing")."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.kv import METHODS, make_method
from reference.kv.base import PrefillLayer
from reference.kv.pyramidkv import layer_budgets
from reference.kv.snapkv import pool_scores
from reference.ops.attention import attention, attention_probs
from suites.strategies import TOKEN_METHODS, compression_ratios, prefill_layers, seeds


def kept_positions(layer: PrefillLayer, state) -> torch.Tensor:
    """Recover which positions a TokenCache holds (rows are copies of the prefill's): [B, Hkv, kept]."""
    eq = (state.keys[:, :, :, None, :] == layer.keys[:, :, None, :, :]).all(-1)  # [B, H, kept, L]
    assert eq.any(-1).all(), "the state holds a key that is not one of the prefill's"
    return eq.float().argmax(-1)


def expected_kept(name: str, method, layer: PrefillLayer) -> int:
    n = layer.context_length
    budget = method.token_budget(n)
    if name in ("snapkv",) and budget < n and n >= 2:
        w = 0 if layer.protected else min(method.window, n - 1)
        budget = max(budget, w)
    if name == "pyramidkv" and n >= 2:
        budget = method.layer_budget(layer)[0]
        if not layer.protected:
            budget = max(budget, min(method.window, n - 1))
    if name == "full":
        budget = n
    return budget + layer.protected


@pytest.mark.parametrize("name", TOKEN_METHODS)
@given(layer=prefill_layers(max_protected=6), ratio=compression_ratios())
def test_budget_order_bytes_and_protected_tail(name, layer, ratio):
    method = make_method(name, ratio)
    state = method.compress(layer)
    pos = kept_positions(layer, state)
    assert state.keys.shape[2] == len(state) == expected_kept(name, method, layer)
    assert (pos[..., 1:] > pos[..., :-1]).all(), "kept tokens must stay in position order"
    if layer.protected:
        tail = torch.arange(layer.context_length, layer.length)
        assert (pos[..., -layer.protected:] == tail).all(), "protected (question) tokens must be kept"
    # Values travel with their keys.
    idx = pos.unsqueeze(-1).expand(*pos.shape, layer.values.shape[-1])
    assert torch.equal(state.values, torch.gather(layer.values, 2, idx))
    held = sum(t.numel() * t.element_size() for t in (state.keys, state.values))
    assert state.nbytes() == held


@pytest.mark.parametrize("name", [*TOKEN_METHODS, "fourier"])
@given(layer=prefill_layers(max_protected=4))
def test_ratio_zero_equals_full(name, layer):
    full = make_method("full").compress(layer)
    state = make_method(name, 0.0).compress(layer)
    assert torch.equal(state.keys, full.keys) and torch.equal(state.values, full.values)


@given(layer=prefill_layers(min_len=20), ratio=compression_ratios(0.8), sink=st.integers(0, 6))
def test_streaming_llm_keeps_exactly_sinks_and_recent_window(layer, ratio, sink):
    method = make_method("streaming_llm", ratio, sink_tokens=sink)
    n = layer.context_length
    budget = method.token_budget(n)
    s = min(sink, budget)
    expected = torch.cat([torch.arange(s), torch.arange(n - (budget - s), n)])
    pos = kept_positions(layer, method.compress(layer))
    assert (pos == expected).all()


@pytest.mark.parametrize("name", TOKEN_METHODS)
@given(layer=prefill_layers(min_len=12, max_len=80), ratio=compression_ratios(0.7), seed=seeds())
def test_decoding_attends_over_kept_plus_new_tokens(name, layer, ratio, seed):
    state = make_method(name, ratio).compress(layer)
    g = torch.Generator().manual_seed(seed)
    b, hkv, _, d = layer.keys.shape
    new_k, new_v = torch.randn(b, hkv, 3, d, generator=g), torch.randn(b, hkv, 3, d, generator=g)
    q = torch.randn(b, layer.queries.shape[1], 3, d, generator=g)
    keys, values = torch.cat([state.keys, new_k], 2), torch.cat([state.values, new_v], 2)
    state.append(new_k, new_v)
    torch.testing.assert_close(state.attend(q, d**-0.5), attention(q, keys, values, causal=True))


# ---------------------------------------------------------------- planted signals: scoring, not chance
def _planted_layer(n=120, window_q=None, seed=0, hkv=2, group=2, d=16):
    """Queries all close to one direction u; keys random except planted positions aligned with u."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g)
    u = u / u.norm()
    q = u * 6 + 0.3 * torch.randn(1, hkv * group, n, d, generator=g)
    k = torch.randn(1, hkv, n, d, generator=g)
    return q, k, torch.randn(1, hkv, n, d, generator=g), u


@pytest.mark.parametrize("name", ["snapkv", "pyramidkv", "h2o", "tova"])
@given(seed=seeds())
def test_attention_guided_methods_keep_planted_tokens(name, seed):
    q, k, v, u = _planted_layer(seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    planted = torch.randperm(60, generator=g)[:3] + 10  # in the prefix, far from the recent end
    k[:, :, planted] = u * 8 + 0.05 * torch.randn(1, k.shape[1], 3, k.shape[3], generator=g)
    layer = PrefillLayer(0, 4, q, k, v)
    pos = kept_positions(layer, make_method(name, 0.6).compress(layer))
    for p in planted.tolist():
        assert (pos == p).any(-1).all(), f"{name} dropped planted token {p}"


@given(seed=seeds())
def test_knorm_keeps_planted_low_norm_keys(seed):
    q, k, v, _ = _planted_layer(seed=seed)
    planted = torch.randperm(120, generator=torch.Generator().manual_seed(seed))[:5]
    k[:, :, planted] *= 0.01
    layer = PrefillLayer(0, 1, q, k, v)
    pos = kept_positions(layer, make_method("knorm", 0.9).compress(layer))
    assert all((pos == p).any(-1).all() for p in planted.tolist())


@given(layer=prefill_layers(min_len=40, max_len=120), ratio=st.floats(0.3, 0.9), kernel=st.sampled_from([1, 3, 5, 7]),
       pooling=st.sampled_from(["avgpool", "maxpool"]))
def test_snapkv_keeps_the_top_k_of_its_smoothed_scores(layer, ratio, kernel, pooling):
    """Independent float64 recomputation of SnapKV's scores; the kept prefix set must be their top-k (up to ties)."""
    method = make_method("snapkv", ratio, window=8, kernel_size=kernel, pooling=pooling)
    n, w = layer.context_length, 8
    probs = attention_probs(layer.queries[:, :, -w:].double(), layer.keys.double())[..., : n - w]
    b, hq = probs.shape[:2]
    per_kv = probs.sum(2).reshape(b, hq // layer.group_size, layer.group_size, n - w).mean(2)
    smoothed = pool_scores(per_kv, kernel, pooling)
    k = method.token_budget(n) - w
    pos = kept_positions(layer, method.compress(layer))
    assert (pos[..., -w:] == torch.arange(n - w, n)).all(), "the observation window is always kept"
    if k <= 0:
        return
    chosen = torch.gather(smoothed, 2, pos[..., :k])
    kth = torch.topk(smoothed, k, dim=-1).values[..., -1:]
    assert (chosen >= kth - 1e-9).all()


def test_pyramidkv_budgets_shrink_with_depth_and_keep_the_total():
    for total, window, layers in [(512, 32, 30), (100, 8, 4), (40, 32, 7)]:
        b = layer_budgets(total, window, layers, 20.0)
        assert all(x >= y for x, y in zip(b, b[1:]))
        assert sum(b) == (total - window) * layers
        assert b[0] > b[-1] or total - window == 0


@pytest.mark.parametrize(
    "name,params,needle",
    [("snapkv", {"kernel_size": 4}, "kernel_size"), ("snapkv", {"pooling": "median"}, "pooling"),
     ("snapkv", {"window": 0}, "window"), ("streaming_llm", {"sink_tokens": -1}, "sink_tokens"),
     ("h2o", {"recent_ratio": 1.5}, "recent_ratio"), ("pyramidkv", {"beta": 0.5}, "beta"),
     ("knorm", {"nope": 1}, "nope")],
)
def test_bad_parameters_are_named(name, params, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        make_method(name, 0.5, **params)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, math.nan, "0.5"])
def test_bad_compression_ratio(ratio):
    with pytest.raises(ValueError, match="compression_ratio"):
        make_method("snapkv", ratio)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="snapkv"):
        make_method("nonexistent", 0.5)


def test_every_registered_method_is_constructible():
    assert set(METHODS.names()) >= {*TOKEN_METHODS, "fourier"}
    for name in METHODS.names():
        assert make_method(name, 0.5).compression_ratio == 0.5


def test_prefill_layer_validates_shapes():
    x = torch.randn(1, 2, 10, 8)
    with pytest.raises(ValueError, match="multiple"):
        PrefillLayer(0, 1, torch.randn(1, 3, 10, 8), x, x)
    with pytest.raises(ValueError, match="protected"):
        PrefillLayer(0, 1, x, x, x, protected=11)
    with pytest.raises(ValueError, match="4-D"):
        PrefillLayer(0, 1, x[0], x, x)
