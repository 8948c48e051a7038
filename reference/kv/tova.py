"""TOVA, Token Omission Via Attention (Oren et al., arXiv 2401.06104, Sec. 3): keep what the last query attends.

Tokens are ranked by the attention weight of the current (last) query, averaged over heads (per KV head here:
mean over its query group, kvpress convention). The paper evicts one token per decoding step; following kvpress
we apply the policy once after prefill, keeping the top `budget` tokens. In question-aware mode the last query is
the question's last token. specs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores
from reference.kv.scoring import per_kv_head, window_attention


@METHODS.register("tova")
@dataclass
class TOVA(KVMethod):
    name = "tova"

    def compress(self, layer: PrefillLayer):
        n = layer.context_length
        probs = window_attention(layer.queries[:, :, -1:], layer.keys, n)  # [B, Hq, 1, n]
        scores = per_kv_head(probs[:, :, 0], layer.group_size)
        return keep_top_scores(layer, scores, self.token_budget(n))
