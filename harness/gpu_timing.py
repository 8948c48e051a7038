"""GPU timing for the kernel benchmarks: median latency, the copy-bandwidth roofline, inputs that defeat the L2.

`bench_ms` is `triton.testing.do_bench` (median of the timed runs; it flushes the L2 before every run, the guard
against timing cached data that docs/design.md asks for). `RotatingInputs` adds a second guard: it holds several
copies of a kernel's inputs and hands out the next one on every call, so even without the flush a repeated
call cannot find its inputs in the L2 (50 MiB on an H100). `copy_bandwidth_gbs` measures, in the same process,
the bandwidth a device-to-device copy reaches: the practical roofline a memory-bound decode kernel is held to.

Bandwidths are in GB/s (1e9 bytes per second), as vendors and the roofline literature quote them.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable

import torch

from reference.ops.checks import finite_checks

DEFAULT_MIN_TOTAL_BYTES = 200 * 10**6  # 4x an H100's 50 MiB L2
DEFAULT_MAX_COPIES = 64


def require_cuda(what: str = "GPU timing") -> None:
    """Raise RuntimeError with a clear message when no CUDA device is usable."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"{what} needs a CUDA GPU, and torch.cuda.is_available() is False "
                           f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")


def bench_ms(fn: Callable[[], Any], warmup: int = 25, rep: int = 100) -> float:
    """Median wall time of one call of `fn` on the GPU, in milliseconds (L2 flushed before each timed run).

    warmup, rep: milliseconds of warm-up and of timed runs (do_bench's meaning, not counts).
    """
    require_cuda("bench_ms")
    with finite_checks(False):  # the ops' NaN/inf check (a reduction and a host sync) is not the kernel's time
        try:
            from triton.testing import do_bench
        except ImportError:  # no Triton: the same protocol with CUDA events
            return _bench_ms_events(fn, warmup, rep)
        return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def _bench_ms_events(fn: Callable[[], Any], warmup: int, rep: int) -> float:
    """do_bench's protocol without Triton: estimate, warm up, then time each run between L2 flushes."""
    flush = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda")
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        flush.zero_()
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = max(start.elapsed_time(end) / 5, 1e-3)
    for _ in range(max(1, int(warmup / estimate))):
        fn()
    n = max(1, int(rep / estimate))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for s, e in zip(starts, ends):
        flush.zero_()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return float(statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)))


def achieved_bandwidth(nbytes: float, ms: float) -> float:
    """GB/s reached when `nbytes` move in `ms` milliseconds."""
    if not (isinstance(nbytes, (int, float)) and nbytes >= 0 and math.isfinite(nbytes)):
        raise ValueError(f"nbytes must be a finite number >= 0, got {nbytes!r}")
    if not (isinstance(ms, (int, float)) and ms > 0 and math.isfinite(ms)):
        raise ValueError(f"ms must be a finite positive number, got {ms!r}")
    return nbytes / (ms * 1e-3) / 1e9


def copy_bandwidth_gbs(device: str = "cuda", nbytes: int = 1 << 30, warmup: int = 25, rep: int = 100) -> float:
    """Device-to-device copy bandwidth in GB/s: `dst.copy_(src)` of `nbytes`, counted as 2 * nbytes (read + write)."""
    require_cuda("copy_bandwidth_gbs")
    if not isinstance(nbytes, int) or nbytes < 1 << 20:
        raise ValueError(f"nbytes must be an int >= 1 MiB (to defeat the L2), got {nbytes!r}")
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    try:
        ms = bench_ms(lambda: dst.copy_(src), warmup=warmup, rep=rep)
    finally:
        del src, dst
    return achieved_bandwidth(2 * nbytes, ms)


def tensor_bytes(inputs: Any) -> int:
    """Bytes of every tensor in a (nested) dict/list/tuple of inputs."""
    if isinstance(inputs, torch.Tensor):
        return inputs.numel() * inputs.element_size()
    if isinstance(inputs, dict):
        return sum(tensor_bytes(v) for v in inputs.values())
    if isinstance(inputs, (list, tuple)):
        return sum(tensor_bytes(v) for v in inputs)
    return 0


def copies_needed(bytes_per_copy: int, min_total_bytes: int = DEFAULT_MIN_TOTAL_BYTES, min_copies: int = 2,
                  max_copies: int = DEFAULT_MAX_COPIES) -> int:
    """How many copies of an input set exceed `min_total_bytes` together: at least `min_copies`, at most `max_copies`."""
    if bytes_per_copy <= 0:
        return max(1, min_copies)
    return int(min(max_copies, max(min_copies, math.ceil(min_total_bytes / bytes_per_copy))))


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if 0 in value.stride() or value.is_contiguous():
            return value.clone()
        # A view into padded rows keeps its strides (a kernel timed on the copy reads the same layout).
        return torch.empty_strided(value.size(), value.stride(), dtype=value.dtype, device=value.device).copy_(value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    return value


class RotatingInputs:
    """k copies of a kernel's keyword inputs, handed out in turn so consecutive calls read different memory.

    RotatingInputs(inputs) makes enough copies (`copies_needed`) that together they exceed `min_total_bytes`;
    give `copies` to fix the count (1 keeps the original alone, for caches too large to copy). The first copy is
    `inputs` itself (no clone). Call `next()` for the next copy, or `call(fn)` for `fn(**next())`.
    """

    def __init__(self, inputs: dict, copies: int | None = None, min_total_bytes: int = DEFAULT_MIN_TOTAL_BYTES,
                 max_copies: int = DEFAULT_MAX_COPIES):
        if not isinstance(inputs, dict):
            raise TypeError(f"inputs must be a dict of keyword arguments, got {type(inputs).__name__}")
        self.bytes_per_copy = tensor_bytes(inputs)
        n = copies if copies is not None else copies_needed(self.bytes_per_copy, min_total_bytes, 2, max_copies)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"copies must be a positive int, got {n!r}")
        self.sets = [inputs] + [_clone(inputs) for _ in range(n - 1)]
        self._i = -1

    def __len__(self) -> int:
        return len(self.sets)

    @property
    def total_bytes(self) -> int:
        return self.bytes_per_copy * len(self.sets)

    def next(self) -> dict:
        self._i = (self._i + 1) % len(self.sets)
        return self.sets[self._i]

    def call(self, fn: Callable[..., Any]) -> Any:
        return fn(**self.next())


def graph_ms(run: Callable[[dict], Any], sets: list[dict], replays: int = 50, warmup: int = 5) -> float:
    """Median GPU time of one `run(inputs)` call, with host work (checks, launches) taken out.

    One CUDA graph calls `run` once on each input set in turn (so consecutive calls read different memory, as with
    RotatingInputs); the graph is replayed `replays` times between CUDA events and the median replay time is divided
    by len(sets). `run` must be capturable: no host synchronization (use a kernel's unchecked entry point; the ops'
    NaN/inf check is off in here). Raises RuntimeError when capture fails; callers fall back to `bench_ms`.
    """
    require_cuda("graph_ms")
    with finite_checks(False):
        return _graph_ms(run, sets, replays, warmup)


def _graph_ms(run: Callable[[dict], Any], sets: list[dict], replays: int, warmup: int) -> float:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # compile and allocate outside the capture
        for x in sets:
            run(x)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for x in sets:
                run(x)
    except Exception as exc:  # noqa: BLE001 - any capture error means "not capturable"
        raise RuntimeError(f"CUDA graph capture failed: {type(exc).__name__}: {exc}") from exc
    for _ in range(warmup):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / len(sets))
    times.sort()
    return float(times[len(times) // 2])
