"""A submitted kernel's conformance report: run the rule per dtype, time it on the GPU, write it to the store.

`python -m harness conform` and `pytest suites/conformance --impl ...` both call `run_and_record`, so the two
write identical records (docs/design.md, "Conformance and submitting a kernel"). Records go to `<results>/conformance.jsonl`, all
with suite "conformance", task = the op, method = impl = the impl path as given (`pkg.mod:fn`), model "-",
seed 0, protocol {"rule": RULE, "atol": {dtype: atol}}, and params

    {"property": P, "profile": "ci"|"dev"|"gpu", "device": "cpu"|"cuda", "dtypes": [...], "max_examples": N}

One run writes (every record's extra carries "run", an id shared by the records of that run):
- per property P in harness.kernels.conformance.PROPERTIES: metric "passed", value 1/0, unit "bool"; extra
  {examples, worst_error, allowed_error, failing_dtype, failing_case, message, replay} (the failing fields are
  null when P passed; errors that are not finite are stored as the strings "inf"/"nan");
- P "all": metric "passed" (1 when every property passed on at least one example), "examples" (cases checked,
  every dtype together), and "worst_error"/"allowed_error" (the case closest to its bound) when finite; extra
  {failed_properties} (+ summary, the printed report, on "passed");
- on CUDA only, P "speed" (params also hold "dtype"): metrics "impl_ms" and "reference_ms" (median), "speedup"
  (reference_ms / impl_ms), "bytes" (tensor inputs + output), "bandwidth_gbs" (bytes / impl time),
  "copy_bandwidth_gbs" (device-to-device copy) and "roofline_fraction" (bandwidth / copy bandwidth); extra
  {case} (the timed input, replayable with check_case). The timed input is first checked like any drawn case
  (a failure there fails the run); the speed records are appended after the verdict's, with the same "run".
"""
from __future__ import annotations

import math
import time
import uuid
from typing import Any, Callable

import torch

from harness.kernels.conformance import (ATOL, PROPERTIES, CaseResult, Report, check_case, conform, default_dtypes,
                                         draws, source_constants_off)
from harness.provenance import device_info, git_sha, versions
from harness.store import ResultsStore, make_record
from reference.registry import get_op

SUITE = "conformance"
RULE = ("max|impl-oracle| <= 2*max|baseline-oracle| + atol(dtype) + eps(dtype)*max|oracle|; out poisoned; "
        "inputs cloned; top-k as sets")
# Examples per dtype when not told, and the sizes of the hypothesis profiles of the same names (suites/conftest.py
# registers them from here). ci was 10 until 2026-12-06: the CPU suite came within 10% of CI's 10-minute bound.
PROFILE_EXAMPLES = {"ci": 8, "dev": 50, "gpu": 200}
SPEED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)  # the first one checked is timed


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def parse_dtypes(text: str) -> tuple[torch.dtype, ...]:
    """'float32,float16' -> (torch.float32, torch.float16); ValueError naming an unknown name."""
    known = {dtype_name(d): d for d in ATOL if d is not torch.float64}
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ValueError(f"--dtypes: {bad or text!r} not among {sorted(known)}")
    return tuple(known[n] for n in names)


def checked_dtypes(op: str, fn: Callable, device: str, dtypes: tuple[torch.dtype, ...] | None = None) -> tuple:
    """The dtypes a run checks: `dtypes` if given (each must be supported by the op), else the defaults."""
    spec = get_op(op)
    if dtypes is not None:
        bad = [dtype_name(d) for d in dtypes if d not in spec.dtypes]
        if bad:
            raise ValueError(f"dtypes {bad} are not supported by op {op!r} (supports "
                             f"{[dtype_name(d) for d in spec.dtypes]})")
        return tuple(dtypes)
    return tuple(d for d in default_dtypes(fn, device) if d in spec.dtypes)


def _excerpt(message: str, lines: int = 8) -> str:
    """A failure message's first `lines` lines (the cause, then a traceback's frames) and its last (the replay
    line), indented."""
    kept = message.strip().splitlines()
    if len(kept) > lines + 1:
        kept = kept[:lines] + [f"... ({len(kept) - lines - 1} lines)", kept[-1]]
    return "\n".join("    " + line for line in kept)


def run_conformance(op: str, fn: Callable, impl: str, profile: str, device: str, max_examples: int,
                    dtypes: tuple[torch.dtype, ...] | None = None,
                    progress: Callable[[str], None] | None = None, seed: int | None = None) -> Report:
    """`conform` one dtype at a time (a progress line after each), merged into one Report; `seed` as `conform`."""
    wanted = checked_dtypes(op, fn, device, dtypes)
    merged = Report(op, impl, profile, dtypes=[dtype_name(d) for d in wanted], draws=draws(profile, seed))
    for dtype in wanted:
        start = time.perf_counter()
        r = conform(op, fn, profile, dtypes=(dtype,), max_examples=max_examples, impl_name=impl, device=device,
                    seed=seed)
        merged.examples += r.examples
        merged.failures += r.failures
        if r.worst_ratio >= merged.worst_ratio:
            merged.worst_ratio, merged.worst_error, merged.allowed_error = r.worst_ratio, r.worst_error, r.allowed_error
        if progress is not None:
            if r.passed:
                verdict = f"PASS on {r.examples} examples, worst error {r.worst_error:.3g} (allowed {r.allowed_error:.3g})"
            else:
                f = r.failures[0] if r.failures else None
                verdict = (f"FAIL [{f.property}] after {r.examples} examples" if f else "FAIL: no example was drawn")
                if f is not None:  # the cause now, not only in the summary: a run cut by a time limit keeps it
                    verdict += "\n" + _excerpt(f.message)
            progress(f"  {dtype_name(dtype):9s} {verdict}  ({time.perf_counter() - start:.1f} s)")
    return merged


# ---------------------------------------------------------------- speed on the GPU
def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_tensor_bytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(_tensor_bytes(x) for x in obj.values())
    return 0


def representative_case(op: str, profile: str = "gpu", candidates: int = 4) -> dict:
    """The largest (by input bytes) of `candidates` cases drawn deterministically from the op's `profile`."""
    from hypothesis import HealthCheck, given, settings

    spec = get_op(op)
    drawn: list[dict] = []

    @settings(max_examples=candidates, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(spec.cases(profile))
    def draw(case):
        drawn.append(case)

    with source_constants_off():
        draw()
    if not drawn:
        raise ValueError(f"op {op!r}: profile {profile!r} drew no case")
    sizes = [_case_bytes(spec, c) for c in drawn]
    return drawn[max(range(len(drawn)), key=sizes.__getitem__)]


def _case_bytes(spec, case: dict) -> int:
    """Input bytes of a case in float16, sized on the meta device (no memory), or on the CPU for an op whose input
    builder reads values (a varlen op's per-sequence lengths, say), which meta tensors do not hold."""
    try:
        return _tensor_bytes(spec.make_inputs(case, torch.float16, torch.device("meta")))
    except (RuntimeError, NotImplementedError):
        return _tensor_bytes(spec.make_inputs(case, torch.float16, torch.device("cpu")))


def measure_speed(op: str, fn: Callable, device: str, dtype: torch.dtype, case: dict | None = None,
                  warmup: int = 25, rep: int = 100, check: bool = True) -> dict:
    """Median ms of `fn` and of the reference on one case, bytes moved, bandwidth and fraction of the roofline.

    case: default `representative_case(op, "gpu")`. warmup, rep: milliseconds, as `bench_ms` takes them.
    check: first check the result on the timed inputs (a kernel may not be fast only where it is wrong); a failing
    check returns {"check": CaseResult, "case": case} and no timings.
    """
    from harness.gpu_timing import bench_ms, copy_bandwidth_gbs  # CUDA only; imported on this path alone

    spec = get_op(op)
    case = case if case is not None else representative_case(op, "gpu")
    result = check_case(op, fn, case, dtype, device) if check else None
    if result is not None and not result.passed:
        return {"check": result, "case": case}
    inputs = spec.make_inputs(case, dtype, torch.device(device))
    output = spec.reference(**inputs)
    impl_ms = float(bench_ms(lambda: fn(**inputs), warmup=warmup, rep=rep))
    ref_ms = float(bench_ms(lambda: spec.reference(**inputs), warmup=warmup, rep=rep))
    nbytes = _tensor_bytes(inputs) + _tensor_bytes(output)
    copy_gbs = float(copy_bandwidth_gbs(device))
    gbs = nbytes / (impl_ms * 1e-3) / 1e9
    return {"check": result, "case": case, "dtype": dtype_name(dtype), "impl_ms": impl_ms, "reference_ms": ref_ms,
            "speedup": ref_ms / impl_ms, "bytes": nbytes, "bandwidth_gbs": gbs, "copy_bandwidth_gbs": copy_gbs,
            "roofline_fraction": gbs / copy_gbs}


# ---------------------------------------------------------------- records
def _num(x: float) -> float | str:
    """A float JSON can hold: non-finite values become the strings 'inf', '-inf', 'nan'."""
    return x if math.isfinite(x) else str(x)


def device_kind(device: str) -> str:
    """"cuda" for any CUDA device ("cuda", "cuda:1"), else "cpu": what a conformance record names as its device."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def _recorder(report: Report, device: str, max_examples: int, run: str | None, provenance: dict | None):
    run = run or uuid.uuid4().hex[:12]
    prov = provenance or {"device": device_info(device), "versions": versions(), "git_sha": git_sha()}
    base = {"profile": report.profile, "device": device_kind(device), "dtypes": list(report.dtypes),
            "max_examples": max_examples}
    protocol = {"rule": RULE, "atol": {dtype_name(d): a for d, a in ATOL.items()}}

    def rec(prop: str, metric: str, value: float, unit: str, extra: dict, params: dict | None = None) -> dict:
        return make_record(SUITE, report.op, report.impl, report.impl, "-", {"property": prop, **base, **(params or {})},
                           metric, value, unit, protocol=protocol, extra={"run": run, "draws": report.draws, **extra},
                           provenance=prov)

    return rec


def conformance_records(report: Report, device: str, max_examples: int, speed: dict | None = None,
                        run: str | None = None, provenance: dict | None = None) -> list[dict]:
    """The store records of one run (schema in the module docstring); `speed` as `measure_speed` returns it."""
    run = run or uuid.uuid4().hex[:12]
    provenance = provenance or {"device": device_info(device), "versions": versions(), "git_sha": git_sha()}
    rec = _recorder(report, device, max_examples, run, provenance)
    expr = f"get_impl({report.op!r}, {report.impl!r})"
    failed: dict[str, CaseResult] = {}
    for f in report.failures:
        failed.setdefault(f.property, f)
    out = []
    for prop in PROPERTIES:
        f = failed.get(prop)
        extra = {"examples": report.examples,
                 "worst_error": _num(f.worst_error if f else report.worst_error),
                 "allowed_error": _num(f.allowed_error if f else report.allowed_error),
                 "failing_dtype": f.dtype if f else None, "failing_case": f.case if f else None,
                 "message": f.detail if f else "", "replay": f.replay(expr) if f else None}
        out.append(rec(prop, "passed", float(f is None and report.examples > 0), "bool", extra))
    failed_props = {"failed_properties": sorted(failed)}
    out.append(rec("all", "passed", float(report.passed), "bool", {**failed_props, "summary": report.summary()}))
    out.append(rec("all", "examples", report.examples, "cases", failed_props))
    for metric, value in (("worst_error", report.worst_error), ("allowed_error", report.allowed_error)):
        if report.examples and math.isfinite(value):
            out.append(rec("all", metric, value, "abs", failed_props))
    return out + speed_records(report, device, max_examples, speed, run, provenance)


SPEED_UNITS = {"impl_ms": "ms", "reference_ms": "ms", "speedup": "x", "bytes": "bytes", "bandwidth_gbs": "GB/s",
               "copy_bandwidth_gbs": "GB/s", "roofline_fraction": "fraction"}


def speed_records(report: Report, device: str, max_examples: int, speed: dict | None, run: str | None = None,
                  provenance: dict | None = None) -> list[dict]:
    """The "speed" records of a run (none when `speed` holds no timings)."""
    if not speed or "impl_ms" not in speed:
        return []
    rec = _recorder(report, device, max_examples, run, provenance)
    return [rec("speed", metric, speed[metric], unit, {"case": speed["case"]}, {"dtype": speed["dtype"]})
            for metric, unit in SPEED_UNITS.items() if math.isfinite(speed[metric])]


def run_and_record(op: str, fn: Callable, impl: str, *, profile: str = "ci", device: str = "cpu",
                   max_examples: int | None = None, dtypes: tuple[torch.dtype, ...] | None = None,
                   results: str | None = "results", progress: Callable[[str], None] | None = None,
                   seed: int | None = None) -> tuple[Report, dict | None, list[dict]]:
    """Conformance, then on CUDA (when it passed) the speed; records appended to `<results>/conformance.jsonl`.

    Returns (report, speed or None, records). `results=None` writes nothing. max_examples per dtype, default
    PROFILE_EXAMPLES[profile]. seed: as `conform` (None: derandomized under "ci", fresh draws otherwise). On CUDA the timed input is checked as one more conformance case; the verdict's
    records are stored before the timing starts, so a crash while timing loses no verdict.
    """
    if profile not in PROFILE_EXAMPLES:
        raise ValueError(f"profile must be one of {sorted(PROFILE_EXAMPLES)}, got {profile!r}")
    n = max_examples if max_examples is not None else PROFILE_EXAMPLES[profile]
    report = run_conformance(op, fn, impl, profile, device, n, dtypes, progress, seed)
    timed = next((d for d in SPEED_DTYPES if dtype_name(d) in report.dtypes), None)
    case = None
    if device_kind(device) == "cuda" and report.passed and timed is not None:
        try:
            case = representative_case(op, "gpu")
        except Exception as exc:  # noqa: BLE001 - no timed case: the verdict is stored all the same, untimed
            if progress:
                progress(f"  speed not measured: no case to time ({type(exc).__name__}: {exc})")
    if case is not None:
        if progress:
            progress(f"  checking the input to time ({dtype_name(timed)}, a large case of the 'gpu' profile)")
        result = check_case(op, fn, case, timed, device)
        if not result.passed:
            report.failures.append(result)  # wrong on the timed input: a failure like any other
    store = ResultsStore(results) if results is not None else None
    run = uuid.uuid4().hex[:12]
    prov = {"device": device_info(device), "versions": versions(), "git_sha": git_sha()}
    records = conformance_records(report, device, n, run=run, provenance=prov)
    if store is not None:
        store.append(records)
    speed = None
    if case is not None and report.passed:
        if progress:
            progress("  timing against the reference ...")
        try:
            speed = measure_speed(op, fn, device, timed, case, check=False)
        except Exception as exc:  # noqa: BLE001 - the verdict stands; say why there is no speed
            speed = {"error": f"{type(exc).__name__}: {exc}"}
        timing = speed_records(report, device, n, speed, run=run, provenance=prov)
        if store is not None:
            store.append(timing)
        records += timing
    return report, speed, records


def property_rows(report: Report) -> list[list]:
    """[property, PASS/FAIL, worst error, allowed, dtype] per property, for printing."""
    failed = {}
    for f in report.failures:
        failed.setdefault(f.property, f)
    rows = []
    for prop in PROPERTIES:
        f = failed.get(prop)
        if f is None:
            bound = prop == "tolerance" and report.examples
            rows.append([prop, "pass" if report.examples else "-", f"{report.worst_error:.3g}" if bound else "",
                         f"{report.allowed_error:.3g}" if bound else "", ""])
        else:
            worst = f"{f.worst_error:.3g}" if prop == "tolerance" else ""
            allowed = f"{f.allowed_error:.3g}" if prop == "tolerance" else ""
            rows.append([prop, "FAIL", worst, allowed, f.dtype])
    return rows
