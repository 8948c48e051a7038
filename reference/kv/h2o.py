"""H2O, Heavy-Hitter Oracle (Zhang et al., arXiv 2306.14048, Sec. 3-4): heavy hitters plus recent tokens.

A token's score is its accumulated attention (Sec. 4.1, the greedy H2 eviction score): the sum, over every prefill
query that sees it, of that query's softmax probability on it; per KV head, the mean over the head's query group
(kvpress convention). The paper evicts one token per step during generation; following kvpress we apply the policy
once after prefill. The budget is split between the most recent context tokens (`recent_ratio`, half in the
paper's experiments) and the heavy hitters among the rest. In question-aware mode the question's queries add to
the scores too (they are prefill queries), and the question itself is kept as the protected tail.
docs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores
from reference.kv.scoring import accumulated_attention, per_kv_head


@METHODS.register("h2o")
@dataclass
class H2O(KVMethod):
    recent_ratio: float = 0.5
    order = 2  # listing order

    def __post_init__(self) -> None:
        super().__post_init__()
        r = self.recent_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
            raise ValueError(f"recent_ratio must be a number in [0, 1], got {r!r}")

    def heavy_hitter_scores(self, layer: PrefillLayer) -> torch.Tensor:
        """Accumulated attention of every context token over all prefill queries: [B, Hkv, context_length]."""
        acc = accumulated_attention(layer.queries, layer.keys)
        return per_kv_head(acc, layer.group_size)[..., : layer.context_length]

    def recent_tokens(self, budget: int) -> int:
        """How many of the `budget` context tokens are the most recent ones."""
        return min(budget, int(round(self.recent_ratio * budget)))

    def compress(self, layer: PrefillLayer):
        n = layer.context_length
        budget = min(n, self.token_budget(n))
        recent = self.recent_tokens(budget)
        scores = self.heavy_hitter_scores(layer)
        # The recent window outranks every heavy-hitter score (accumulated attention is at most L).
        if recent:
            scores[..., n - recent :] = scores.amax() + 1 + torch.arange(recent, dtype=scores.dtype, device=scores.device)
        return keep_top_scores(layer, scores, budget)
