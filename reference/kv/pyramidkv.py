"""PyramidKV (Cai et al., arXiv 2406.02069, Sec. 3.2-3.3): SnapKV scoring with budgets shrinking with depth.

Per-layer prefix budgets (the observation window excluded) form an arithmetic progression from layer 0 (largest)
to the last layer (smallest) whose mean is the uniform prefix budget `base = budget - window`, so the total over
layers is the same as SnapKV's. Schedule read from the official code (Zefan-Cai/PyramidKV,
`pyramidkv/pyramidkv_utils.py`, `PyramidKVCluster.update_kv`): smallest = base / beta, largest = 2 * base -
smallest, beta = 20; when largest would exceed the prefix (`q_len - window`), largest = prefix and smallest =
2 * base - largest, which keeps the mean. We round with the largest-remainder rule so the total is exact (the
official code floors the step, which loses a few tokens). Selection within a layer is SnapKV's (observation window,
pooling, window always kept, so a layer never keeps fewer tokens than its window). docs/kv-baselines.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from reference.kv.base import METHODS, KVMethod, PrefillLayer
from reference.kv.snapkv import check_params, snapkv_select


def layer_budgets(total_per_layer: int, window: int, num_layers: int, beta: float,
                  max_prefix: int | None = None) -> list[int]:
    """Prefix budgets (the window excluded) of layers 0..num_layers-1: non-increasing, summing to
    num_layers * (total_per_layer - window), each at most `max_prefix` (the prefix length) when given.

    total_per_layer: tokens SnapKV would keep in every layer, window included.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    base = max(0, total_per_layer - window)
    if max_prefix is not None and base > max_prefix:
        raise ValueError(f"total_per_layer - window ({base}) exceeds max_prefix ({max_prefix})")
    if num_layers == 1:
        return [base]
    smallest = base / beta
    largest = 2 * base - smallest
    if max_prefix is not None and largest > max_prefix:
        # The official clamp: the first layer keeps the whole prefix, the progression keeps its mean.
        largest, smallest = float(max_prefix), 2 * base - float(max_prefix)
    step = (largest - smallest) / (num_layers - 1)
    raw = [largest - i * step for i in range(num_layers)]
    floors = [math.floor(x + 1e-9) for x in raw]
    short = base * num_layers - sum(floors)
    # Largest remainders get the missing tokens; ties go to lower layers, so the sequence stays non-increasing.
    order = sorted(range(num_layers), key=lambda i: (-(raw[i] - floors[i]), i))
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
    order = 4  # listing order

    def __post_init__(self) -> None:
        super().__post_init__()
        check_params(self.window, self.kernel_size, self.pooling)
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta >= 1:
            raise ValueError(f"beta must be a number >= 1, got {self.beta!r}")

    def layer_budget(self, layer: PrefillLayer) -> tuple[int, int]:
        """(context tokens kept in this layer before the window clamp, observation window length).

        Ratio 0 keeps everything in every layer.
        """
        if not 0 <= layer.layer_idx < layer.num_layers:
            raise ValueError(f"layer.layer_idx ({layer.layer_idx}) must lie in [0, num_layers={layer.num_layers})")
        n = layer.context_length
        if self.compression_ratio == 0.0 or n < 2:
            return n, min(self.window, max(1, n - 1))
        w = layer.protected or min(self.window, n - 1)
        window_in_context = 0 if layer.protected else w
        budgets = layer_budgets(self.token_budget(n), window_in_context, layer.num_layers, self.beta,
                                max_prefix=n - window_in_context)
        return budgets[layer.layer_idx] + window_in_context, w

    def compress(self, layer: PrefillLayer):
        return snapkv_select(layer, self.layer_budget(layer)[0], self.window, self.kernel_size, self.pooling)
