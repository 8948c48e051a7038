"""The model integration: compressed caches inside a real transformers model give the right logits.

The question is a multi-token chunk appended after compression; its mask must be built for the kept length and
its positions counted from the true length (docs/design.md). We check our flow against the stock model run on the
whole sequence with an explicit 4-D mask that hides the evicted context tokens from the question.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.lm.generate import capture, forward, generate
from harness.lm.model import native_attention
from reference.kv import make_method
from reference.kv.base import KVMethod, TokenCache


@dataclass
class KeepPositions(KVMethod):
    """Test method: keeps a fixed set of context positions in every layer and head."""

    positions: tuple[int, ...] = ()

    def compress(self, layer):
        n = layer.context_length
        idx = torch.tensor([p for p in self.positions if p < n] + list(range(n, layer.length)))
        return TokenCache(layer.keys[:, :, idx], layer.values[:, :, idx])


def _native_last_logits(lm, ids: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Stock model (sdpa) over ids [1, L] with a boolean 4-D mask `visible` [L, L]."""
    mask = torch.zeros(1, 1, *visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)
    with native_attention(lm), torch.no_grad():
        return lm.model(input_ids=ids, attention_mask=mask).logits[0, -1]


@settings(max_examples=4)
@given(seed=st.integers(0, 2**16), n_ctx=st.integers(20, 90), n_q=st.integers(2, 12), keep=st.floats(0.2, 0.9))
def test_question_chunk_sees_only_kept_tokens_at_true_positions(tiny_lm, seed, n_ctx, n_q, keep):
    g = torch.Generator().manual_seed(seed)
    vocab = tiny_lm.model.config.vocab_size
    ctx = torch.randint(10, vocab, (1, n_ctx), generator=g)
    question = torch.randint(10, vocab, (1, n_q), generator=g)
    kept = sorted(torch.randperm(n_ctx, generator=g)[: max(1, int(keep * n_ctx))].tolist())
    captured = capture(tiny_lm, ctx)
    cache = captured.cache.compress(KeepPositions(positions=tuple(kept)))
    ours = forward(tiny_lm, question, n_ctx, cache)

    total = n_ctx + n_q
    visible = torch.ones(total, total, dtype=torch.bool).tril()
    evicted = torch.ones(n_ctx, dtype=torch.bool)
    evicted[kept] = False
    visible[n_ctx:, :n_ctx] &= ~evicted  # the question no longer sees evicted context tokens
    native = _native_last_logits(tiny_lm, torch.cat([ctx, question], 1), visible)
    torch.testing.assert_close(ours, native, atol=2e-4, rtol=2e-4)


def test_full_method_decodes_like_the_stock_model(tiny_lm):
    g = torch.Generator().manual_seed(7)
    vocab = tiny_lm.model.config.vocab_size
    ctx, question = torch.randint(10, vocab, (1, 64), generator=g), torch.randint(10, vocab, (1, 5), generator=g)
    gen = generate(tiny_lm, capture(tiny_lm, ctx), make_method("full"), question, max_new_tokens=6)
    ids = torch.cat([ctx, question], 1)
    expected = []
    with native_attention(tiny_lm), torch.no_grad():
        for _ in range(len(gen.token_ids)):
            token = int(tiny_lm.model(input_ids=ids).logits[0, -1].argmax())
            expected.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
    assert gen.token_ids == expected
    assert gen.kv_bytes == gen.kv_bytes_full > 0


def test_question_aware_prefill_keeps_question(tiny_lm):
    g = torch.Generator().manual_seed(3)
    vocab = tiny_lm.model.config.vocab_size
    ctx, question = torch.randint(10, vocab, (1, 80), generator=g), torch.randint(10, vocab, (1, 6), generator=g)
    captured = capture(tiny_lm, ctx, question)
    assert captured.protected == 6 and captured.length == 86
    cache = captured.cache.compress(KeepPositions(positions=(0, 1, 2)), protected=6)
    assert all(len(layer.state) == 3 + 6 for layer in cache.layers)


def test_capture_rejects_prompt_longer_than_model(tiny_lm):
    with pytest.raises(ValueError, match="exceeds the model"):
        capture(tiny_lm, torch.zeros(1, tiny_lm.max_positions + 1, dtype=torch.long))


def test_attention_without_cache_kwarg_is_a_clear_error(tiny_lm):
    from harness.lm.kv_cache import ATTN_IMPLEMENTATION

    tiny_lm.model.config._attn_implementation = ATTN_IMPLEMENTATION
    with pytest.raises(RuntimeError, match="longctx_cache"):
        with torch.no_grad():
            tiny_lm.model(input_ids=torch.tensor([[5, 6, 7]]))
