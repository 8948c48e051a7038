"""PyramidKV (Cai et al., arXiv 2406.02069, Sec. 3.2-3.3): SnapKV scoring with budgets shrinking with depth.

Per-layer prefix budgets (the observation window excluded) follow the official code, Zefan-Cai/KVCache-Factory
(formerly Zefan-Cai/PyramidKV) at commit c97f9d7, `pyramidkv/pyramidkv_utils.py`, `PyramidKVCluster.update_kv`,
with `base` the uniform prefix budget (SnapKV's budget minus the window) and `prefix` the tokens before the window:
- base >= prefix: every layer keeps the whole prefix;
- prefix + window < 2 * base (the prompt is shorter than twice the base): every layer keeps `base`, as SnapKV;
- otherwise an arithmetic progression from layer 0 down to the last layer: smallest = floor(base / beta),
  largest = 2 * base - smallest; when largest reaches the prefix, largest = prefix and smallest = 2 * base - prefix.
  Its mean is `base`, so the total over layers is SnapKV's.
One deliberate deviation: the official code floors the step between layers, so every layer after the first keeps a
little more and the total exceeds the budget by r * L / 2 tokens (r = (largest - smallest) mod (L - 1)); we spread
the exact progression with the largest-remainder rule, so the first and last layers match the official ones and the
total is exactly L * base. Selection within a layer is SnapKV's (observation window, pooling, the window always kept).
docs/kv-baselines.md has a worked example.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from reference.kv.base import METHODS, KVMethod, PrefillLayer
from reference.kv.snapkv import check_params, snapkv_select


def layer_budgets(base: int, prefix: int, window: int, num_layers: int, beta: float) -> list[int]:
    """Prefix budgets (the window excluded) of layers 0..num_layers-1: non-increasing, summing to
    num_layers * min(base, prefix), each at most `prefix`.

    base: prefix tokens SnapKV would keep in every layer; prefix: tokens before the observation window;
    window: the observation window's length (it decides, with the prefix, whether the pyramid applies).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if base < 0 or prefix < 0 or window < 0:
        raise ValueError(f"base, prefix and window must be >= 0, got {base}, {prefix}, {window}")
    if base >= prefix:
        return [prefix] * num_layers
    if num_layers == 1 or prefix + window < 2 * base:
        return [base] * num_layers
    smallest = math.floor(base / beta)
    largest = 2 * base - smallest
    if largest >= prefix:  # the official clamp: the first layer keeps the whole prefix, the mean stays base
        largest, smallest = prefix, 2 * base - prefix
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
        base = max(0, self.token_budget(n) - window_in_context)
        budgets = layer_budgets(base, n - window_in_context, w, layer.num_layers, self.beta)
        return budgets[layer.layer_idx] + window_in_context, w

    def compress(self, layer: PrefillLayer):
        return snapkv_select(layer, self.layer_budget(layer)[0], self.window, self.kernel_size, self.pooling)
