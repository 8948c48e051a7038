"""What every caching strategy of the generation loop implements (reference/dllm/generate.py drives it).

The loop decodes a block [lo, hi) of positions at a time and asks, per step, for the logits of the rows
[lo - lead, hi): `lead` is 0 for LLaDA and 1 for Dream, whose logit for position p is read at row p - 1 (with Dream's
older rule, `dream_step0="schedule"`, the block itself starts one position early and lead is 0). The strategy decides
what to recompute and what to reuse; a step that runs only the block's rows returns the block's first row in place of
row lo - 1, as the official Dream loops do (that row is only read at step 0, when every strategy runs densely).
`key_mask` [B, L] (bool, False at left padding; None without padding) marks the keys no query may attend: every
strategy applies it to every attention it runs. `min_block_steps` is the fewest forwards the loop runs per block
(Fast-dLLM's official loops run a second one even when step 0 completed the block). Each strategy reports the bytes its cache holds
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
    min_block_steps = 1  # forwards per block the loop runs at least, even when the block is already complete

    def __init__(self):
        self.timer = NullTimer()
        self.peak_bytes = 0
        self.builds: list[int] = []  # cache constructions per block, in block order

    def reset(self, model: DLLM, x: torch.Tensor, prompt_len: int, timer=None,
              key_mask: torch.Tensor | None = None) -> None:
        """Called once per generation, before the first block; x [B, L] is prompt + masks; key_mask [B, L] or None."""
        self.timer = timer or NullTimer()
        self.prompt_len = prompt_len
        self.key_mask = key_mask
        self.peak_bytes = 0
        self.builds = []
        self.clear()

    def clear(self) -> None:
        """Drop every cached tensor."""

    def begin_block(self, lo: int, hi: int, lead: int = 0) -> None:
        self.lo, self.hi, self.lead = lo, hi, lead
        self.builds.append(0)

    @property
    def rows(self) -> slice:
        """The rows whose logits a step returns: [lo - lead, hi)."""
        return slice(self.lo - self.lead, self.hi)

    def lead_rows(self, block_logits: torch.Tensor) -> torch.Tensor:
        """Logits of the block's rows [B, hi - lo, V] -> those of `rows` (the first row repeated `lead` times)."""
        return torch.cat([block_logits[:, :1]] * self.lead + [block_logits], 1) if self.lead else block_logits

    def step_logits(self, model: DLLM, x: torch.Tensor, step: int) -> torch.Tensor:
        """Logits [B, hi - lo + lead, V] of `rows` at `step` (0-based within the block)."""
        with self.timer.phase("dense"):
            return model(x, rows=self.rows, key_mask=self.key_mask)

    def tensors(self) -> list[torch.Tensor]:
        return []

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def _track(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.nbytes())
