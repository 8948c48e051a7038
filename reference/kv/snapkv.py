"""SnapKV (Li et al., arXiv 2404.14469, Sec. 4.2-4.3): keep what the observation window attends to.

Score of a prefix token = attention probability from the last `window` prompt queries (the observation window),
summed over those queries (eq. 1-2), per KV head as the mean of its query group (kvpress convention), smoothed by
1-D pooling of size `kernel_size` (Sec. 4.3, "clustering via pooling"). The window itself is always kept.
Defaults read from the official code (FasterDecoding/SnapKV, `snapkv_utils.py`): window 32, kernel 5, avgpool,
padding kernel_size // 2, stride 1. In question-aware mode (`layer.protected > 0`) the observation window is the
question, which is kept as the protected tail. specs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores
from reference.kv.scoring import per_kv_head, window_attention


def pool_scores(scores: torch.Tensor, kernel_size: int, pooling: str) -> torch.Tensor:
    """1-D pooling over tokens, same length out: scores [B, H, n] -> [B, H, n]."""
    b, h, n = scores.shape
    flat = scores.reshape(b * h, 1, n)
    if pooling == "avgpool":
        # count_include_pad=True like F.avg_pool1d's default (the official code calls it with defaults).
        out = F.avg_pool1d(flat, kernel_size, stride=1, padding=kernel_size // 2)
    else:
        out = F.max_pool1d(flat, kernel_size, stride=1, padding=kernel_size // 2)
    return out.reshape(b, h, n)


def snapkv_scores(layer: PrefillLayer, window: int, kernel_size: int, pooling: str) -> tuple[torch.Tensor, int]:
    """Smoothed window-attention scores of the prefix [B, Hkv, n_prefix] and the window length used."""
    if layer.protected:
        w, n_prefix = layer.protected, layer.context_length
    else:
        w = min(window, layer.context_length - 1)
        n_prefix = layer.context_length - w
    probs = window_attention(layer.queries[:, :, -w:], layer.keys, n_prefix)  # [B, Hq, w, n_prefix]
    scores = per_kv_head(probs.sum(dim=2), layer.group_size)
    return pool_scores(scores, kernel_size, pooling), w


def check_pooling(kernel_size, pooling) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if pooling not in ("avgpool", "maxpool"):
        raise ValueError(f"pooling must be 'avgpool' or 'maxpool', got {pooling!r}")


def keep_prefix_and_window(layer: PrefillLayer, scores: torch.Tensor, window: int, budget: int):
    """Top-(budget - window) prefix tokens by `scores`, plus the whole window (and the protected tail)."""
    n = layer.context_length
    if layer.protected:
        return keep_top_scores(layer, scores, budget)
    # The window sits at the end of the context: give it scores above every prefix token.
    top = scores.amax() + 1
    full = torch.cat([scores, top.expand(*scores.shape[:2], n - scores.shape[-1])], dim=-1)
    return keep_top_scores(layer, full, max(budget, n - scores.shape[-1]))


@METHODS.register("snapkv")
@dataclass
class SnapKV(KVMethod):
    window: int = 32
    kernel_size: int = 5
    pooling: str = "avgpool"
    name = "snapkv"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window must be a positive integer, got {self.window!r}")
        check_pooling(self.kernel_size, self.pooling)

    def compress(self, layer: PrefillLayer):
        budget = self.token_budget(layer.context_length)
        if layer.context_length < 2 or budget >= layer.context_length:
            return keep_top_scores(layer, torch.zeros(layer.keys.shape[0], layer.keys.shape[1], layer.context_length), budget)
        scores, w = snapkv_scores(layer, self.window, self.kernel_size, self.pooling)
        return keep_prefix_and_window(layer, scores, w, budget)
