"""The loop-level behaviours of the official code (reference/dllm/generate.py; docs/sparse-dllm.md, "Official code"):

- left padding with an attention mask: no query ever sees a padded key, so what the padding holds changes nothing,
  in every cache; the Dream loop refuses padding;
- Dream with blocks: step 0 commits the block's first token (the argmax of the row before the block) and nothing
  else, and the caches see the block [bs, be); `dream_step0="schedule"` keeps the earlier rule;
- Fast-dLLM: the benchmark stops a block once it is complete; `extra_forward` runs the official loops' second
  forward after a step 0 that completed the block, which changes no token.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.dllm import make_cache
from reference.dllm.generate import GenConfig, dream_counts, generate
from suites.methods.dllm_fixture import fixture_model, fixture_prompts
from suites.strategies import dllm_cases, seeds

CACHES = [("vanilla", {}), ("sparse_dllm", {"keep_ratio": 0.5}), ("fast_dllm", {"mode": "prefix"}),
          ("fast_dllm", {"mode": "dual"}), ("dllm_cache", {"response_interval": 2}),
          ("dllm_cache", {"response_interval": 2, "rule": "legacy"})]


pytestmark = pytest.mark.usefixtures("one_thread_module")


def _padded(prompt: torch.Tensor, pads: list[int], width: int, seed: int, vocab: int):
    """prompt with `width` columns of random tokens in front; row b's first pads[b] of them are padding."""
    g = torch.Generator().manual_seed(seed)
    front = torch.randint(0, vocab - 1, (prompt.shape[0], width), generator=g)
    mask = torch.ones(prompt.shape[0], width + prompt.shape[1], dtype=torch.long)
    for b, n in enumerate(pads):
        mask[b, :n] = 0
    return torch.cat([front, prompt], 1), mask


@pytest.mark.parametrize("name, params", CACHES, ids=lambda v: str(v))
@settings(max_examples=6)
@given(data=st.data(), width=st.integers(1, 6), seed=seeds())
def test_padded_keys_are_invisible_to_every_query(name, params, data, width, seed):
    model, prompt, gen = data.draw(dllm_cases())
    pads = data.draw(st.lists(st.integers(0, width), min_size=prompt.shape[0], max_size=prompt.shape[0]))
    if not any(pads):
        pads[0] = width
    vocab = model.cfg.vocab_size
    padded, mask = _padded(prompt, pads, width, seed, vocab)
    other = padded.clone()
    noise = torch.randint(0, vocab - 1, padded.shape, generator=torch.Generator().manual_seed(seed + 1))
    other[mask == 0] = noise[mask == 0]
    a, _ = generate(model, padded, gen, make_cache(name, **params), attention_mask=mask)
    b, _ = generate(model, other, gen, make_cache(name, **params), attention_mask=mask)
    p = padded.shape[1]
    assert torch.equal(a[:, p:], b[:, p:]), "a padded token changed the generation"
    assert (a[:, p:] != model.cfg.mask_id).all()


@settings(max_examples=4)
@given(data=st.data())
def test_padding_on_the_fixture_matches_masking_by_hand_and_is_refused_by_dream(data):
    """The padded row decodes what a dense forward with the padded keys masked out gives (one step, one block)."""
    model = fixture_model()
    prompt, _ = fixture_prompts("passkey", 64, 2)
    padded, mask = _padded(prompt, [3, 0], 3, data.draw(seeds()), model.cfg.vocab_size)
    cfg = GenConfig(gen_len=8, block_len=8, steps=1)
    x, _ = generate(model, padded, cfg, attention_mask=mask)
    full = torch.cat([padded, torch.full((2, 8), model.cfg.mask_id)], 1)
    key_mask = torch.cat([mask.bool(), torch.ones(2, 8, dtype=torch.bool)], 1)
    with torch.no_grad():
        logits = model(full, key_mask=key_mask)[:, padded.shape[1]:].double()
    logits[..., model.cfg.mask_id] = float("-inf")
    assert torch.equal(x[:, padded.shape[1]:], logits.argmax(-1))
    with pytest.raises(ValueError, match="attention_mask"):
        generate(model, padded, replace(cfg, loop="dream"), attention_mask=mask)
    with pytest.raises(ValueError, match="attention_mask"):
        generate(model, padded, cfg, attention_mask=mask[:, 1:])


@settings(max_examples=8)
@given(data=st.data())
def test_dream_step0_commits_only_the_blocks_first_token(data):
    model, prompt, gen = data.draw(dllm_cases(loop="dream"))
    b, p = prompt.shape
    blocks = gen.gen_len // gen.block_len
    x, stats = generate(model, prompt, gen)
    per_block = stats["steps"] // blocks
    assert stats["committed_per_step"][::per_block] == [b] * blocks, "step 0 commits one token per row"
    # The first block's first token is the argmax of the logit row before it, from a dense forward over the masks.
    start = torch.cat([prompt, torch.full((b, gen.gen_len), model.cfg.mask_id)], 1)
    with torch.no_grad():
        row = model(start)[:, p - 1].double()
    row[:, model.cfg.mask_id] = float("-inf")
    assert torch.equal(x[:, p], row.argmax(-1))
    # The rest of the block follows Dream's count schedule from step 1 on.
    left = gen.block_len - 1
    expected = []
    for s in range(1, gen.steps_per_block):
        k = dream_counts(left, s, gen.steps_per_block)
        expected.append(b * k)
        left -= k
    assert stats["committed_per_step"][1:per_block] == expected


@settings(max_examples=6)
@given(data=st.data())
def test_dream_caches_see_the_block_and_the_schedule_option_keeps_the_earlier_window(data):
    model, prompt, gen = data.draw(dllm_cases(loop="dream"))
    p, total = prompt.shape[1], prompt.shape[1] + gen.gen_len
    for step0, held in (("first_token", total - gen.block_len), ("schedule", total - gen.block_len - 1)):
        cache = make_cache("sparse_dllm", keep_ratio=1.0)
        generate(model, prompt, replace(gen, dream_step0=step0), cache)
        if gen.steps_per_block >= 2:
            assert cache.kept_idx[0].shape[1] == held, step0  # every position outside the block the cache saw
    old, stats = generate(model, prompt, replace(gen, dream_step0="schedule"))
    first = dream_counts(gen.block_len, 0, gen.steps_per_block) * prompt.shape[0]
    assert stats["committed_per_step"][0] == first, "the earlier rule commits Dream's count at step 0"
    assert (old[:, p:] != model.cfg.mask_id).all()


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_fast_dllm_extra_forward_on_the_fixture_changes_forwards_not_tokens(mode):
    """A threshold the fixture's first step meets completes each block at step 0: one forward per block here, two
    in the official loops."""
    model = fixture_model()
    prompt, _ = fixture_prompts("copy", 96, 2)
    cfg = GenConfig(gen_len=16, block_len=8, steps=16, threshold=1e-9)
    ours, st_ours = generate(model, prompt, cfg, make_cache("fast_dllm", mode=mode))
    official, st_off = generate(model, prompt, cfg, make_cache("fast_dllm", mode=mode, extra_forward=True))
    assert torch.equal(ours, official)
    assert st_ours["steps"] == 2 and st_off["steps"] == 4
    assert st_off["committed_per_step"] == [16, 0, 16, 0]
    with pytest.raises(ValueError, match="extra_forward"):
        make_cache("fast_dllm", extra_forward="yes")
