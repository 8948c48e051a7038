"""Scores shared by attention-guided methods: attention mass per KV head (GQA: mean over the query group).

kvpress convention (specs/kv-baselines.md): score per KV head, averaging the scores of the query heads that share it.
"""
from __future__ import annotations

import torch

from reference.ops.attention import attention_probs


def per_kv_head(scores: torch.Tensor, group: int) -> torch.Tensor:
    """[B, Hq, ...] -> [B, Hkv, ...] by averaging each group of `group` consecutive query heads."""
    b, hq = scores.shape[:2]
    return scores.reshape(b, hq // group, group, *scores.shape[2:]).mean(dim=2)


def window_attention(queries: torch.Tensor, keys: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """Attention probabilities of the last queries (the observation window) over the prefix keys.

    queries: [B, Hq, W, D] are the last W tokens of keys [B, Hkv, L, D] (bottom-right causal).
    Returns [B, Hq, W, n_prefix]: the columns of the first n_prefix positions.
    """
    return attention_probs(queries, keys, causal=True)[..., :n_prefix]


def accumulated_attention(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Sum over all (causal) queries of their attention probabilities: [B, Hq, L] (H2O's accumulated score).

    Computed in query chunks so that 8k-token prompts need O(chunk x L) memory.
    """
    b, hq, n, _ = queries.shape
    total = torch.zeros(b, hq, n, dtype=queries.dtype, device=queries.device)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # Chunk [start, stop) sees keys [0, stop): bottom-right causal over that prefix.
        total[..., :stop] += attention_probs(queries[:, :, start:stop], keys[:, :, :stop], causal=True).sum(dim=2)
    return total
