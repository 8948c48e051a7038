"""Batched speculative steps (reference/scheduling/batched.py) on a tiny random LLaMA on CPU: sessions of different
lengths, ragged drafts (prompt lookup proposes 0..g tokens) and a batch that changes every iteration produce
exactly each request's greedy output; the real loop with max_batch > 1 finishes every request."""
from __future__ import annotations

import random

import pytest

from reference.scheduling.batched import batched_step
from reference.scheduling.speculative import ModelDraft, PromptLookupDraft, SpecEngine, SpecSession, greedy_decode
from suites.scheduling.test_draft_model import tiny_llama


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from harness.lm.model import load_model

    root = tmp_path_factory.mktemp("tiny")
    target, draft = tiny_llama(root / "t", 2, 32, 0), tiny_llama(root / "d", 1, 16, 1)
    return load_model(str(target)).model, load_model(str(draft)).model


@pytest.mark.parametrize("kind", ["prompt_lookup", "model"])
def test_batched_steps_equal_greedy_with_a_changing_batch(models, kind):
    target, draft = models
    engine = SpecEngine(target, PromptLookupDraft(), 4) if kind == "prompt_lookup" else \
        SpecEngine(target, ModelDraft("d"), 4, draft_model=draft)
    rng = random.Random(0)
    prompts = [[rng.randrange(2, 30) for _ in range(rng.randint(1, 12))] for _ in range(6)]
    prompts[0] = [5, 6, 7, 5, 6, 7, 5, 6]  # repetitive: prompt lookup proposes full drafts
    sessions = [SpecSession(engine, p, 30) for p in prompts]
    ragged = False
    while any(not s.done for s in sessions):
        live = [s for s in sessions if not s.done]
        batch = rng.sample(live, min(len(live), rng.randint(1, 4)))  # preempted ones keep their caches
        before = [len(s.ids) for s in batch]
        records = batched_step(batch)
        assert [len(s.ids) - n for s, n in zip(batch, before)] == [len(r.tokens) for r in records]
        ragged |= len({len(r.tokens) for r in records}) > 1
    assert ragged or kind == "model"  # a random draft model is (almost) never right: one token per step
    for s, p in zip(sessions, prompts):
        assert s.output_ids == greedy_decode(engine, p, 30)


def test_batched_step_refuses_finished_or_foreign_sessions(models):
    engine = SpecEngine(models[0], PromptLookupDraft(), 4)
    other = SpecEngine(models[0], PromptLookupDraft(), 4)
    with pytest.raises(ValueError, match="sessions"):
        batched_step([])
    with pytest.raises(ValueError, match="one engine"):
        batched_step([SpecSession(engine, [3, 4], 5), SpecSession(other, [3, 4], 5)])
