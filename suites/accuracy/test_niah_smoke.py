"""Accuracy smoke test on the embedded model: the full cache retrieves every needle at 1k tokens.

docs/evaluation.md: in completion form the embedded SmolLM2-135M-Instruct retrieves the passkey at these lengths.
"""
from __future__ import annotations

import pytest
import torch

from harness.kv import niah
from harness.lm.generate import capture, generate
from reference.kv import make_method

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(embedded_lm):
    """The shared embedded model. Generating switches it to our attention (harness.lm.generate), which the speculative
    engine refuses: the loaded implementation is put back for the next module."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = embedded_lm.model.config
    attention = config._attn_implementation
    yield embedded_lm
    config._attn_implementation = attention


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_full_cache_retrieves_needle_at_1k(smollm2, depth):
    sample = niah.build_sample(smollm2.tokenizer, 1024, depth, trial=0, seed=0)
    captured = capture(smollm2, torch.tensor([sample.context_ids]))
    gen = generate(smollm2, captured, make_method("full"), torch.tensor([sample.question_ids]), max_new_tokens=8)
    assert niah.score(gen.text, sample.answer) == 1.0, f"depth {depth}: expected {sample.answer}, got {gen.text!r}"
    assert gen.kv_bytes == gen.kv_bytes_full


def test_calibration_fixture_fills_every_search_prompt(smollm2):
    """FourierAttention's search averages over 4 prompts of 2048 tokens; a short fixture silently gives fewer."""
    from harness.kv.run_niah import calibration_ids

    prompts = calibration_ids(smollm2)
    assert [p.shape for p in prompts] == [torch.Size([1, 2048])] * 4
