"""StreamingLLM (Xiao et al., arXiv 2309.17453, Sec. 3.2): attention sinks plus a recent window.

Keeps the first `sink_tokens` context tokens ("attention sinks", 4 in the paper) and the most recent
`budget - sink_tokens` context tokens (the window is derived from the budget); everything in between is evicted.
In question-aware mode the question follows as the protected tail. docs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores


@METHODS.register("streaming_llm")
@dataclass
class StreamingLLM(KVMethod):
    sink_tokens: int = 4
    order = 1  # listing order

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sink_tokens, bool) or not isinstance(self.sink_tokens, int) or self.sink_tokens < 0:
            raise ValueError(f"sink_tokens must be a non-negative integer, got {self.sink_tokens!r}")

    def compress(self, layer: PrefillLayer):
        n = layer.context_length
        budget = self.token_budget(n)
        sinks = min(self.sink_tokens, budget)
        pos = torch.arange(n, device=layer.keys.device, dtype=torch.float32)
        # Sinks score highest, then recency: keeping the top `budget` is sinks + the last window.
        score = torch.where(pos < sinks, float(2 * n), pos)
        scores = score.expand(layer.keys.shape[0], layer.keys.shape[1], n)
        return keep_top_scores(layer, scores, budget)
