"""One decoding step of the LLaDA loop as the official code has it (reference/dllm/sampling.py, generate.py).

The official rules are computed here independently from their formulas (docs/sparse-dllm.md, "Official code"):
- temperature T > 0: x0 = argmax(exp(logits) / (-log u)^T) (float64 Gumbel noise, the same u), confidence = the
  probability of x0 under the untempered softmax; `tempered_confidence` keeps this benchmark's softmax(logits / T);
- `logits_eos_inf` removes EOS from the logits; `confidence_eos_eot_inf` zeroes the confidence of EoT candidates,
  and of EOS ones at T = 0 only (what the official assignment does);
- `cfg_scale`: logits = un + (scale + 1) (cond - un), the unconditional pass with the prompt masked; checked on the
  trained fixture and through every cache.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.dllm import make_cache
from reference.dllm.generate import GenConfig, generate
from reference.dllm.sampling import llada_step
from suites.methods.dllm_fixture import fixture_model, fixture_prompts
from suites.strategies import dllm_cases, seeds

NEG_INF = float("-inf")
CFG = GenConfig(gen_len=8, block_len=8, steps=8)


pytestmark = pytest.mark.usefixtures("one_thread_module")


def _logits(seed: int, n: int, vocab: int) -> torch.Tensor:
    return torch.randn(2, n, vocab, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def _without(logits: torch.Tensor, *tokens: int) -> torch.Tensor:
    out = logits.clone()
    for t in tokens:
        out[..., t] = NEG_INF
    return out


@given(seed=seeds(), t=st.floats(0.05, 4.0), n=st.integers(1, 6), vocab=st.integers(4, 50))
def test_temperature_draws_like_the_official_gumbel_and_ranks_by_the_untempered_softmax(seed, t, n, vocab):
    logits, mask_id = _logits(seed, n, vocab), vocab - 1
    cfg = replace(CFG, temperature=t)
    x0, conf = llada_step(logits.clone(), cfg, torch.Generator().manual_seed(seed + 1), mask_id, eos_id=0)
    u = torch.rand(logits.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    visible = _without(logits, mask_id)  # never a candidate (a deliberate deviation, documented)
    assert torch.equal(x0, (visible.exp() / (-torch.log(u)) ** t).argmax(-1))
    torch.testing.assert_close(conf, torch.softmax(visible, -1).gather(-1, x0[..., None])[..., 0])
    x0_t, conf_t = llada_step(logits.clone(), replace(cfg, tempered_confidence=True),
                              torch.Generator().manual_seed(seed + 1), mask_id, eos_id=0)
    assert torch.equal(x0_t, x0), "the option changes the ranking, not the draw"
    torch.testing.assert_close(conf_t, torch.softmax(visible / t, -1).gather(-1, x0[..., None])[..., 0])


@given(seed=seeds(), n=st.integers(2, 6), vocab=st.integers(6, 40), t=st.sampled_from([0.0, 0.7]))
def test_eos_options_follow_the_official_loop(seed, n, vocab, t):
    eos, eot, mask_id = 0, 1, vocab - 1
    logits = _logits(seed, n, vocab)
    logits[0, 0, eos] = logits[0, 1, eot] = 50.0  # make EOS / EoT the likely candidates of two positions
    g = lambda: torch.Generator().manual_seed(seed)  # noqa: E731 - the same noise for every call
    cfg = replace(CFG, temperature=t)
    x0, conf = llada_step(logits.clone(), replace(cfg, logits_eos_inf=True), g(), mask_id, eos)
    assert not (x0 == eos).any(), "logits_eos_inf: EOS is never a candidate"
    if t == 0:
        torch.testing.assert_close(conf, torch.softmax(_without(logits, mask_id, eos), -1)
                                   .gather(-1, x0[..., None])[..., 0])
    x0, conf = llada_step(logits.clone(), replace(cfg, confidence_eos_eot_inf=True, eot_id=eot), g(), mask_id, eos)
    ranked = _without(logits, mask_id, eot, *((eos,) if t == 0 else ()))  # at T > 0 EOS keeps its probability
    torch.testing.assert_close(conf, torch.softmax(ranked, -1).gather(-1, x0[..., None])[..., 0])
    assert (conf[x0 == eot] == 0).all()
    assert (conf[x0 == eos] == 0).all() if t == 0 else (conf[x0 == eos] > 0).all()
    assert (x0 == eot).any(), "the option ranks candidates; it does not change them"


def test_logits_eos_inf_on_the_fixture_writes_no_eos():
    """The fixture answers then pads with EOS; with EOS removed from the logits every position gets another token."""
    model = fixture_model()
    prompt, _ = fixture_prompts("passkey", 64, 2)
    cfg = GenConfig(gen_len=8, block_len=8, steps=8)
    eos = model.cfg.eos_id
    plain, _ = generate(model, prompt, cfg)
    assert (plain[:, 64:] == eos).any(), "the fixture ends its answers with EOS"
    banned, _ = generate(model, prompt, replace(cfg, logits_eos_inf=True))
    assert not (banned[:, 64:] == eos).any()


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_cfg_scale_on_the_fixture_combines_conditional_and_unconditional_logits(scale):
    """One step decodes the whole block, so the tokens are the argmax of the guided logits, computed here."""
    model = fixture_model()
    prompt, _ = fixture_prompts("kv", 96, 2)
    p, mask_id = prompt.shape[1], model.cfg.mask_id
    x, _ = generate(model, prompt, GenConfig(gen_len=8, block_len=8, steps=1, cfg_scale=scale))
    full = torch.cat([prompt, torch.full((2, 8), mask_id)], 1)
    uncond_in = full.clone()
    uncond_in[:, :p] = mask_id
    with torch.no_grad():
        cond, uncond = model(full)[:, p:].double(), model(uncond_in)[:, p:].double()
    guided = _without(uncond + (scale + 1) * (cond - uncond), mask_id)
    assert torch.equal(x[:, p:], guided.argmax(-1))
    plain, _ = generate(model, prompt, GenConfig(gen_len=8, block_len=8, steps=1))
    assert torch.equal(plain[:, p:], _without(cond, mask_id).argmax(-1))


EXACT = [("sparse_dllm", {"keep_ratio": 1.0}), ("fast_dllm", {"mode": "prefix"}), ("fast_dllm", {"mode": "dual"}),
         ("dllm_cache", {"response_interval": 3, "refresh_ratio": 1.0})]


@pytest.mark.parametrize("name, params", EXACT, ids=lambda v: str(v))
@settings(max_examples=4)
@given(data=st.data(), scale=st.floats(0.1, 3.0))
def test_cfg_through_every_exact_cache_equals_vanilla(name, params, data, scale):
    """Guidance runs the unconditional rows as more batch rows, so a cache exact in one layer stays exact."""
    model, prompt, gen = data.draw(dllm_cases(n_layers=1))
    gen = replace(gen, cfg_scale=scale)
    want, _ = generate(model, prompt, gen)
    got, _ = generate(model, prompt, gen, make_cache(name, **params))
    assert torch.equal(got, want)
    assert (got[:, prompt.shape[1]:] != model.cfg.mask_id).all()


def test_llada_only_options_are_refused_in_the_dream_loop_by_name():
    for name, value in (("cfg_scale", 1.0), ("logits_eos_inf", True), ("confidence_eos_eot_inf", True)):
        with pytest.raises(ValueError, match=name):
            GenConfig(loop="dream", **{name: value})
    with pytest.raises(ValueError, match="cfg_scale"):
        GenConfig(cfg_scale=-1.0)
    with pytest.raises(ValueError, match="eot_id"):
        GenConfig(eot_id=-3)
    with pytest.raises(ValueError, match="tempered_confidence"):
        GenConfig(tempered_confidence="yes")
