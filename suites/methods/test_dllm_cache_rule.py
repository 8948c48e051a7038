"""dLLM-Cache's refresh rule as the official hook has it (reference/dllm/dllm_cache.py; maomaocun/dLLM-cache,
cache_hook_LLaDA.py), pinned on the trained fixture by snapshots of the cache around single steps:

- layer 0 is recomputed in full at every step (it equals a fresh build's layer 0);
- V-verify recomputes int(R * ratio) response tokens, the least similar by the cosine of whole V rows (every KV head
  together); every response token's V is replaced, K only at those tokens;
- a step that refreshes the prompt recomputes every prompt row and still runs V-verify on the response;
- `rule="legacy"` keeps the earlier rule: ceil(R * ratio) tokens by the cosine averaged over heads, V replaced only
  at them, and a prompt refresh recomputes everything.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from reference.dllm import make_cache
from suites.methods.dllm_fixture import fixture_model, fixture_prompts
from suites.strategies import seeds

GEN_LEN, BLOCK, RATIO = 16, 8, 0.3


pytestmark = pytest.mark.usefixtures("one_thread_module")


def _setup(rule: str, seed: int, prompt_interval: int = 100):
    """(model, x, P, cache) after the full refresh of step 0 and three tokens committed at random."""
    model = fixture_model()
    prompt, _ = fixture_prompts("kv", 64, 2, seed=10_000 + seed % 1000)
    p = prompt.shape[1]
    x = torch.cat([prompt, torch.full((2, GEN_LEN), model.cfg.mask_id)], 1)
    cache = make_cache("dllm_cache", prompt_interval=prompt_interval, response_interval=100, refresh_ratio=RATIO,
                       rule=rule)
    cache.reset(model, x, p)
    cache.begin_block(p, p + BLOCK)
    cache.step_logits(model, x, 0)
    g = torch.Generator().manual_seed(seed)
    x[:, p:p + 3] = torch.randint(32, 288, (2, 3), generator=g)
    return model, x, p, cache


def _snapshot(cache) -> dict[str, list[torch.Tensor]]:
    return {n: [t.clone() for t in getattr(cache, n)] for n in ("K", "V", "A", "F")}


def _changed_rows(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Positions [B, L] (bool) where a K/V [B, H, L, D] differs."""
    return (new != old).any(-1).any(1)


@settings(max_examples=2, deadline=None)
@given(seed=seeds())
def test_official_v_verify_step(seed):
    model, x, p, cache = _setup("official", seed)
    before = _snapshot(cache)
    cache.step_logits(model, x, 1)  # neither interval: V-verify
    fresh = make_cache("dllm_cache")
    fresh.reset(model, x, p)
    fresh.begin_block(p, p + BLOCK)
    fresh.step_logits(model, x, 0)
    for name in ("K", "V", "A", "F"):
        torch.testing.assert_close(getattr(cache, name)[0], getattr(fresh, name)[0], rtol=0, atol=0,
                                   msg=f"layer 0's {name} is recomputed in full")
    n = int(GEN_LEN * RATIO)
    for i in range(1, model.cfg.n_layers):
        sel = cache.refreshed[i]
        assert sel.shape == (2, n)
        v_new, v_old = cache.V[i][:, :, p:], before["V"][i][:, :, p:]
        assert _changed_rows(v_new, v_old).all(), f"layer {i}: every response V is replaced"
        k_changed = _changed_rows(cache.K[i], before["K"][i])
        want = torch.zeros_like(k_changed)
        want.scatter_(1, p + sel, True)
        assert torch.equal(k_changed, want), f"layer {i}: K changes exactly at the recomputed tokens"
        sim = F.cosine_similarity(v_new.transpose(1, 2).flatten(2).float(), v_old.transpose(1, 2).flatten(2).float(),
                                  dim=-1)
        chosen = sim.gather(1, sel)
        rest = sim.clone().scatter_(1, sel, float("inf"))
        assert (chosen.max(1).values <= rest.min(1).values + 1e-6).all(), f"layer {i}: the least similar rows"


@settings(max_examples=2, deadline=None)
@given(seed=seeds())
def test_official_prompt_refresh_does_not_refresh_the_response(seed):
    model, x, p, cache = _setup("official", seed, prompt_interval=2)
    cache.step_logits(model, x, 1)
    x[:, p + 3:p + 5] = torch.randint(32, 288, (2, 2), generator=torch.Generator().manual_seed(seed + 1))
    before = _snapshot(cache)
    cache.step_logits(model, x, 2)  # t = 2: the prompt's interval, not the response's
    for i in range(1, model.cfg.n_layers):
        changed = _changed_rows(cache.K[i], before["K"][i])
        assert changed[:, :p].all(), f"layer {i}: every prompt row is recomputed"
        resp = torch.zeros_like(changed[:, p:]).scatter_(1, cache.refreshed[i], True)
        assert torch.equal(changed[:, p:], resp), f"layer {i}: only V-verify's tokens of the response"


@settings(max_examples=2, deadline=None)
@given(seed=seeds())
def test_legacy_rule_keeps_the_earlier_behaviour(seed):
    model, x, p, cache = _setup("legacy", seed)
    before = _snapshot(cache)
    cache.step_logits(model, x, 1)
    n = max(1, math.ceil(GEN_LEN * RATIO))
    for i in range(model.cfg.n_layers):  # layer 0 included
        sel = cache.refreshed[i]
        assert sel.shape == (2, n)
        outside = ~torch.zeros(2, x.shape[1], dtype=torch.bool).scatter_(1, p + sel, True)
        assert not (_changed_rows(cache.V[i], before["V"][i]) & outside).any(), f"layer {i}: V only at the tokens"
    prompt_refresh = make_cache("dllm_cache", prompt_interval=1, rule="legacy")
    prompt_refresh.reset(model, x, p)
    prompt_refresh.begin_block(p, p + BLOCK)
    prompt_refresh.step_logits(model, x, 0)
    assert prompt_refresh.builds == [1]
    prompt_refresh.step_logits(model, x, 1)
    assert prompt_refresh.builds == [2], "a legacy prompt refresh rebuilds everything"


def test_bad_rule_is_named():
    with pytest.raises(ValueError, match="rule"):
        make_cache("dllm_cache", rule="paper")
