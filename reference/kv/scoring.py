"""Scores shared by attention-guided methods (H2O, SnapKV, PyramidKV, TOVA): attention mass per token.

kvpress convention (docs/kv-baselines.md): score per KV head, averaging the scores of the query heads that share
it. Scores are computed in at least float32 (a bf16 model's probabilities summed over thousands of queries in bf16
would round away the differences the ranking needs); float64 inputs stay float64.
"""
from __future__ import annotations

import torch

from reference.ops.attention import attention_probs

# Elements of one [B, Hq, chunk, L] probability block in `accumulated_attention` (64 MiB in float32).
CHUNK_ELEMENTS = 2**24


def score_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype scores are computed in: x's dtype promoted to at least float32."""
    return torch.promote_types(x.dtype, torch.float32)


def per_kv_head(scores: torch.Tensor, group: int) -> torch.Tensor:
    """[B, Hq, ...] -> [B, Hkv, ...] by averaging each group of `group` consecutive query heads (GQA)."""
    b, hq = scores.shape[:2]
    if group < 1 or hq % group:
        raise ValueError(f"group ({group}) must be a positive divisor of the query heads ({hq})")
    return scores.reshape(b, hq // group, group, *scores.shape[2:]).mean(dim=2)


def window_attention(queries: torch.Tensor, keys: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """Attention probabilities of the last queries (an observation window) over the first n_prefix keys.

    queries: [B, Hq, W, D] are the last W tokens of keys [B, Hkv, L, D] (bottom-right causal, so the softmax runs
    over every key a window query sees, the window included, as in SnapKV's official code).
    Returns [B, Hq, W, n_prefix] in `score_dtype`: the columns of the first n_prefix positions.
    """
    dt = score_dtype(queries)
    return attention_probs(queries.to(dt), keys.to(dt), causal=True)[..., :n_prefix]


def accumulated_attention(queries: torch.Tensor, keys: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """H2O's accumulated attention: sum over all (causal) queries of their attention probabilities.

    queries: [B, Hq, L, D], keys: [B, Hkv, L, D] (a prefill: query i sits at position i).
    Returns [B, Hq, L] in `score_dtype`. Computed in query chunks of `chunk` rows (default: as many as fit in
    CHUNK_ELEMENTS), so an 8k-token prompt needs O(chunk x L) memory instead of O(L^2).
    """
    b, hq, n, _ = queries.shape
    if keys.shape[2] != n:
        raise ValueError(f"queries ({n} tokens) and keys ({keys.shape[2]} tokens) must cover the same prefill")
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS // max(1, b * hq * n))
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    dt = score_dtype(queries)
    total = torch.zeros(b, hq, n, dtype=dt, device=queries.device)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # Rows [start, stop) see keys [0, stop): bottom-right causal over that prefix.
        probs = attention_probs(queries[:, :, start:stop].to(dt), keys[:, :, :stop].to(dt), causal=True)
        total[..., :stop] += probs.sum(dim=2)
    return total
