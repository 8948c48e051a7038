"""The conformance rule (DESIGN.md, "Conformance rule"), generic over every registered op.

For each drawn case: the oracle is the reference on float64 inputs, the baseline the reference in the tested
dtype. An implementation passes when

    max|impl - oracle| <= 2 * max|baseline - oracle| + atol(dtype)

(flash-attention's convention: a multiple of the same-dtype reference error plus the dtype's rounding scale),
it writes every output element (`out` is poisoned with NaN before the call when the implementation takes one),
returns no NaN/inf where the oracle is finite, leaves its inputs untouched, and matches discrete outputs (index
sets) exactly up to ties. Every failure names the property and prints a call that replays it.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from reference.registry import accepts_out, check_signature, get_op

ATOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}
PROPERTIES = ("signature", "raises", "shape", "dtype", "unwritten", "nan", "mutated_input", "tolerance", "discrete")


@dataclass
class CaseResult:
    passed: bool
    property: str | None = None  # the property that failed
    message: str = ""
    worst_error: float = 0.0
    allowed_error: float = 0.0
    case: dict = field(default_factory=dict)
    dtype: str = ""

    def replay(self, op: str, impl: str = "fn") -> str:
        return f"check_case({op!r}, {impl}, {self.case!r}, torch.{self.dtype})"


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _cast(inputs: dict, names: tuple[str, ...], dtype: torch.dtype) -> dict:
    return {k: (v.to(dtype) if k in names and isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def _clone(inputs: dict) -> dict:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def _mismatch_report(diff: torch.Tensor, allowed: float, limit: int = 5) -> str:
    bad = (diff > allowed).nonzero()
    first = ", ".join(str(tuple(i.tolist())) for i in bad[:limit])
    return f"{bad.shape[0]} of {diff.numel()} elements exceed {allowed:.3g}; first at {first}"


def check_index_sets(impl_idx: torch.Tensor, oracle_scores: torch.Tensor, k: int, rtol: float = 1e-6, atol: float = 0.0) -> tuple[bool, str]:
    """Per row (last dim), are impl's k indices a top-k of oracle_scores up to ties?

    A chosen index is accepted when its oracle score is at least the k-th largest score minus a tie tolerance
    (near-ties may differ), and indices must be distinct and in range.
    """
    scores = oracle_scores.reshape(-1, oracle_scores.shape[-1]).double()
    idx = impl_idx.reshape(-1, impl_idx.shape[-1]).long()
    if idx.shape[0] != scores.shape[0] or idx.shape[1] != k:
        return False, f"index shape {tuple(impl_idx.shape)} does not match {k} per row of {tuple(oracle_scores.shape)}"
    if (idx < 0).any() or (idx >= scores.shape[1]).any():
        return False, "an index is out of range"
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]
    tol = atol + rtol * kth.abs()
    chosen = torch.gather(scores, 1, idx)
    for row in range(idx.shape[0]):
        if idx[row].unique().numel() != k:
            return False, f"row {row}: repeated indices"
    bad = (chosen < kth - tol).nonzero()
    if bad.numel():
        r, c = bad[0].tolist()
        return False, f"row {r}: index {idx[r, c].item()} (score {chosen[r, c].item():.6g}) is below the k-th score {kth[r, 0].item():.6g}"
    return True, ""


def check_case(op_name: str, impl: Callable[..., Any], case: dict, dtype: torch.dtype, device: str = "cpu") -> CaseResult:
    """Check one drawn case of `op_name` for `impl` in `dtype`."""
    spec = get_op(op_name)
    res = CaseResult(True, case=dict(case), dtype=str(dtype).replace("torch.", ""))

    def fail(prop: str, msg: str) -> CaseResult:
        res.passed, res.property = False, prop
        res.message = f"[{prop}] {msg}\n  replay: {res.replay(op_name)}"
        return res

    try:
        check_signature(op_name, impl)
    except TypeError as exc:
        return fail("signature", str(exc))
    inputs = spec.make_inputs(case, dtype, torch.device(device))
    oracle = _as_tuple(spec.reference(**_cast(_clone(inputs), spec.float_inputs, torch.float64)))
    baseline = _as_tuple(spec.reference(**_clone(inputs)))
    pristine = _clone(inputs)
    kwargs = _clone(inputs)
    if accepts_out(impl) and len(oracle) == 1:
        kwargs["out"] = torch.full_like(baseline[0], float("nan"))
    try:
        got = _as_tuple(impl(**kwargs))
    except Exception as exc:  # noqa: BLE001 - any exception from a kernel is a failure to report
        return fail("raises", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    for name, value in pristine.items():
        if isinstance(value, torch.Tensor) and not torch.equal(value, kwargs[name]) and not (value.isnan().any()):
            return fail("mutated_input", f"input {name!r} was modified by the implementation")
    if len(got) != len(oracle):
        return fail("shape", f"returned {len(got)} outputs, expected {len(oracle)}")
    worst_ratio = 0.0
    for i, (g, o, b) in enumerate(zip(got, oracle, baseline)):
        if not isinstance(g, torch.Tensor):
            return fail("shape", f"output {i} is {type(g).__name__}, not a tensor")
        if g.shape != o.shape:
            return fail("shape", f"output {i} has shape {tuple(g.shape)}, expected {tuple(o.shape)}")
        if i in spec.discrete_outputs:
            continue
        if g.dtype != b.dtype:
            return fail("dtype", f"output {i} has dtype {g.dtype}, expected {b.dtype}")
        finite = torch.isfinite(o)
        g64 = g.detach().to("cpu", torch.float64)
        o64 = o.detach().to("cpu", torch.float64)
        if "out" in kwargs and i == 0:
            poisoned = torch.isnan(kwargs["out"].detach().to("cpu", torch.float64)) & finite.cpu()
            if poisoned.any():
                first = ", ".join(str(tuple(x.tolist())) for x in poisoned.nonzero()[:5])
                return fail("unwritten", f"{int(poisoned.sum())} elements of `out` were never written (still NaN poison); first at {first}")
        if (~torch.isfinite(g64) & finite.cpu()).any():
            n = int((~torch.isfinite(g64) & finite.cpu()).sum())
            return fail("nan", f"output {i}: {n} NaN/inf elements where the oracle is finite")
        diff = torch.where(finite.cpu(), (g64 - o64).abs(), torch.zeros_like(g64))
        base_err = float(torch.where(finite, (b.double() - o.double()).abs(), torch.zeros_like(o.double())).max()) if o.numel() else 0.0
        allowed = 2 * base_err + ATOL[dtype]
        worst = float(diff.max()) if diff.numel() else 0.0
        res.worst_error, res.allowed_error = max(res.worst_error, worst), allowed
        if worst > allowed:
            return fail("tolerance", f"output {i}: max error {worst:.3g} > allowed {allowed:.3g} (2 x baseline {base_err:.3g} + atol {ATOL[dtype]:g}); "
                        + _mismatch_report(diff, allowed))
        worst_ratio = max(worst_ratio, worst / allowed if allowed else 0.0)
    # Convention for ops with discrete outputs: output 0 holds the scores, each discrete output a top-k index set of them.
    for i in spec.discrete_outputs:
        ok, msg = check_index_sets(got[i], oracle[0], got[i].shape[-1])
        if not ok:
            return fail("discrete", f"output {i}: {msg}")
    return res


@dataclass
class Report:
    op: str
    impl: str
    profile: str
    examples: int = 0
    failures: list[CaseResult] = field(default_factory=list)
    worst_error: float = 0.0
    allowed_error: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = f"{self.op} / {self.impl} ({self.profile}): {'PASS' if self.passed else 'FAIL'} on {self.examples} examples"
        if self.passed:
            return head + f", worst error {self.worst_error:.3g} (allowed {self.allowed_error:.3g})"
        return head + "\n" + "\n".join(f.message for f in self.failures[:1])

    def to_records(self) -> list[dict]:
        """One row per property: op, impl, property, passed, worst/allowed error, failing case."""
        failed = {f.property: f for f in self.failures}
        return [{"op": self.op, "impl": self.impl, "property": p, "passed": p not in failed,
                 "worst_error": failed[p].worst_error if p in failed else self.worst_error,
                 "allowed_error": failed[p].allowed_error if p in failed else self.allowed_error,
                 "failing_case": failed[p].case if p in failed else None} for p in PROPERTIES]


def default_dtypes(impl_name: str) -> tuple[torch.dtype, ...]:
    """CPU: float32 and float16 (bf16 `tl.dot` is wrong under TRITON_INTERPRET=1: DESIGN.md); GPU adds bfloat16."""
    return (torch.float32, torch.float16, torch.bfloat16) if torch.cuda.is_available() else (torch.float32, torch.float16)


def conform(op_name: str, impl: Callable[..., Any], impl_name: str = "impl", profile: str = "ci",
            dtypes: tuple[torch.dtype, ...] | None = None, max_examples: int | None = None, device: str = "cpu") -> Report:
    """Run the op's property suite on `impl` with hypothesis; stops at the first failing case per dtype."""
    from hypothesis import HealthCheck, given, settings

    spec = get_op(op_name)
    report = Report(op_name, impl_name, profile)
    dtypes = tuple(d for d in (dtypes or default_dtypes(impl_name)) if d in spec.dtypes)
    for dtype in dtypes:
        failed: list[CaseResult] = []

        @settings(max_examples=max_examples or settings.default.max_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(spec.cases(profile))
        def run(case):
            if failed:
                return
            result = check_case(op_name, impl, case, dtype, device)
            report.examples += 1
            report.worst_error = max(report.worst_error, result.worst_error)
            report.allowed_error = max(report.allowed_error, result.allowed_error)
            if not result.passed:
                failed.append(result)

        run()
        report.failures.extend(failed)
    if math.isnan(report.worst_error):
        report.worst_error = float("inf")
    return report
