"""The kernels benchmark: decode attention (one query token) over a long KV cache, into `results/kernels_bench.jsonl`.

For each shape x batch x context and each implementation it measures the median latency (`bench_ms`, L2
flushed, inputs rotated through `RotatingInputs`), the bytes the kernel must read, the bandwidth that implies
and its fraction of the device-to-device copy bandwidth measured at the start of the same run (the practical
roofline of a memory-bound kernel).

The kernels come from the registry (harness/kernels/impls.py): every implementation and baseline of an op whose spec
has a `bench` (its inputs per cell and bytes-read model, reference/bench_spec.py), with the hooks registered beside
each, so a new kernel file is benchmarked with no edit here. Built in (`--impls` names):

  sdpa_flash      PyTorch SDPA restricted to the flash backend on the full cache (optimized/torch_sdpa_flash.py;
                  the backend used is recorded in params["backend"])
  triton_dense    our flash-decoding kernel, `get_impl("decode_attention", "triton")`, seq_lens = context
  triton_fourier  FlashFourierAttention that rebuilds the compressed channels per tile,
                  `get_impl("fourier_decode_attention", "triton")`, on a cache from
                  `reference.ops.fourier_cache.make_fourier_cache` (FourierAttention, arXiv 2506.11886: 512
                  frequencies = the paper's 1024 states, 4 sink and 1020 local tokens exact)
  triton_fourier_spectral  FlashFourierAttention in coefficient space (optimized/triton_fourier_spectral.py) on
                  the same cache; its records carry the time of each phase (`extra.phase_ms`)
  flashinfer      FlashInfer's decode on the full cache (optimized/flashinfer_decode.py), where the package
                  imports; a `missing` status otherwise

Every configuration is checked once against the float32 reference on the inputs it is timed on (batch rows 0
and B-1) before it is timed; records carry `extra.checked` / `extra.correct`. Each finished cell is appended
to the store at once; a rerun skips cells already measured on the same kind of device (a cell's key names the
device's kind: `harness.store.KEYED_BY_DEVICE`). An implementation that is not registered, a
cache that would not fit, or a kernel that raises is recorded as a `status` record and the sweep goes on.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from harness import argtypes
from harness.kernels.impls import BenchImpl, bench_impls, impl_names
from harness.provenance import device_info, git_sha, now_iso, versions
from harness.store import ResultsStore, cell_key, make_record
from reference.bench_spec import Missing
from reference.ops.fourier_period import PERIOD_MODES

SUITE = "kernels_bench"
STATUS = "status"  # metric of a cell that was not measured; extra["status"] says why
METRICS = (("latency_ms", "ms"), ("bytes_read", "bytes"), ("bandwidth_gbs", "GB/s"), ("roofline_fraction", "fraction"))
DTYPES = ("bfloat16", "float16", "float32")
# Mantissa steps the check scales its tolerance by; float32 kernels may run their dots in TF32 (10 bits).
EPS = {"float32": 2.0**-10, "float16": 2.0**-10, "bfloat16": 2.0**-7}


@dataclass(frozen=True)
class Shape:
    """Attention heads of one layer: query heads, KV heads (GQA), head dimension."""

    hq: int
    hkv: int
    head_dim: int


SHAPES = {"llama3-8b": Shape(32, 8, 128), "smollm2": Shape(9, 3, 64)}
PERIODS = PERIOD_MODES  # the Fourier cache's period: the middle itself (the paper's, the KV method's default), the
# next 7-smooth length or the next power of two >= it (faster transforms; pow2 cost NIAH accuracy at equal bytes)

DEFAULT_CONTEXTS = (4096, 8192, 16384, 32768, 65536, 131072)
DEFAULT_BATCHES = (1, 4, 8, 16)
# The default grid stops larger batches at shorter contexts so `ci/gpu.sh` fits its time on one H100;
# giving --batches or --contexts (or --full-grid) measures the whole cross product.
DEFAULT_MAX_CONTEXT = {4: 65536, 8: 32768, 16: 32768}
QUICK = dict(shapes=("llama3-8b",), batches=(1, 4), contexts=(4096, 32768))


@dataclass(frozen=True)
class KernelBenchConfig:
    shapes: tuple[str, ...] = tuple(SHAPES)
    contexts: tuple[int, ...] = DEFAULT_CONTEXTS
    batches: tuple[int, ...] = DEFAULT_BATCHES
    max_context: dict = field(default_factory=lambda: dict(DEFAULT_MAX_CONTEXT))  # {batch: longest context}
    dtype: str = "bfloat16"
    impls: tuple[str, ...] = field(default_factory=impl_names)  # --impls names (harness/kernels/impls.py)
    results: str = "results"
    rerun: bool = False
    num_freqs: int = 512
    n_init: int = 4
    n_local: int = 1020
    k_fraction: float = 0.73
    v_fraction: float = 0.79
    period: str = "span"
    kept_pad: int = 64  # kept middle channels stored in rows padded to a multiple of this many elements
    kept_align: int = 1  # > 1: each head keeps a multiple of this many channels (aligned runs; make_fourier_cache)
    warmup_ms: int = 25
    rep_ms: int = 100
    memory_fraction: float = 0.6  # skip a cell whose full KV cache exceeds this fraction of free GPU memory
    seed: int = 0

    def validate(self) -> None:
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown or not self.shapes:
            raise ValueError(f"shapes (--shapes): unknown {unknown or 'none given'}; known: {list(SHAPES)}")
        known = bench_impls()
        unknown = [i for i in self.impls if i not in known]
        if unknown or not self.impls:
            raise ValueError(f"impls (--impls): unknown {unknown or 'none given'}; known: {list(known)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype (--dtype) must be one of {list(DTYPES)}, got {self.dtype!r}")
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise ValueError(f"batches (--batches) must be integers >= 1, got {list(self.batches)}")
        if self.period not in PERIODS:
            raise ValueError(f"period (--period) must be one of {list(PERIODS)}, got {self.period!r}")
        if not isinstance(self.kept_pad, int) or self.kept_pad < 1:
            raise ValueError(f"kept_pad must be an integer >= 1, got {self.kept_pad!r}")
        if not isinstance(self.kept_align, int) or self.kept_align < 1:
            raise ValueError(f"kept_align (--kept-align) must be an integer >= 1, got {self.kept_align!r}")
        shortest, why = max(((known[i].op_bench.min_context(self), known[i].op_bench.min_context_note)
                             for i in self.impls), key=lambda t: t[0])
        if not self.contexts or any(not isinstance(c, int) or c < shortest for c in self.contexts):
            raise ValueError(f"contexts (--contexts) must be integers >= {shortest}"
                             + (f" ({why})" if why and shortest > 1 else "") + f", got {list(self.contexts)}")
        if not isinstance(self.num_freqs, int) or self.num_freqs < 1:
            raise ValueError(f"num_freqs (--num-freqs) must be an integer >= 1, got {self.num_freqs!r}")
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must lie in (0, 1], got {self.memory_fraction}")
        if self.warmup_ms < 1 or self.rep_ms < 1:
            raise ValueError(f"warmup_ms and rep_ms (--warmup-ms, --rep-ms) must be >= 1, got {self.warmup_ms}, {self.rep_ms}")


# ---------------------------------------------------------------- the plan (pure: runs on CPU)
def grid(config: KernelBenchConfig) -> list[tuple[str, int, int]]:
    """(shape, batch, context) in measuring order, the per-batch context cap applied."""
    out = []
    for shape in config.shapes:
        for batch in config.batches:
            cap = config.max_context.get(batch)
            out.extend((shape, batch, c) for c in config.contexts if cap is None or c <= cap)
    return out


def cell_params(config: KernelBenchConfig, impl: str, shape: str, batch: int, context: int,
                backend: str | None = None) -> dict:
    """A cell's params: the shape, batch, context and dtype; the backend an implementation with a `resolve` hook
    runs (SDPA's); the op's own knobs (`OpBench.params`, e.g. the Fourier cache's)."""
    entry = bench_impls()[impl]
    s = SHAPES[shape]
    params = {"batch": batch, "context": context, "hq": s.hq, "hkv": s.hkv, "head_dim": s.head_dim,
              "dtype": config.dtype}
    if entry.hooks.resolve is not None:
        params["backend"] = backend or "unresolved"
    params.update(entry.op_bench.params(config))
    return params


def backend_of(backends: dict | None, impl: str, shape: str) -> str | None:
    """The resolved backend of `impl` on `shape`: backends is {impl: {shape: backend}}, or {shape: backend} for every
    implementation with a `resolve` hook (there is one built in, SDPA's)."""
    if not backends:
        return None
    if any(isinstance(v, dict) for v in backends.values()):
        return (backends.get(impl) or {}).get(shape)
    return backends.get(shape)


def plan(config: KernelBenchConfig, backends: dict | None = None, *, device: str) -> list[dict]:
    """Every cell: {impl, task, impl_label, method, model, params, cell}.

    backends: what `resolve_backends` chose, {impl: {shape: backend}} (or {shape: backend}: `backend_of`); part of the
    cells' identity of the implementations that resolve one (SDPA).
    device: the run's `device_info` string; its kind is part of every cell's key (a latency is the device's), so
    the cells another kind of GPU recorded are measured again here, while this device's are skipped on resume.
    """
    entries = bench_impls()
    cells = []
    for shape, batch, context in grid(config):
        for name in config.impls:
            e = entries[name]
            params = cell_params(config, name, shape, batch, context, backend_of(backends, name, shape))
            cells.append({"impl": name, "task": e.task, "impl_label": e.label, "method": e.method,
                          "model": shape, "params": params,
                          "cell": cell_key(SUITE, e.task, e.method, e.label, shape, params, device)})
    return cells


def done_cells(records: list[dict]) -> set[str]:
    """Cells that need no new run: measured, or skipped for lack of memory (missing or failed ones are retried)."""
    done = set()
    for r in records:
        if r["metric"] == "latency_ms" or (r["metric"] == STATUS and
                                           str(r.get("extra", {}).get("status", "")).startswith("skipped")):
            done.add(r["cell"])
    return done


def itemsize(dtype: str) -> int:
    return {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]


def kv_cache_bytes(shape: str, batch: int, context: int, dtype: str) -> int:
    """Bytes of the full K and V cache of one layer."""
    s = SHAPES[shape]
    return 2 * batch * s.hkv * context * s.head_dim * itemsize(dtype)


def dense_bytes_read(batch: int, hq: int, hkv: int, head_dim: int, context: int, dtype: str) -> int:
    """Bytes a decode step over the full cache must move: K and V of every token, the query and the output."""
    return (2 * batch * hkv * context * head_dim + 2 * batch * hq * head_dim) * itemsize(dtype)


def fits_in_memory(needed_bytes: int, free_bytes: int, fraction: float = 0.6) -> bool:
    """The out-of-memory rule: a cell runs when its full KV cache takes at most `fraction` of free GPU memory."""
    return needed_bytes <= fraction * free_bytes


def rotation_copies(bytes_per_copy: int, budget_bytes: float, wanted: int) -> int:
    """Copies for RotatingInputs: `wanted`, fewer when they would not fit `budget_bytes`, never fewer than 1."""
    if bytes_per_copy <= 0:
        return max(1, wanted)
    return max(1, min(wanted, int(budget_bytes // bytes_per_copy)))


def allowed_error(dtype: str, ref_max: float) -> float:
    """The check's tolerance: 16 roundings at the output's scale, max|ref| (at least 1e-3).

    Loose on purpose: it catches a wrong kernel (zeros, skipped keys, garbage), while the conformance suite holds
    the tight rule. No absolute floor at the dtype's rounding scale: over 128k keys the outputs are ~1e-2, and
    such a floor would let a kernel that returns zeros pass.
    """
    return 16 * EPS[dtype] * max(ref_max, 1e-3)


def measurement_records(cell: dict, latency_ms: float, nbytes: int, copy_gbs: float, provenance: dict,
                        protocol: dict, extra: dict, seed: int = 0) -> list[dict]:
    """The four records of a measured cell: latency_ms, bytes_read, bandwidth_gbs, roofline_fraction."""
    from harness.gpu_timing import achieved_bandwidth

    gbs = achieved_bandwidth(nbytes, latency_ms)
    values = {"latency_ms": latency_ms, "bytes_read": float(nbytes), "bandwidth_gbs": gbs,
              "roofline_fraction": gbs / copy_gbs}
    extra = {**extra, "copy_bandwidth_gbs": copy_gbs}
    return [make_record(SUITE, cell["task"], cell["method"], cell["impl_label"], cell["model"], cell["params"],
                        metric, float(values[metric]), unit, seed=seed, protocol=protocol, extra=extra,
                        provenance=provenance)
            for metric, unit in METRICS]


def status_record(cell: dict, status: str, provenance: dict, protocol: dict, extra: dict | None = None,
                  seed: int = 0) -> dict:
    """A cell that was not measured: metric `status`, value 0, extra["status"] = "skipped: ..." | "missing: ..." | "failed: ..."."""
    if not status.split(":", 1)[0] in ("skipped", "missing", "failed"):
        raise ValueError(f"status must start with 'skipped:', 'missing:' or 'failed:', got {status!r}")
    return make_record(SUITE, cell["task"], cell["method"], cell["impl_label"], cell["model"], cell["params"],
                       STATUS, 0.0, "none", seed=seed, protocol=protocol, extra={**(extra or {}), "status": status},
                       provenance=provenance)


def copy_record(copy_gbs: float, nbytes: int, run_id: str, provenance: dict, extra: dict | None = None) -> dict:
    return make_record(SUITE, "copy", "none", "torch-copy", "-", {"nbytes": nbytes, "run": run_id},
                       "copy_bandwidth_gbs", float(copy_gbs), "GB/s", protocol={"timer": TIMER},
                       extra=extra, provenance=provenance)


TIMER = "triton.testing.do_bench median, L2 flushed before each run, inputs rotated"


def summary_table(records: list[dict], cells: set[str] | None = None) -> str:
    """One row per cell (the newest record of each metric): the run's table, built from records only."""
    from tabulate import tabulate

    rows: dict[str, dict] = {}
    for r in records:
        if r["suite"] != SUITE or r["metric"] == "copy_bandwidth_gbs" or (cells is not None and r["cell"] not in cells):
            continue
        row = rows.setdefault(r["cell"], {"r": r, "m": {}})
        row["m"][r["metric"]] = r
        row["r"] = r
    entries = bench_impls()
    table = []
    for row in rows.values():
        r, m = row["r"], row["m"]
        p = r["params"]
        if "latency_ms" in m:
            x = m["latency_ms"]["extra"]
            note = "ok" if x.get("correct") else ("WRONG RESULT" if x.get("checked") else "unchecked")
            values = [f"{m['latency_ms']['value']:.4f}", f"{m['bytes_read']['value'] / 1e6:.1f}",
                      f"{m['bandwidth_gbs']['value']:.0f}", f"{100 * m['roofline_fraction']['value']:.1f}", note]
        else:
            values = ["", "", "", "", m[STATUS]["extra"].get("status", "") if STATUS in m else ""]
        names = [n for n, e in entries.items() if (e.task, e.label) == (r["task"], r["impl"])]
        label = names[0] if names else r["impl"]
        label += f" ({p['backend']})" if "backend" in p else ""
        order = list(entries).index(names[0]) if names else len(entries)
        table.append(((r["model"], p["batch"], p["context"], order), [r["model"], p["batch"], p["context"], label, *values]))
    table = [row for _, row in sorted(table, key=lambda t: t[0])]
    return tabulate(table, headers=["shape", "batch", "context", "kernel", "latency ms", "MB read", "GB/s",
                                    "% of copy", "check"], disable_numparse=True)


# ---------------------------------------------------------------- inputs and kernels (GPU)
def _torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def cell_inputs(entry: BenchImpl, config: KernelBenchConfig, shape: str, batch: int, context: int, device: str) -> dict:
    """The keyword inputs of one cell: the op's benchmark inputs (`OpBench.inputs`) for the shape, batch, context."""
    return entry.op_bench.inputs(SHAPES[shape], batch, context, _torch_dtype(config.dtype), device, config)


def resolve_backends(config: KernelBenchConfig, dev: "Device") -> tuple[dict, dict]:
    """({impl: {shape: backend or None}}, {impl: {shape: notes}}) for the chosen implementations with a `resolve` hook
    (SDPA: the first backend that runs), each asked once per shape on small inputs of its op (batch 1, 256 tokens or
    the op's shortest context, seed 0)."""
    entries = bench_impls()
    small = dataclasses.replace(config, seed=0)
    backends: dict = {}
    notes: dict = {}
    for name in config.impls:
        entry = entries[name]
        if entry.hooks.resolve is None:
            continue
        for shape in config.shapes:
            context = max(256, entry.op_bench.min_context(config))
            inputs = cell_inputs(entry, small, shape, 1, context, dev.name)
            backends.setdefault(name, {})[shape], notes.setdefault(name, {})[shape] = entry.hooks.resolve(inputs)
    return backends, notes


def reference_rows(cell: dict, inputs: dict, rows: list[int]):
    """The op's reference on batch rows `rows` of the inputs, float inputs in float32: [len(rows), -1]."""
    import torch

    from reference.registry import get_op

    entry = bench_impls()[cell["impl"]]
    spec = get_op(entry.op)
    idx = torch.tensor(rows, device=inputs[entry.op_bench.batched[0]].device)
    sub = {}
    for name, val in inputs.items():
        if name in entry.op_bench.batched:
            val = val.index_select(0, idx)
        if name in spec.float_inputs and isinstance(val, torch.Tensor):
            val = val.float()
        sub[name] = val
    out = spec.reference(**sub)
    return out.reshape(len(rows), -1)


def check(cell: dict, run: Callable[[dict], Any], inputs: dict, dtype: str, dev: "Device") -> dict:
    """Run once on `inputs`, compare batch rows 0 and B-1 with the float32 reference: {checked, correct, ...}."""
    import torch

    b = inputs[bench_impls()[cell["impl"]].op_bench.batched[0]].shape[0]
    rows = sorted({0, b - 1})
    out = run(inputs)
    dev.sync()
    got = out.reshape(b, -1).index_select(0, torch.tensor(rows, device=out.device)).float()
    ref = reference_rows(cell, inputs, rows)
    if got.shape != ref.shape:
        return {"checked": True, "correct": False, "check_note": f"output shape {tuple(out.shape)} does not match "
                                                                  f"the reference's {tuple(ref.shape)}"}
    err = (got - ref).abs()
    worst = float(err.max()) if bool(torch.isfinite(got).all()) else float("inf")
    tol = allowed_error(dtype, float(ref.abs().max()))
    return {"checked": True, "correct": worst <= tol, "max_abs_error": worst if math.isfinite(worst) else None,
            "allowed_error": tol, "checked_rows": rows, **({} if math.isfinite(worst) else {"check_note": "NaN/inf in output"})}


def prepare(cell: dict, config: KernelBenchConfig, device: str, backend: str | None):
    """(inputs, run(inputs) -> out, bytes_read, extra) for one cell; raises Missing when the impl is absent.

    run: the hooks' `prepare` (baselines), else the registered function on the inputs; bytes_read: the op's model;
    extra: the op's and the implementation's extra fields."""
    from reference.registry import get_impl

    entry = bench_impls()[cell["impl"]]
    hooks = entry.hooks
    if hooks.prepare is None:
        try:
            fn = get_impl(entry.op, entry.impl)
        except KeyError as exc:
            raise Missing(str(exc).strip("'\"")) from None
    p = cell["params"]
    inputs = cell_inputs(entry, config, cell["model"], p["batch"], p["context"], device)
    run = hooks.prepare(inputs, backend) if hooks.prepare is not None else (lambda x: fn(**x))
    nbytes = int(entry.op_bench.bytes_read(inputs))
    extra = {**(entry.op_bench.extra(inputs) if entry.op_bench.extra else {}),
             **(hooks.extra(inputs) if hooks.extra else {})}
    return inputs, run, nbytes, extra


def fast_path(cell: dict, run: Callable[[dict], Any]) -> Callable[[dict], Any] | None:
    """The cell's call without host-side input checks (they synchronize with the GPU, so they cannot sit in a
    CUDA graph): the hooks' `fast()`, `run` itself when `capturable`, else None. Inputs were checked by `check` first."""
    hooks = bench_impls()[cell["impl"]].hooks
    if hooks.fast is not None:
        return hooks.fast()
    return run if hooks.capturable else None


def phase_times(cell: dict, dev: "Device", sets: list[dict]) -> dict | None:
    """Milliseconds of each phase of the implementation (its `phases` hook, e.g. the spectral kernel's PHASES);
    None for implementations without one or without a graph timer."""
    hooks = bench_impls()[cell["impl"]].hooks
    if hooks.phases is None or dev.graph_timer is None:
        return None
    return hooks.phases(dev.graph_timer, sets)


def backend_context(cell: dict, backend: str | None):
    """The implementation's `context(backend)` around the check and the timing (SDPA: `sdpa_kernel`), else nothing."""
    hooks = bench_impls()[cell["impl"]].hooks
    return hooks.context(backend) if hooks.context is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class Device:
    """What the sweep needs from the device. `Device.cuda()` is the real GPU; tests build a CPU one with a fake
    timer (the only parts that cannot run on a CPU are the timer, the free-memory query and the copy bandwidth)."""

    name: str
    timer: Callable[..., float]  # timer(fn, warmup=ms, rep=ms) -> median ms
    free_memory: Callable[[], int]  # bytes free now
    copy_bandwidth: Callable[[], float]  # GB/s, measured once per run
    copy_nbytes: int = 1 << 30
    graph_timer: Callable[..., float] | None = None  # graph_timer(run, input_sets) -> median ms per call

    @classmethod
    def cuda(cls, warmup_ms: int = 25, rep_ms: int = 100) -> "Device":
        import torch

        from harness.gpu_timing import bench_ms, copy_bandwidth_gbs, graph_ms, require_cuda

        require_cuda("python -m harness bench --suite kernels")
        return cls("cuda", bench_ms, lambda: torch.cuda.mem_get_info()[0],
                   lambda: copy_bandwidth_gbs("cuda", 1 << 30, warmup=warmup_ms, rep=rep_ms), graph_timer=graph_ms)

    def sync(self) -> None:
        if self.name.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def release(self) -> None:
        if self.name.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def measure_cell(cell: dict, config: KernelBenchConfig, dev: Device, backend: str | None, copy_gbs: float,
                 provenance: dict, protocol: dict, run_id: str) -> list[dict]:
    """Records of one cell: four measurements, or one status record (skipped / missing / failed)."""
    import torch

    from harness.gpu_timing import RotatingInputs, copies_needed, tensor_bytes
    from reference.ops.checks import finite_checks
    from reference.ops.fourier import period_basis

    p = cell["params"]
    base_extra = {"run": run_id}
    free = dev.free_memory()
    need = kv_cache_bytes(cell["model"], p["batch"], p["context"], config.dtype)
    if not fits_in_memory(need, free, config.memory_fraction):
        return [status_record(cell, f"skipped: out of memory (full KV cache {need / 2**30:.1f} GiB > "
                                    f"{config.memory_fraction:.0%} of {free / 2**30:.1f} GiB free)",
                              provenance, protocol, base_extra, config.seed)]
    inputs = rot = None
    try:
        inputs, run, nbytes, extra = prepare(cell, config, dev.name, backend)
        per_copy = tensor_bytes(inputs)
        copies = rotation_copies(per_copy, config.memory_fraction * free, copies_needed(per_copy))
        with backend_context(cell, backend):
            try:
                verdict = check(cell, run, inputs, config.dtype, dev)
            except torch.cuda.OutOfMemoryError:
                dev.release()
                verdict = {"checked": False, "correct": None, "check_note": "reference ran out of memory"}
            rot = RotatingInputs(inputs, copies=copies)
            with finite_checks(False):  # checked above; the ops' NaN/inf scan is not the kernel's time
                eager = dev.timer(lambda: run(rot.next()), warmup=config.warmup_ms, rep=config.rep_ms)
                timing = {"eager_ms": eager, "timer": "do_bench"}
                ms = eager
                fast = fast_path(cell, run)
                if fast is not None and dev.graph_timer is not None:
                    try:  # the kernel's GPU time alone: host checks and launch gaps are not the kernel's cost
                        ms = dev.graph_timer(fast, rot.sets)
                        timing.update(graph_ms=ms, timer="cudagraph")
                        phases = phase_times(cell, dev, rot.sets)
                        if phases is not None:
                            timing["phase_ms"] = phases
                    except RuntimeError as exc:
                        timing["graph_note"] = str(exc)[:300]
        extra = {**base_extra, **extra, **verdict, **timing, "rotating_copies": len(rot), "rotating_bytes": rot.total_bytes}
        return measurement_records(cell, ms, nbytes, copy_gbs, provenance, protocol, extra, config.seed)
    except Missing as exc:
        return [status_record(cell, f"missing: {exc}", provenance, protocol, base_extra, config.seed)]
    except torch.cuda.OutOfMemoryError as exc:
        return [status_record(cell, f"skipped: out of memory ({str(exc).splitlines()[0][:200]})", provenance,
                              protocol, base_extra, config.seed)]
    except Exception as exc:  # noqa: BLE001 - one broken kernel must not stop the sweep
        tb = traceback.format_exc(limit=8)
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        return [status_record(cell, f"failed: {type(exc).__name__}: {first}", provenance, protocol,
                              {**base_extra, "traceback": tb}, config.seed)]
    finally:
        del inputs, rot
        period_basis.cache_clear()  # the Fourier reference memoizes its cos/sin tables on the device
        dev.release()


def run_kernels_bench(config: KernelBenchConfig, progress: bool = True, dev: Device | None = None) -> dict:
    """Run the sweep (on the CUDA device unless `dev` says otherwise); returns {"ran", "skipped", "table", "store", "copy_gbs"}."""
    from tqdm.auto import tqdm

    config.validate()
    dev = dev or Device.cuda(config.warmup_ms, config.rep_ms)
    store = ResultsStore(config.results)
    run_id = now_iso()
    provenance = {"device": device_info(dev.name), "versions": versions(), "git_sha": git_sha()}
    backends, notes = resolve_backends(config, dev)
    cells = plan(config, backends, device=provenance["device"])
    done = set() if config.rerun else done_cells(store.records(SUITE))
    pending = [c for c in cells if c["cell"] not in done]
    skipped = len(cells) - len(pending)
    if skipped:
        print(f"kernels: {skipped} of {len(cells)} cells already in {config.results} (skipped; --rerun measures them again)")
    for name, by_shape in backends.items():
        for shape, backend in by_shape.items():
            note = notes[name][shape]
            print(f"kernels: {name} on {shape}: {backend or 'no backend'}" + (f" (refused: {note})" if note else ""))
    copy_gbs = dev.copy_bandwidth()
    store.append([copy_record(copy_gbs, dev.copy_nbytes, run_id, provenance, _device_extra(dev, backends, notes))])
    print(f"kernels: device-to-device copy bandwidth {copy_gbs:.0f} GB/s on {provenance['device']}")
    protocol = {"timer": TIMER, "warmup_ms": config.warmup_ms, "rep_ms": config.rep_ms, "dtype": config.dtype,
                "query_len": 1, "seed": config.seed}
    bar = tqdm(total=len(pending), desc="kernels", unit="cell", disable=not progress)
    for c in pending:
        records = measure_cell(c, config, dev, backend_of(backends, c["impl"], c["model"]), copy_gbs, provenance,
                               protocol, run_id)
        store.append(records)
        p = c["params"]
        head = records[0]
        shown = f"{head['value']:.3f} ms" if head["metric"] == "latency_ms" else head["extra"]["status"][:60]
        bar.set_postfix_str(f"{c['impl']} {c['model']} B={p['batch']} L={p['context']}: {shown}")
        bar.update(1)
    bar.close()
    keys = {c["cell"] for c in cells}
    return {"ran": len(pending), "skipped": skipped, "store": str(store.path(SUITE)), "copy_gbs": copy_gbs,
            "table": summary_table(store.records(SUITE), keys)}


def _device_extra(dev: Device, backends: dict, notes: dict) -> dict:
    import torch
    import torch.nn.attention

    extra = {}
    for name, entry in bench_impls().items():  # e.g. sdpa_backends, sdpa_notes: {shape: ...}
        if entry.hooks.resolve is not None:
            key = entry.hooks.backend_key or name
            extra.update({f"{key}_backends": backends.get(name, {}), f"{key}_notes": notes.get(name, {})})
    current = getattr(torch.nn.attention, "current_flash_attention_impl", None)  # FA2 unless FA3/FA4 was activated
    if current is not None:
        try:
            extra["flash_attention_impl"] = str(current())
        except Exception:  # noqa: BLE001 - informational only
            pass
    if dev.name.startswith("cuda"):
        props = torch.cuda.get_device_properties(dev.name)
        extra.update(total_memory_bytes=props.total_memory, sm_count=props.multi_processor_count,
                     cuda=torch.version.cuda)
    return extra


# ---------------------------------------------------------------- CLI: `python -m harness bench --suite kernels`
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The kernels benchmark's options on `python -m harness bench` (harness/cli.py registers the command; its
    `--suite dllm` group is harness/dllm/bench.py's). Ranges the config checks (contexts, batches, num_freqs,
    warmup/rep) are checked by its validate(); the others here."""
    p.add_argument("--shapes", type=argtypes.name_list(), default=None, help=f"comma-separated of {list(SHAPES)} (default: all)")
    p.add_argument("--contexts", type=argtypes.int_list(), default=None,
                   help=f"default {','.join(map(str, DEFAULT_CONTEXTS))}")
    p.add_argument("--batches", type=argtypes.int_list(), default=None, help=f"default {','.join(map(str, DEFAULT_BATCHES))}")
    p.add_argument("--full-grid", action="store_true",
                   help=f"measure every batch at every context (default grid caps contexts per batch: {DEFAULT_MAX_CONTEXT})")
    p.add_argument("--quick", action="store_true", help=f"a small grid: {QUICK}")
    p.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    p.add_argument("--impls", type=argtypes.name_list(), default=None,
                   help="comma-separated kernels, e.g. sdpa_flash,triton_dense,triton_fourier,triton_fourier_spectral,"
                        "flashinfer (default: all; `python -m harness ops` lists each op's)")
    p.add_argument("--num-freqs", type=argtypes.integer(), default=512, help="Fourier frequencies per compressed channel (512 = 1024 states)")
    p.add_argument("--period", default="span", choices=PERIODS,
                   help="the Fourier cache's period: the middle's length (default, as the KV method), the next 7-smooth length or "
                        "the next power of two")
    p.add_argument("--kept-align", type=argtypes.integer(), default=1,
                   help="Fourier caches: every head keeps a multiple of this many channels (aligned runs; 1 = a random set)")
    p.add_argument("--warmup-ms", type=argtypes.integer(), default=25)
    p.add_argument("--rep-ms", type=argtypes.integer(), default=100)
    p.add_argument("--seed", type=argtypes.integer(minimum=0), default=0)
    p.add_argument("--results", default="results", type=argtypes.output_dir, help="results store directory")
    p.add_argument("--rerun", action="store_true", help="measure cells again even if the store has them")
    p.add_argument("--no-progress", action="store_true")


def config_from_args(args) -> KernelBenchConfig:
    quick = args.quick
    explicit = args.batches is not None or args.contexts is not None or args.full_grid
    config = KernelBenchConfig(
        shapes=args.shapes or (QUICK["shapes"] if quick else tuple(SHAPES)),
        contexts=args.contexts or (QUICK["contexts"] if quick else DEFAULT_CONTEXTS),
        batches=args.batches or (QUICK["batches"] if quick else DEFAULT_BATCHES),
        max_context={} if explicit or quick else dict(DEFAULT_MAX_CONTEXT),
        dtype=args.dtype,
        impls=args.impls or impl_names(),
        results=args.results,
        rerun=args.rerun,
        num_freqs=args.num_freqs,
        period=args.period,
        kept_align=args.kept_align,
        warmup_ms=args.warmup_ms,
        rep_ms=args.rep_ms,
        seed=args.seed,
    )
    config.validate()
    return config


def cmd_bench(args) -> int:
    """`python -m harness bench --suite kernels`: exit 2 with a clear message without a CUDA GPU or on bad
    arguments."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print(f"error: `python -m harness bench --suite {args.suite}` needs a CUDA GPU; torch.cuda.is_available() is "
              f"False (torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU machine "
              f"(ci/gpu.sh).", file=sys.stderr)
        return 2
    summary = run_kernels_bench(config, progress=not args.no_progress)
    print(summary["table"])
    print(f"copy bandwidth {summary['copy_gbs']:.0f} GB/s; ran {summary['ran']} cells, skipped {summary['skipped']}; "
          f"records in {summary['store']}")
    return 0
