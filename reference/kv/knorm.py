"""KNorm (Devoto et al., arXiv 2406.11430): keep the keys with the lowest L2 norm.

The paper observes that a low L2 norm of a cached key correlates with high attention to it and keeps the
lowest-norm keys: score = -||k||_2 per token and KV head, in at least float32. It needs no attention scores, so it
runs with any attention backend. The protected tail (question-aware mode) is kept as is. docs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores
from reference.kv.scoring import score_dtype


@METHODS.register("knorm")
@dataclass
class KNorm(KVMethod):
    order = 6  # listing order

    def compress(self, layer: PrefillLayer):
        n = layer.context_length
        keys = layer.keys[:, :, :n]
        scores = -keys.to(score_dtype(keys)).norm(dim=-1)
        return keep_top_scores(layer, scores, self.token_budget(n))
