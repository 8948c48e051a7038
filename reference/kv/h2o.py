"""H2O, Heavy-Hitter Oracle (Zhang et al., arXiv 2306.14048, Sec. 3-4): heavy hitters plus recent tokens.

A token's score is its accumulated attention: the sum over all queries that see it of their attention
probability (Sec. 4.1, the "greedy" eviction policy applied once after prefill, kvpress convention), per KV head
as the mean over its query group. The budget is split between the most recent tokens (`recent_ratio`, half in
the paper) and the heavy hitters among the rest. specs/kv-baselines.md.
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
    name = "h2o"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.recent_ratio, (int, float)) or not 0.0 <= self.recent_ratio <= 1.0:
            raise ValueError(f"recent_ratio must lie in [0, 1], got {self.recent_ratio!r}")

    def heavy_hitter_scores(self, layer: PrefillLayer) -> torch.Tensor:
        """Accumulated attention of every context token over the context's queries: [B, Hkv, n]."""
        n = layer.context_length
        acc = accumulated_attention(layer.queries[:, :, :n], layer.keys[:, :, :n])
        return per_kv_head(acc, layer.group_size)

    def compress(self, layer: PrefillLayer):
        n = layer.context_length
        budget = self.token_budget(n)
        recent = min(budget, int(round(self.recent_ratio * budget)))
        scores = self.heavy_hitter_scores(layer)
        # The recent window outranks every heavy-hitter score.
        scores[..., n - recent :] = scores.amax() + 1 + torch.arange(recent, dtype=scores.dtype, device=scores.device)
        return keep_top_scores(layer, scores, budget)
