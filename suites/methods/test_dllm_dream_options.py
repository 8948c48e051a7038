"""The Dream sampler's options as the official code has them (reference/dllm/sampling.py, generate.py), computed
here independently from their definitions (docs/sparse-dllm.md, "Official code and deliberate deviations"):
- `top_p` and `top_k` filter the (tempered) logits at any temperature: at T = 0 x0 stays the argmax and the
  confidence is taken under the filtered softmax; top_k keeps every logit >= the k-th largest (ties kept); at T > 0
  only kept tokens are drawn;
- `alg_temp` > 0 draws the positions a step commits from softmax(confidence / alg_temp) over the masked positions,
  without replacement; alg_temp 0 (or None) commits the most confident, as before;
- both are Dream-loop options: the LLaDA loop refuses them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.dllm.cache import DecodeCache
from reference.dllm.config import DLLMConfig
from reference.dllm.generate import GenConfig, generate
from reference.dllm.model import DLLM
from reference.dllm.sampling import dream_step
from suites.strategies import dllm_cases, seeds

pytestmark = pytest.mark.usefixtures("one_thread_module")
MASK = 47
DREAM = GenConfig(gen_len=8, block_len=8, steps=8, loop="dream", alg="maskgit_plus")


def _logits(seed: int, vocab: int = 48) -> torch.Tensor:
    return torch.randn(2, 5, vocab, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def _kept_probs(row: torch.Tensor, keep) -> torch.Tensor:
    """softmax over the tokens `keep(sorted descending values, order)` says to keep; 0 elsewhere (by hand)."""
    out = torch.zeros_like(row)
    values, order = row.sort(descending=True)
    n = keep(values)
    kept = order[:n]
    e = torch.exp(row[kept] - row[kept].max())
    out[kept] = e / e.sum()
    return out


@settings(max_examples=8)
@given(seed=seeds(), k=st.integers(1, 6))
def test_top_k_at_temperature_0_keeps_x0_and_renormalises_the_confidence(seed, k):
    logits = _logits(seed)
    x0, conf = dream_step(logits.clone(), replace(DREAM, top_k=k), None, MASK)
    masked = logits.clone()
    masked[..., MASK] = float("-inf")
    assert torch.equal(x0, masked.argmax(-1))
    for b in range(2):
        for i in range(5):
            probs = _kept_probs(masked[b, i], lambda v: k)
            torch.testing.assert_close(conf[b, i], probs[x0[b, i]])


def test_top_k_keeps_ties_with_the_kth_logit():
    row = torch.tensor([[[3.0, 1.0, 2.0, 2.0, 0.5, -1.0]]], dtype=torch.float64)
    _, conf = dream_step(row, replace(DREAM, top_k=2, alg="topk_margin"), None, 5)
    # kept: 3.0 and both 2.0 logits (the 2nd largest value ties) -> margin p(3) - p(2)
    e = torch.exp(torch.tensor([3.0, 2.0, 2.0], dtype=torch.float64))
    p = e / e.sum()
    torch.testing.assert_close(conf[0, 0], p[0] - p[1])


@settings(max_examples=6)
@given(seed=seeds(), top_p=st.sampled_from([0.3, 0.6, 0.9]))
def test_top_p_applies_at_temperature_0_as_the_official_sampler(seed, top_p):
    logits = _logits(seed)
    x0, conf = dream_step(logits.clone(), replace(DREAM, top_p=top_p), None, MASK)
    masked = logits.clone()
    masked[..., MASK] = float("-inf")
    for b in range(2):
        for i in range(5):
            def nucleus(values):  # smallest prefix whose probability reaches top_p (the first always kept)
                p = torch.softmax(values, -1)
                before = p.cumsum(-1) - p
                return int((before <= top_p).sum())
            probs = _kept_probs(masked[b, i], nucleus)
            torch.testing.assert_close(conf[b, i], probs[x0[b, i]])


@settings(max_examples=4)
@given(seed=seeds(), k=st.integers(1, 3))
def test_top_k_at_temperature_above_0_draws_only_kept_tokens(seed, k):
    logits = _logits(seed)
    cfg = replace(DREAM, top_k=k, temperature=1.5)
    gen = torch.Generator().manual_seed(seed)
    allowed = logits.clone()
    allowed[..., MASK] = float("-inf")
    kth = allowed.topk(k, -1).values[..., -1:]
    for _ in range(20):
        x0, _ = dream_step(logits.clone(), cfg, gen, MASK)
        assert bool((allowed.gather(-1, x0[..., None]) >= kth).all())


class _SeeSteps(DecodeCache):
    """Vanilla decoding that keeps the sequence it is given at each step (what earlier steps committed)."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def step_logits(self, model, x, step):
        self.seen.append(x.clone())
        return super().step_logits(model, x, step)


def test_alg_temp_draws_positions_from_the_tempered_confidence():
    """Step 1 of a 4-token Dream block commits one of the 3 masked positions: with alg_temp, position j is chosen with
    probability softmax(conf / alg_temp)_j (conf recomputed here from the step's forward)."""
    cfg_m = DLLMConfig(vocab_size=48, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, mask_id=MASK,
                       eos_id=0, rope_theta=100.0, shift_logits=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = DLLM(cfg_m, dtype=torch.float64).eval()
    prompt = torch.randint(0, MASK, (1, 12), generator=torch.Generator().manual_seed(9))
    base = GenConfig(gen_len=4, block_len=4, steps=3, loop="dream", alg="maskgit_plus")
    spy = _SeeSteps()
    generate(model, prompt, base, spy)
    x1 = spy.seen[1]  # after step 0 (the first token)
    p = prompt.shape[1]
    with torch.no_grad():
        rows = model(x1)[:, p - 1:p + 3]
    _, conf = dream_step(rows, base, None, MASK)
    conf = conf[0, 1:]  # positions 1..3 are masked
    alg_temp = float(conf.max() - conf.min()) / 2 + 1e-3
    want = torch.softmax(conf / alg_temp, -1)
    counts: Counter = Counter()
    n = 400
    for seed in range(n):
        spy = _SeeSteps()
        generate(model, prompt, replace(base, alg_temp=alg_temp, seed=seed), spy)
        assert torch.equal(spy.seen[1], x1)  # step 0 does not depend on alg_temp
        newly = (spy.seen[2][0, p + 1:p + 4] != MASK).nonzero()[:, 0].tolist()
        assert len(newly) == 1
        counts[newly[0]] += 1
    got = torch.tensor([counts[j] / n for j in range(3)], dtype=torch.float64)
    assert (got - want).abs().max() < 0.08, (got, want)  # 400 draws: ~4 standard deviations of the largest p


@settings(max_examples=6)
@given(data=st.data())
def test_alg_temp_0_is_the_most_confident_and_any_alg_temp_decodes_everything(data):
    model, prompt, gen = data.draw(dllm_cases(loop="dream"))
    want, st_want = generate(model, prompt, gen)
    zero, _ = generate(model, prompt, replace(gen, alg_temp=0.0))
    assert torch.equal(zero, want)
    hot, st_hot = generate(model, prompt, replace(gen, alg_temp=0.5, seed=data.draw(seeds())))
    assert (hot[:, prompt.shape[1]:] != model.cfg.mask_id).all()
    assert st_hot["committed_per_step"] == st_want["committed_per_step"]  # the same counts, other positions


@pytest.mark.parametrize("fields, message", [
    ({"top_k": 0, "loop": "dream"}, "top_k"), ({"top_k": 2.5, "loop": "dream"}, "top_k"),
    ({"top_k": True, "loop": "dream"}, "top_k"), ({"alg_temp": -1.0, "loop": "dream"}, "alg_temp"),
    ({"alg_temp": float("nan"), "loop": "dream"}, "alg_temp"), ({"top_k": 5}, "Dream loop"),
    ({"alg_temp": 0.5}, "Dream loop"),
])
def test_bad_dream_options_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        GenConfig(gen_len=8, block_len=8, steps=8, **fields)
