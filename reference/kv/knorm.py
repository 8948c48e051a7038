"""KNorm (Devoto et al., arXiv 2406.11430): keep the keys with the lowest L2 norm.

The paper observes that low key norm correlates with high attention; score = -||k||_2 per token and KV head.
specs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores


@METHODS.register("knorm")
@dataclass
class KNorm(KVMethod):
    name = "knorm"

    def compress(self, layer: PrefillLayer):
        n = layer.context_length
        scores = -layer.keys[:, :, :n].float().norm(dim=-1)
        return keep_top_scores(layer, scores, self.token_budget(n))
