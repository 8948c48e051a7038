"""What every caching strategy of the generation loop implements (reference/dllm/generate.py drives it).

The loop decodes a *window* [lo, hi) of positions at a time (LLaDA: the block [bs, be); Dream: [bs - 1, be),
because its logit for position p is read at p - 1). Per step it asks the strategy for the logits of the window's
rows; the strategy decides what to recompute and what to reuse. Each strategy reports the bytes its cache holds
right now (`nbytes`, the sum over the tensors it keeps; `tensors()` lists them so a test can count independently)
and the most it held during a generation (`peak_bytes`). `builds` counts cache constructions, per block.
"""
from __future__ import annotations

import torch

from reference.dllm.model import DLLM
from reference.dllm.timing import NullTimer
from reference.registry import Registry

# Every module of reference/dllm is imported the first time CACHES is read: a new strategy is one file.
CACHES = Registry("dLLM cache", packages=("reference.dllm",))


class DecodeCache:
    """Base: no cache (every step is a dense forward). Subclasses override `step_logits` and keep state."""

    name = "vanilla"  # set by @CACHES.register(name)
    order = float("inf")  # where boards and benchmarks list it
    # Presets: the labels suites compare (boards show them), each with the parameters that define it.
    # Empty: one label, the registered name, with default parameters.
    presets: dict[str, dict] = {}
    sweeps_keep_ratio = False  # suites run it once per --keep-ratios value and per --impl

    def __init__(self):
        self.timer = NullTimer()
        self.peak_bytes = 0
        self.builds: list[int] = []  # cache constructions per block, in block order

    def reset(self, model: DLLM, x: torch.Tensor, prompt_len: int, timer=None) -> None:
        """Called once per generation, before the first block; x [B, L] is prompt + masks."""
        self.timer = timer or NullTimer()
        self.prompt_len = prompt_len
        self.peak_bytes = 0
        self.builds = []
        self.clear()

    def clear(self) -> None:
        """Drop every cached tensor."""

    def begin_block(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.builds.append(0)

    def step_logits(self, model: DLLM, x: torch.Tensor, step: int) -> torch.Tensor:
        """Logits [B, hi - lo, V] of the window at `step` (0-based within the block)."""
        with self.timer.phase("dense"):
            return model(x, rows=slice(self.lo, self.hi))

    def tensors(self) -> list[torch.Tensor]:
        return []

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def _track(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.nbytes())
