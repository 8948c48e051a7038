"""TOVA, Token Omission Via Attention (Oren et al., arXiv 2401.06104, Sec. 3): keep what the last query attends.

Tokens are ranked by the attention weight of the current (last) query averaged over all heads of the layer
(Sec. 3: one ranking per layer, so every head keeps the same tokens). The paper evicts one token per decoding step; following kvpress
we apply the policy once after prefill, keeping the top `budget` tokens. In question-aware mode the last query is
the question's last token. docs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores
from reference.kv.scoring import window_attention


@METHODS.register("tova")
@dataclass
class TOVA(KVMethod):
    order = 5  # listing order

    def compress(self, layer: PrefillLayer):
        n = layer.context_length
        probs = window_attention(layer.queries[:, :, -1:], layer.keys, n)  # [B, Hq, 1, n]
        scores = probs[:, :, 0].mean(dim=1, keepdim=True).expand(-1, layer.keys.shape[1], -1)
        return keep_top_scores(layer, scores, self.token_budget(n))
