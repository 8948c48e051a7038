"""Replaying a caching strategy's cheap steps as CUDA graphs.

A block-only step of an 8B model runs ~1000 small kernels over 32 tokens; launched one by one from Python the step
is bound by host overhead (seen on an H100: 24 ms per Sparse-dLLM step at any context, where reading the weights
once takes ~5 ms). Capturing the step once and replaying it removes that overhead. Everything the step reads must
live at the same address at every replay: the strategy writes its caches into persistent buffers, and the inputs
(token ids, positions) are copied into static tensors. One graph per key (the strategy's shapes); graphs are
dropped with the strategy's state at each generation. Any failure to capture falls back to eager execution and
is remembered in `error`.
"""
from __future__ import annotations

from typing import Callable

import torch


class GraphedSteps:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.graphs: dict = {}
        self.captures = 0
        self.error: str | None = None

    def reset(self) -> None:
        self.graphs = {}

    def __call__(self, key, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        """fn(*inputs), replayed from a CUDA graph captured for `key` when enabled and on CUDA."""
        if not self.enabled or self.error is not None or not inputs[0].is_cuda:
            return fn(*inputs)
        if key not in self.graphs:
            try:
                static = [t.clone() for t in inputs]
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    fn(*static)  # warm-up outside the graph (lazy inits, autotuning)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = fn(*static)
                self.graphs[key] = (graph, static, out)
                self.captures += 1
            except Exception as exc:  # noqa: BLE001 - any capture problem: run eagerly, say why
                self.error = f"{type(exc).__name__}: {exc}"
                torch.cuda.synchronize()
                return fn(*inputs)
        graph, static, out = self.graphs[key]
        for s, t in zip(static, inputs):
            s.copy_(t)
        graph.replay()
        return out.clone()
