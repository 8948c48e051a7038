"""PyramidKV (Cai et al., arXiv 2406.02069, Sec. 3.2): SnapKV scoring with budgets shrinking with depth.

Per-layer budgets form an arithmetic progression from layer 0 (largest) to the last layer (smallest) with the
same mean as the uniform budget: the official code sets the smallest to (budget - window) / beta and the largest
to 2 * (budget - window) - smallest, beta = 20 (PyramidKV repository, `pyramidkv_utils.py`). Selection within a
layer is SnapKV's (observation window, pooling, window always kept). specs/kv-baselines.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.kv.base import METHODS, KVMethod, PrefillLayer, keep_top_scores
from reference.kv.snapkv import check_pooling, keep_prefix_and_window, snapkv_scores


def layer_budgets(total_per_layer: int, window: int, num_layers: int, beta: float) -> list[int]:
    """Prefix budgets (excluding the window) per layer: decreasing, mean = total_per_layer - window."""
    base = max(0, total_per_layer - window)
    if num_layers == 1:
        return [base]
    smallest = base / beta
    largest = 2 * base - smallest
    step = (largest - smallest) / (num_layers - 1)
    raw = [largest - i * step for i in range(num_layers)]
    # Round while keeping the sum exact (largest remainders first).
    floors = [int(x) for x in raw]
    short = base * num_layers - sum(floors)
    order = sorted(range(num_layers), key=lambda i: raw[i] - floors[i], reverse=True)
    for i in order[: max(0, short)]:
        floors[i] += 1
    return floors


@METHODS.register("pyramidkv")
@dataclass
class PyramidKV(KVMethod):
    window: int = 32
    kernel_size: int = 5
    pooling: str = "avgpool"
    beta: float = 20.0
    name = "pyramidkv"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window must be a positive integer, got {self.window!r}")
        if not isinstance(self.beta, (int, float)) or self.beta < 1:
            raise ValueError(f"beta must be >= 1, got {self.beta!r}")
        check_pooling(self.kernel_size, self.pooling)

    def layer_budget(self, layer: PrefillLayer) -> tuple[int, int]:
        """(tokens kept in this layer, observation window length). Ratio 0 keeps everything in every layer."""
        n = layer.context_length
        if self.compression_ratio == 0.0:
            return n, min(self.window, max(1, n - 1))
        w = layer.protected or min(self.window, n - 1)
        window_in_context = 0 if layer.protected else w
        prefix = layer_budgets(self.token_budget(n), window_in_context, layer.num_layers, self.beta)[layer.layer_idx]
        return min(n, prefix + window_in_context), w

    def compress(self, layer: PrefillLayer):
        budget, _ = self.layer_budget(layer)
        if layer.context_length < 2 or budget >= layer.context_length:
            return keep_top_scores(layer, torch.zeros(layer.keys.shape[0], layer.keys.shape[1], layer.context_length), budget)
        scores, w = snapkv_scores(layer, self.window, self.kernel_size, self.pooling)
        return keep_prefix_and_window(layer, scores, w, budget)
