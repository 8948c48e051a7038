"""What the coefficient-space FlashFourierAttention plans share: their cache arguments, made ready once, and the
benchmark's plan-once runner and per-phase timings.

A plan (spectral, token-major, low-rank) is per-cache metadata, made when a layer's cache is built, like
FlashInfer's plan/run split; the timers make the first call, which builds it, outside their CUDA graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class CacheTensors:
    """One side (K or V) of the cache as the kernels read it: the middle's kept channels with unit channel stride
    (a strided view is copied once), the sorted kept list, and the compressed channels' float32 coefficients and
    moment statistics, contiguous; `compressed` is how many channels are compressed, `comp` their sorted list."""
    mid: torch.Tensor
    kept: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    compressed: int
    comp: torch.Tensor


def cache_tensors(args: tuple) -> CacheTensors:
    """(mid_kept, kept_idx, comp_idx, cos, sin, scale, shift) of one side -> CacheTensors."""
    mid, kept, comp, *coef = args
    mid = mid if mid.stride(-1) == 1 else mid.contiguous()
    return CacheTensors(mid, kept.contiguous(), *(t.contiguous() for t in coef), comp.numel(), comp.contiguous())


def varlen_lens(exact_lens: torch.Tensor, mid_lens: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
    """The varlen kernels' LENS [B, 3] int32: row b is (exact length, middle length, period) of sequence b, read as
    LENS + 3 b + k."""
    return torch.stack([exact_lens, mid_lens, periods], dim=1).to(torch.int32).contiguous()


def planned(make_plan: Callable[..., Any], upto: int | None = None, made: dict[int, Any] | None = None,
            **knobs) -> Callable[[dict], Any]:
    """run(inputs): the plan `make_plan(**inputs, **knobs)` made once per input set on the first call (or taken from
    `made`, plans already made, keyed by the id of their input set), then `plan.run()` (or `plan.run(upto)`: phases
    1..upto only)."""
    plans: dict[int, Any] = dict(made or {})

    def run(x: dict) -> Any:
        plan = plans.get(id(x))
        if plan is None:
            plan = plans[id(x)] = make_plan(**x, **knobs)
        return plan.run() if upto is None else plan.run(upto)

    return run


def phase_times(make_plan: Callable[..., Any], phases: tuple[str, ...], graph_timer: Callable[..., float],
                sets: list[dict], **knobs) -> dict:
    """Milliseconds of each of `phases` on the input sets, from graph timings of phases 1..k differenced."""
    cumulative = [graph_timer(planned(make_plan, k, **knobs), sets) for k in range(1, len(phases) + 1)]
    return {name: max(0.0, cumulative[i] - (cumulative[i - 1] if i else 0.0)) for i, name in enumerate(phases)}
