"""Per-phase wall time of a generation (dense steps, scoring, sparse steps, ...), exclusive of nested phases.

On CUDA each phase is bracketed by CUDA events (no host sync inside the loop); `totals()` synchronises once at the
end. A phase opened inside another (scoring inside the dense step that builds the cache) is subtracted from its
parent, so the totals add up to the generation's time.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class PhaseTimer:
    def __init__(self, device: torch.device | str | None = None):
        self.cuda = torch.device(device).type == "cuda" if device is not None else False
        self._entries: list[list] = []  # [name, start, end, parent index]
        self._stack: list[int] = []

    def _mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    @contextmanager
    def phase(self, name: str):
        idx = len(self._entries)
        self._entries.append([name, self._mark(), None, self._stack[-1] if self._stack else None])
        self._stack.append(idx)
        try:
            yield
        finally:
            self._stack.pop()
            self._entries[idx][2] = self._mark()

    def totals(self) -> dict[str, float]:
        """Seconds per phase name, each phase exclusive of the phases nested in it."""
        if self.cuda:
            torch.cuda.synchronize()
        elapsed = [((s.elapsed_time(e) / 1e3) if self.cuda else (e - s)) for _, s, e, _ in self._entries]
        exclusive = list(elapsed)
        for i, (_, _, _, parent) in enumerate(self._entries):
            if parent is not None:
                exclusive[parent] -= elapsed[i]
        out: dict[str, float] = {}
        for (name, *_), t in zip(self._entries, exclusive):
            out[name] = out.get(name, 0.0) + t
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, *_ in self._entries:
            out[name] = out.get(name, 0) + 1
        return out


class NullTimer:
    """A timer that records nothing (the default when no one asked for phases)."""

    @contextmanager
    def phase(self, name: str):
        yield

    def totals(self) -> dict[str, float]:
        return {}

    def counts(self) -> dict[str, int]:
        return {}
