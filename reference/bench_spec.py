"""What the kernel benchmark (harness/kernels/bench.py) needs from an op and from each implementation of it.

An op joins the benchmark through `OpSpec.bench`, an `OpBench`: the inputs of one cell (a shape, a batch, a context
length) and the bytes one call on them must move (the roofline's numerator). Every registered implementation of such
an op is then benchmarked on those inputs, with no other edit; `register_impl(op, name, bench=ImplBench(...))` adds
optional hooks beside the implementation (its `--impls` name, a graph-capturable entry point, per-phase timers, extra
record fields), and `bench=False` leaves an implementation out (a reference formulation, too slow to time).
A *baseline* (someone else's kernel: PyTorch SDPA, FlashInfer) is timed beside the implementations but is not checked
by the conformance suite: `register_baseline(op, name, ImplBench(prepare=...))`.

Hooks are plain callables, so this module imports nothing but the standard library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ContextManager


class Missing(Exception):
    """An implementation cannot run here: a package that is not installed, no backend for this shape. The benchmark
    records the cell as `missing: <message>` and goes on."""


def no_params(config: Any) -> dict:
    return {}


def any_context(config: Any) -> int:
    return 1


@dataclass(frozen=True)
class OpBench:
    """How the kernel benchmark builds an op's inputs and counts the bytes a call must move.

    inputs(shape, batch, context, dtype, device, config) -> the op's keyword inputs for one cell: `shape` has
      attributes hq, hkv, head_dim (query heads, KV heads, head dimension); `dtype` a torch dtype; `config` the
      benchmark's config (its fields: seed, and the op's own knobs, e.g. num_freqs for a Fourier cache).
    bytes_read(inputs) -> int: the compulsory traffic of one call (each input byte read once, the output written).
    method: the record's `method`, the KV cache the op reads ("full", "fourier").
    batched: the inputs whose first dimension is the batch (the correctness check takes rows 0 and B-1 of these).
    params(config) -> dict: cell parameters the inputs depend on beyond shape, batch, context and dtype (part of
      every cell's key, so two caches never share one).
    min_context(config) -> int: the shortest context the inputs can be built for; `min_context_note` says why.
    extra(inputs) -> dict: fields added to each record's `extra` (e.g. what the full cache would cost).
    """

    inputs: Callable[..., dict]
    bytes_read: Callable[[dict], int]
    method: str
    batched: tuple[str, ...]
    params: Callable[[Any], dict] = no_params
    min_context: Callable[[Any], int] = any_context
    min_context_note: str = ""
    extra: Callable[[dict], dict] | None = None


@dataclass(frozen=True)
class ImplBench:
    """Optional hooks of one benchmarked implementation (every field has a default that suits a plain kernel).

    name: the `--impls` name (default: the registered name). task, label: the record's `task` and `impl` (default:
      the op and the registered name; the built-in baselines keep the names their earlier records carry).
    order: listing and table order (smaller first; default after the others, in registration order).
    prepare(inputs, backend) -> run(inputs): the timed call for one cell, made once per cell (a baseline's host-side
      planning goes here); default `fn(**inputs)` with the registered function. May raise `Missing`.
    fast() -> run(inputs): a fresh call without host-side checks (they synchronize with the GPU), capturable in a
      CUDA graph; the benchmark times it after the checked call passed. `capturable=True` says `prepare`'s run
      already is. Neither: the eager timing alone.
    phases(graph_timer, sets) -> {phase: ms}: time per phase (record `extra.phase_ms`).
    extra(inputs) -> dict: fields added to each record's `extra` (launch knobs, scratch bytes, a kernel's own count).
    resolve(inputs) -> (backend or None, note): once per shape and run, on small inputs of the op, the variant that
      runs here (SDPA's backend); it is recorded in the cell's params["backend"] and passed to `prepare` and
      `context`. Runs with none are recorded as `missing`. `backend_key`: the run record's extra names the choices
      `<backend_key>_backends` (default: the `--impls` name).
    context(backend) -> context manager entered around the check and the timing (SDPA: `sdpa_kernel`).
    """

    name: str | None = None
    task: str | None = None
    label: str | None = None
    order: float = math.inf
    prepare: Callable[[dict, str | None], Callable[[dict], Any]] | None = None
    fast: Callable[[], Callable[[dict], Any]] | None = None
    capturable: bool = False
    phases: Callable[[Callable[..., float], list], dict] | None = None
    extra: Callable[[dict], dict] | None = None
    resolve: Callable[[dict], tuple[str | None, str]] | None = None
    backend_key: str | None = None
    context: Callable[[str | None], ContextManager] | None = None
