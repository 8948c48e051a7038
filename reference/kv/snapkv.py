"""SnapKV (Li et al., arXiv 2404.14469, Sec. 4.2-4.3): keep what the observation window attends to.

Score of a prefix token = attention probability from the last `window` prompt queries (the observation window),
summed over those queries (eq. 1-2), per KV head as the mean of its query group (kvpress convention), smoothed by
1-D pooling of size `kernel_size` (Sec. 4.3, "clustering via pooling"). The window itself is always kept.
Defaults read from the official code (FasterDecoding/SnapKV, `snapkv/monkeypatch/snapkv_utils.py`, `init_snapkv`):
window 32, kernel_size 5, avgpool (F.avg_pool1d defaults, so padded zeros count), padding kernel_size // 2, stride 1;
`maxpool` is the code's other option. kvpress's SnapKVPress uses kernel 5 and average pooling too (its window is 64).
The softmax of a window query runs over every key it sees (the window included); only prefix columns are scored.
In question-aware mode (`layer.protected > 0`) the observation window is the question, which is kept as the
protected tail; otherwise the window is the last `window` context tokens and counts in the budget (so a budget
smaller than the window still keeps the whole window). docs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores
from reference.kv.scoring import per_kv_head, window_attention


def pool_scores(scores: torch.Tensor, kernel_size: int, pooling: str) -> torch.Tensor:
    """1-D pooling over tokens (SnapKV Sec. 4.3), same length out: scores [B, H, n] -> [B, H, n]."""
    b, h, n = scores.shape
    flat = scores.reshape(b * h, 1, n)
    if pooling == "avgpool":
        # count_include_pad=True like F.avg_pool1d's default (the official code calls it with defaults).
        out = F.avg_pool1d(flat, kernel_size, stride=1, padding=kernel_size // 2)
    elif pooling == "maxpool":
        out = F.max_pool1d(flat, kernel_size, stride=1, padding=kernel_size // 2)
    else:
        raise ValueError(f"pooling must be 'avgpool' or 'maxpool', got {pooling!r}")
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


def check_params(window, kernel_size, pooling) -> None:
    """Errors naming the bad SnapKV-style parameter (shared with PyramidKV)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    # Odd sizes only: with padding kernel_size // 2 an even kernel would return n + 1 scores.
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
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


def snapkv_select(layer: PrefillLayer, budget: int, window: int, kernel_size: int, pooling: str):
    """SnapKV's selection with a given budget of context tokens (PyramidKV passes its per-layer budget)."""
    n = layer.context_length
    if n < 2 or budget >= n:
        return keep_top_scores(layer, torch.arange(n, 0, -1, dtype=torch.float32).expand(*layer.keys.shape[:2], n), budget)
    scores, w = snapkv_scores(layer, window, kernel_size, pooling)
    return keep_prefix_and_window(layer, scores, w, budget)


@METHODS.register("snapkv")
@dataclass
class SnapKV(KVMethod):
    window: int = 32
    kernel_size: int = 5
    pooling: str = "avgpool"
    order = 3  # listing order

    def __post_init__(self) -> None:
        super().__post_init__()
        check_params(self.window, self.kernel_size, self.pooling)

    def compress(self, layer: PrefillLayer):
        return snapkv_select(layer, self.token_budget(layer.context_length), self.window, self.kernel_size, self.pooling)
