"""Properties of the token-eviction methods (docs/design.md, "Method properties the suites check"; docs/kv-baselines.md).

Kept sets are recovered from the state itself (each kept key is a row of the prefill's keys), then checked against
budgets, position order, the protected tail, scores recomputed independently in float64, planted signals, and
dense attention.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.kv import make_method
from reference.kv.base import PrefillLayer
from reference.kv.scoring import accumulated_attention
from reference.kv.snapkv import pool_scores
from reference.ops.attention import attention, attention_probs
from suites.strategies import TOKEN_METHODS, compression_ratios, prefill_layers, seeds


def kept_positions(layer: PrefillLayer, state) -> torch.Tensor:
    """Which prefill positions a TokenCache holds, recovered by matching rows: [B, Hkv, kept] (long)."""
    eq = (state.keys[:, :, :, None, :] == layer.keys[:, :, None, :, :]).all(-1)  # [B, H, kept, L]
    assert eq.any(-1).all(), "the state holds a key that is not one of the prefill's"
    return eq.float().argmax(-1)


def expected_kept(name: str, method, layer: PrefillLayer) -> int:
    """Tokens per KV head: the budget, raised to the observation window where the window is in the context."""
    n = layer.context_length
    if name == "full":
        return layer.length
    budget = min(n, method.token_budget(n))
    if name == "pyramidkv":
        budget = method.layer_budget(layer)[0]
    if name in ("snapkv", "pyramidkv") and not layer.protected and 2 <= n and budget < n:
        budget = max(budget, min(method.window, n - 1))
    return budget + layer.protected


def assert_top_k(scores: torch.Tensor, chosen: torch.Tensor, what: str) -> None:
    """chosen [B, H, k] must be a top-k of scores [B, H, m] (as a set, up to near-ties)."""
    k = chosen.shape[-1]
    if k == 0:
        return
    tol = 1e-5 * (1 + float(scores.abs().max()))
    kth = torch.topk(scores, k, dim=-1).values[..., -1:]
    low = torch.gather(scores, 2, chosen)
    assert (low >= kth - tol).all(), f"{what}: kept a token scoring {float(low.min()):.6g} < k-th best {float(kth.min()):.6g}"


def per_group_mean(x: torch.Tensor, group: int) -> torch.Tensor:
    b, hq = x.shape[:2]
    return x.reshape(b, hq // group, group, *x.shape[2:]).mean(2)


# ---------------------------------------------------------------- contract: budget, order, bytes, protected tail
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


@given(layer=prefill_layers(min_len=20, max_protected=4), ratio=compression_ratios(0.8), sink=st.integers(0, 6))
def test_streaming_llm_keeps_exactly_sinks_and_recent_window(layer, ratio, sink):
    method = make_method("streaming_llm", ratio, sink_tokens=sink)
    n = layer.context_length
    budget = method.token_budget(n)
    s = min(sink, budget)
    expected = torch.cat([torch.arange(s), torch.arange(n - (budget - s), n), torch.arange(n, layer.length)])
    pos = kept_positions(layer, method.compress(layer))
    assert (pos == expected).all()


# ---------------------------------------------------------------- attention through the compressed state
def masked_dense_attention(q, keys, values, kept, scale):
    """Float64 dense attention of the last n tokens q [B, Hq, n, D] over keys/values [B, Hkv, L + n, D], where the
    first L positions are visible only where kept [B, Hkv, L] (bool) and the n new tokens are causal."""
    b, hq, n, _ = q.shape
    g = hq // keys.shape[1]
    total = keys.shape[2]
    k = keys.double().repeat_interleave(g, 1)
    v = values.double().repeat_interleave(g, 1)
    s = q.double() @ k.transpose(-1, -2) * scale
    visible = torch.ones(b, hq, n, total, dtype=torch.bool)
    visible[..., : total - n] = kept.repeat_interleave(g, 1)[:, :, None, :]
    visible[..., total - n :] = torch.ones(n, n, dtype=torch.bool).tril()
    return torch.softmax(s.masked_fill(~visible, float("-inf")), -1) @ v


@pytest.mark.parametrize("name", TOKEN_METHODS)
@given(layer=prefill_layers(min_len=12, max_len=80, max_protected=3), ratio=compression_ratios(0.8), seed=seeds(),
       scale=st.floats(0.05, 0.5))
def test_attention_through_state_equals_dense_attention_over_kept_tokens(name, layer, ratio, seed, scale):
    state = make_method(name, ratio).compress(layer)
    kept = torch.zeros(layer.keys.shape[:3], dtype=torch.bool).scatter_(2, kept_positions(layer, state), True)
    g = torch.Generator().manual_seed(seed)
    b, hkv, _, d = layer.keys.shape
    new_k, new_v = torch.randn(b, hkv, 3, d, generator=g), torch.randn(b, hkv, 3, d, generator=g)
    q = torch.randn(b, layer.queries.shape[1], 3, d, generator=g)
    state.append(new_k, new_v)
    out = state.attend(q, scale)
    keys, values = torch.cat([layer.keys, new_k], 2), torch.cat([layer.values, new_v], 2)
    torch.testing.assert_close(out.double(), masked_dense_attention(q, keys, values, kept, scale), atol=1e-5, rtol=1e-5)
    if name == "full":
        torch.testing.assert_close(out, attention(q, keys, values, causal=True, scale=scale))


# ---------------------------------------------------------------- kept sets = top-k of independently computed scores
@given(layer=prefill_layers(min_len=40, max_len=120), ratio=st.floats(0.3, 0.9), kernel=st.sampled_from([1, 3, 5, 7]),
       pooling=st.sampled_from(["avgpool", "maxpool"]))
def test_snapkv_keeps_the_top_k_of_its_smoothed_scores(layer, ratio, kernel, pooling):
    """Float64 recomputation of SnapKV's scores (eq. 1-2 + pooling); kept prefix = their top-k, window kept."""
    w = 8
    method = make_method("snapkv", ratio, window=w, kernel_size=kernel, pooling=pooling)
    n = layer.context_length
    probs = attention_probs(layer.queries[:, :, -w:].double(), layer.keys.double())[..., : n - w]
    smoothed = pool_scores(per_group_mean(probs.sum(2), layer.group_size), kernel, pooling)
    k = max(0, method.token_budget(n) - w)
    pos = kept_positions(layer, method.compress(layer))
    assert pos.shape[-1] == k + w
    assert (pos[..., -w:] == torch.arange(n - w, n)).all(), "the observation window is always kept"
    assert_top_k(smoothed, pos[..., :k], "snapkv")


@given(layer=prefill_layers(min_len=30, max_len=100, min_protected=1, max_protected=6), ratio=compression_ratios())
def test_snapkv_question_aware_window_is_the_question(layer, ratio):
    """With a protected question, the scores come from the question's queries and the whole context is the prefix."""
    method = make_method("snapkv", ratio, kernel_size=3)
    n, p = layer.context_length, layer.protected
    probs = attention_probs(layer.queries[:, :, -p:].double(), layer.keys.double())[..., :n]
    smoothed = pool_scores(per_group_mean(probs.sum(2), layer.group_size), 3, "avgpool")
    k = method.token_budget(n)
    pos = kept_positions(layer, method.compress(layer))
    assert pos.shape[-1] == k + p
    assert_top_k(smoothed, pos[..., :k], "question-aware snapkv")


@given(layer=prefill_layers(max_len=100, max_protected=4), ratio=compression_ratios(), recent=st.floats(0, 1))
def test_h2o_keeps_recent_window_and_top_accumulated_attention(layer, ratio, recent):
    """Accumulated attention recomputed densely in float64 over every prefill query (the question's included)."""
    method = make_method("h2o", ratio, recent_ratio=recent)
    n = layer.context_length
    acc = per_group_mean(attention_probs(layer.queries.double(), layer.keys.double()).sum(2), layer.group_size)
    budget = min(n, method.token_budget(n))
    r = method.recent_tokens(budget)
    pos = kept_positions(layer, method.compress(layer))[..., :budget]
    assert (pos[..., budget - r :] == torch.arange(n - r, n)).all(), "the recent window is kept"
    assert_top_k(acc[..., : n - r], pos[..., : budget - r], "h2o heavy hitters")


@given(layer=prefill_layers(max_len=90), chunk=st.integers(1, 40))
def test_accumulated_attention_in_chunks_equals_the_dense_sum(layer, chunk):
    dense = attention_probs(layer.queries.double(), layer.keys.double()).sum(2)
    torch.testing.assert_close(accumulated_attention(layer.queries, layer.keys, chunk=chunk).double(), dense,
                               atol=1e-4, rtol=1e-5)


@given(layer=prefill_layers(max_protected=4), ratio=compression_ratios())
def test_tova_keeps_the_top_k_of_the_last_query_attention_averaged_over_heads(layer, ratio):
    method = make_method("tova", ratio)
    n = layer.context_length
    last = attention_probs(layer.queries[:, :, -1:].double(), layer.keys.double())[:, :, 0, :n].mean(1)  # [B, n]
    k = method.token_budget(n)
    pos = kept_positions(layer, method.compress(layer))[..., :k]
    assert (pos == pos[:, :1]).all(), "TOVA ranks per layer: every head keeps the same tokens"
    assert_top_k(last[:, None, :].expand(-1, pos.shape[1], -1), pos, "tova")


@given(layer=prefill_layers(max_protected=4), ratio=compression_ratios())
def test_knorm_keeps_the_lowest_norm_keys(layer, ratio):
    method = make_method("knorm", ratio)
    n = layer.context_length
    k = method.token_budget(n)
    pos = kept_positions(layer, method.compress(layer))[..., :k]
    assert_top_k(-layer.keys[:, :, :n].double().norm(dim=-1), pos, "knorm")


# ---------------------------------------------------------------- planted signals: scoring, not chance
def _planted_layer(seed, n=120, hkv=2, group=2, d=16, protected=0, aligned_queries="all"):
    """Keys random except 3 planted prefix positions aligned with a direction u; queries near u (all of them, or
    only the question's) so the planted tokens draw most of the attention. Returns (layer, planted positions)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g)
    u = u / u.norm()
    q = torch.randn(1, hkv * group, n, d, generator=g)
    start = 0 if aligned_queries == "all" else n - protected
    q[:, :, start:] = u * 6 + 0.3 * torch.randn(1, hkv * group, n - start, d, generator=g)
    k = torch.randn(1, hkv, n, d, generator=g)
    planted = torch.randperm(60, generator=g)[:3] + 10  # in the prefix, far from the recent end
    k[:, :, planted] = u * 8 + 0.05 * torch.randn(1, hkv, 3, d, generator=g)
    return PrefillLayer(0, 4, q, k, torch.randn(1, hkv, n, d, generator=g), protected=protected), planted.tolist()


def _assert_kept(name, layer, state, planted):
    pos = kept_positions(layer, state)
    for p in planted:
        assert (pos == p).any(-1).all(), f"{name} dropped planted token {p}"


@pytest.mark.parametrize("name", ["snapkv", "pyramidkv", "h2o", "tova"])
@given(seed=seeds())
def test_attention_guided_methods_keep_planted_tokens(name, seed):
    layer, planted = _planted_layer(seed)
    _assert_kept(name, layer, make_method(name, 0.6).compress(layer), planted)


@pytest.mark.parametrize("name", ["snapkv", "pyramidkv", "tova"])
@given(seed=seeds())
def test_question_aware_methods_keep_tokens_the_question_attends(name, seed):
    """Only the question's queries point at the planted keys; the context's queries are random."""
    layer, planted = _planted_layer(seed, protected=6, aligned_queries="question")
    _assert_kept(name, layer, make_method(name, 0.8).compress(layer), planted)


@given(seed=seeds())
def test_knorm_keeps_planted_low_norm_keys(seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(1, 2, 120, 16, generator=g)
    planted = torch.randperm(120, generator=g)[:5]
    k[:, :, planted] *= 0.01
    layer = PrefillLayer(0, 1, torch.randn(1, 4, 120, 16, generator=g), k, torch.randn(1, 2, 120, 16, generator=g))
    _assert_kept("knorm", layer, make_method("knorm", 0.9).compress(layer), planted.tolist())


# ---------------------------------------------------------------- PyramidKV (its budget schedule: test_kv_budgets.py)
def test_pyramidkv_deep_layers_keep_fewer_tokens():
    layer, _ = _planted_layer(3)
    method = make_method("pyramidkv", 0.6)
    sizes = [len(method.compress(PrefillLayer(i, 4, layer.queries, layer.keys, layer.values))) for i in range(4)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "name,params,needle",
    [("snapkv", {"kernel_size": 4}, "kernel_size"), ("snapkv", {"kernel_size": 0}, "kernel_size"),
     ("snapkv", {"pooling": "median"}, "pooling"), ("snapkv", {"window": 0}, "window"),
     ("snapkv", {"window": True}, "window"), ("pyramidkv", {"kernel_size": 2}, "kernel_size"),
     ("pyramidkv", {"window": -3}, "window"), ("pyramidkv", {"beta": 0.5}, "beta"),
     ("pyramidkv", {"beta": math.nan}, "beta"), ("streaming_llm", {"sink_tokens": -1}, "sink_tokens"),
     ("streaming_llm", {"sink_tokens": 2.5}, "sink_tokens"), ("h2o", {"recent_ratio": 1.5}, "recent_ratio"),
     ("h2o", {"recent_ratio": "half"}, "recent_ratio"), ("knorm", {"nope": 1}, "nope")],
)
def test_bad_parameters_are_named(name, params, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        make_method(name, 0.5, **params)


@pytest.mark.parametrize("name", TOKEN_METHODS)
@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, math.nan, math.inf, "0.5"])
def test_bad_compression_ratio(name, ratio):
    with pytest.raises(ValueError, match="compression_ratio"):
        make_method(name, ratio)


def test_pyramidkv_rejects_a_layer_index_outside_the_model():
    x = torch.randn(1, 1, 40, 8)
    with pytest.raises(ValueError, match="layer_idx"):
        make_method("pyramidkv", 0.5).compress(PrefillLayer(4, 4, x, x, x))


def test_accumulated_attention_rejects_a_bad_chunk():
    x = torch.randn(1, 1, 10, 8)
    with pytest.raises(ValueError, match="chunk"):
        accumulated_attention(x, x, chunk=0)


def test_prefill_layer_validates_shapes():
    x = torch.randn(1, 2, 10, 8)
    with pytest.raises(ValueError, match="multiple"):
        PrefillLayer(0, 1, torch.randn(1, 3, 10, 8), x, x)
    with pytest.raises(ValueError, match="protected"):
        PrefillLayer(0, 1, x, x, x, protected=11)
    with pytest.raises(ValueError, match="4-D"):
        PrefillLayer(0, 1, x[0], x, x)
