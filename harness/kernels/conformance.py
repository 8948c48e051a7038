"""The conformance rule (docs/conformance.md), generic over every registered op.

For each drawn case: the oracle is the reference on float64 inputs, the baseline the reference in the tested
dtype. An implementation passes the case when

    max|impl - oracle| <= 2 * max|baseline - oracle| + atol(dtype) + eps(dtype) * max|oracle|

with atol float32 1e-5, float16 1e-3, bfloat16 1e-2 and eps the dtype's machine epsilon. Source: flash-attention's
tests (tests/test_flash_attn.py, and the Hopper tests) accept a kernel whose error is at most a small multiple of
the error of the same reference run in the same dtype, plus a floor at the dtype's rounding scale; we make the
multiple 2 and the floor explicit. The floor's second term is one unit in the last place of the output's largest
element: the baseline can land on the oracle's nearest value by luck (an output of two elements, or a sum that
happens to round exactly) while a correct kernel that sums in another order lands one unit away, which at magnitude
1000 is six times float32's atol. It must also write every output element (an `out` argument, a view into a wider
buffer, is poisoned with NaN before the call) and nothing outside it (the buffer's margin holds a sentinel), return
no NaN/inf where the oracle is finite, leave its inputs untouched (they are cloned and compared, KernelBench/GPU
MODE's guard against gamed kernels), and return discrete outputs (top-k index sets) that are a top-k of the oracle's
scores up to ties. Each failure names the property, counts the mismatches and shows the first indices (GPU MODE's
verbose_allclose), and prints a `check_case(...)` call that replays it.

Convention for ops with discrete outputs (OpSpec.discrete_outputs): output 0 holds the scores, and each discrete
output is a top-k index set over its last dimension.
"""
from __future__ import annotations

import math
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from reference.registry import accepts_out, check_signature, get_impl, get_op, implementations

ATOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}
PROPERTIES = ("signature", "raises", "shape", "dtype", "unwritten", "wrote_outside", "nan", "tolerance", "discrete",
              "mutated_input")
OUT_MARGIN, SENTINEL = 3, -7777.0  # `out` is a view into a buffer this much wider, its margin holding the sentinel
FIRST = 5  # how many failing indices a message shows


def rule_tolerance(baseline: torch.Tensor, oracle: torch.Tensor, dtype: torch.dtype) -> tuple[float, float, float]:
    """(allowed, baseline error, floor) of one output (float64 tensors on the CPU): 2 max|baseline - oracle| + floor,
    floor = atol(dtype) + eps(dtype) max|oracle|. Elements where the oracle or the baseline is not finite are left
    out (a baseline that overflowed says nothing about the dtype's rounding)."""
    ok = torch.isfinite(oracle) & torch.isfinite(baseline)
    zero = torch.zeros((), dtype=torch.float64)
    base_err = float(torch.where(ok, (baseline - oracle).abs(), zero).max()) if oracle.numel() else 0.0
    top = float(torch.where(torch.isfinite(oracle), oracle.abs(), zero).max()) if oracle.numel() else 0.0
    floor = ATOL[dtype] + torch.finfo(dtype).eps * top
    return 2 * base_err + floor, base_err, floor


@dataclass
class CaseResult:
    """The verdict on one case: `property` names the first property that failed (None when passed)."""

    passed: bool
    property: str | None = None
    message: str = ""  # what failed, then a `replay: check_case(...)` line
    detail: str = ""  # what failed, alone
    worst_error: float = 0.0
    allowed_error: float = 0.0
    mismatches: int = 0
    first_indices: list = field(default_factory=list)  # index tuples, or (index, got, expected) for values
    case: dict = field(default_factory=dict)
    dtype: str = ""
    op: str = ""
    knobs: dict = field(default_factory=dict)  # the `conformance_knobs` setting the call got, if any

    def replay(self, impl: str = "fn") -> str:
        """A call that reruns this case: `check_case('attention', fn, {...}, torch.float16)`."""
        knobs = f", knobs={self.knobs!r}" if self.knobs else ""
        return f"check_case({self.op!r}, {impl}, {self.case!r}, torch.{self.dtype}{knobs})"


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _cast(inputs: dict, names: tuple[str, ...], dtype: torch.dtype) -> dict:
    return {k: (v.to(dtype) if k in names and isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def _clone(inputs: dict) -> dict:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def _padded_views(inputs: dict) -> tuple[dict, dict]:
    """Copies of `inputs` whose floating tensors (non-empty, rank >= 1) are views into NaN-padded buffers:
    (kwargs, {name: the NaN margin of that input's buffer})."""
    kwargs, margins = {}, {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() >= 1 and value.numel():
            buffer = torch.full((*value.shape[:-1], value.shape[-1] + OUT_MARGIN), float("nan"), dtype=value.dtype,
                                device=value.device)
            kwargs[name] = buffer[..., :value.shape[-1]].copy_(value)
            margins[name] = buffer[..., value.shape[-1]:]
        else:
            kwargs[name] = value.clone() if isinstance(value, torch.Tensor) else value
    return kwargs, margins


def _where(mask: torch.Tensor, got: torch.Tensor | None = None, want: torch.Tensor | None = None) -> list:
    """The first few indices where `mask` holds, with got/expected values when given."""
    rows = []
    for idx in mask.nonzero()[:FIRST].tolist():
        if got is None or want is None:
            rows.append(tuple(idx))
        else:
            rows.append((tuple(idx), float(got[tuple(idx)]), float(want[tuple(idx)])))
    return rows


def _fmt(rows: list) -> str:
    return "; ".join(f"{idx}: got {got:.6g}, expected {want:.6g}" for idx, got, want in rows)


def check_index_sets(impl_idx: torch.Tensor, oracle_scores: torch.Tensor, k: int, rtol: float = 1e-6,
                     atol: float = 0.0) -> tuple[bool, str]:
    """Is each row of `impl_idx` ([..., k]) a top-k of `oracle_scores` ([..., N]) up to ties?

    Order within a row does not matter. With s_k the k-th largest oracle score and tol = atol + rtol * |s_k|: every
    index scoring above s_k + tol must be chosen, and none scoring below s_k - tol may be (a tie or near-tie at the
    k-th place may be broken either way). Indices must be distinct and in range. Returns (ok, message naming the first bad row).
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    scores = oracle_scores.detach().reshape(-1, oracle_scores.shape[-1]).to("cpu", torch.float64)
    if impl_idx.dtype.is_floating_point or impl_idx.dtype.is_complex:
        return False, f"indices must be an integer tensor, got {impl_idx.dtype}"
    idx = impl_idx.detach().reshape(-1, impl_idx.shape[-1]).to("cpu", torch.long)
    if idx.shape[0] != scores.shape[0] or idx.shape[1] != k:
        return False, f"index shape {tuple(impl_idx.shape)} does not hold {k} per row of scores {tuple(oracle_scores.shape)}"
    if k > scores.shape[1]:
        return False, f"k={k} exceeds the {scores.shape[1]} scores per row"
    out_of_range = (idx < 0) | (idx >= scores.shape[1])
    if out_of_range.any():
        r, c = out_of_range.nonzero()[0].tolist()
        return False, f"row {r}: index {idx[r, c].item()} is out of range [0, {scores.shape[1]})"
    dup = (idx.sort(dim=-1).values.diff(dim=-1) == 0).any(dim=-1)
    if dup.any():
        r = int(dup.nonzero()[0])
        return False, f"row {r}: repeated indices {idx[r].tolist()}"
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]
    tol = atol + rtol * kth.abs()
    chosen = torch.gather(scores, 1, idx)
    bad = chosen < kth - tol
    if bad.any():
        r, c = bad.nonzero()[0].tolist()
        return False, (f"row {r}: index {idx[r, c].item()} (oracle score {chosen[r, c].item():.6g}) is below the "
                       f"k-th largest score {kth[r, 0].item():.6g} beyond the tie tolerance; {int(bad.sum())} such indices")
    must = scores > kth + tol  # strictly above any tie at the k-th place: every such index must be chosen
    picked = torch.zeros_like(must).scatter_(1, idx, True)
    missed = must & ~picked
    if missed.any():
        r, j = missed.nonzero()[0].tolist()
        return False, (f"row {r}: index {j} (oracle score {scores[r, j].item():.6g}) is above the k-th largest score "
                       f"{kth[r, 0].item():.6g} beyond the tie tolerance but was not chosen; {int(missed.sum())} such "
                       f"indices")
    return True, ""


def check_case(op_name: str, impl_fn: Callable[..., Any], case: dict, dtype: torch.dtype,
               device: str = "cpu", knobs: dict | None = None) -> CaseResult:
    """Check `impl_fn` on one case of `op_name` in `dtype`: the whole rule, first failing property reported.
    knobs: extra keywords for the call (a setting of `conformance_knobs`), named in the result's replay line."""
    spec = get_op(op_name)
    if not isinstance(dtype, torch.dtype) or dtype not in ATOL:
        raise ValueError(f"dtype must be one of {list(ATOL)}, got {dtype!r}")
    res = CaseResult(True, case=dict(case), dtype=str(dtype).replace("torch.", ""), op=op_name,
                     knobs=dict(knobs or {}))

    def fail(prop: str, msg: str, mismatches: int = 0, first: list | None = None) -> CaseResult:
        res.passed, res.property, res.mismatches, res.first_indices = False, prop, mismatches, first or []
        res.detail = msg
        res.message = f"[{prop}] {op_name} {res.dtype}: {msg}\n  replay: {res.replay()}"
        return res

    try:
        check_signature(op_name, impl_fn)
    except TypeError as exc:
        return fail("signature", str(exc))
    inputs = spec.make_inputs(case, dtype, torch.device(device))
    oracle = _as_tuple(spec.reference(**_cast(_clone(inputs), spec.float_inputs, torch.float64)))
    baseline = _as_tuple(spec.reference(**_clone(inputs)))
    # The impl gets its own copies, `inputs` stays pristine for the mutation check. Each floating tensor input is a
    # strided view into a buffer with a NaN margin past its last dimension (a caller's slice of a wider tensor): a
    # kernel that reads past a row (a load mask like `d <= D`) pulls NaN into its result, one that assumes
    # contiguous rows reads the wrong elements, and one that writes there is caught by the margin check below.
    kwargs, input_margins = _padded_views(inputs)
    out = margin = None
    if accepts_out(impl_fn) and len(oracle) == 1 and baseline[0].is_floating_point():
        # `out` is a strided view into a wider buffer (as a caller's slice of a larger tensor would be): any element
        # left NaN was never written, and a kernel whose stores leave the view (a mask like `d <= D`) overwrites
        # the sentinel in the margin, the caller's neighbouring data.
        shape = baseline[0].shape
        buffer = torch.full((*shape[:-1], shape[-1] + OUT_MARGIN), SENTINEL, dtype=baseline[0].dtype,
                            device=baseline[0].device)
        out, margin = buffer[..., :shape[-1]], buffer[..., shape[-1]:]
        out.fill_(float("nan"))
        kwargs["out"] = out
    try:
        got = impl_fn(**kwargs, **res.knobs)
    except Exception as exc:  # noqa: BLE001 - whatever a kernel raises is a failure to report
        return fail("raises", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}")
    got = (out,) if got is None and out is not None else _as_tuple(got)
    touched = margin != torch.full_like(margin, SENTINEL) if margin is not None else None
    if touched is not None and touched.any():
        return fail("wrote_outside", f"{int(touched.sum())} elements outside `out` (in the {OUT_MARGIN} elements past "
                    f"its last dimension, a caller's neighbouring data) were overwritten; first at {_where(touched)}",
                    int(touched.sum()), _where(touched))

    for name, pad in input_margins.items():
        if not torch.isnan(pad).all():
            n = int((~torch.isnan(pad)).sum())
            return fail("mutated_input", f"{n} elements past the last dimension of input {name!r} (a view into a "
                        f"wider buffer: a caller's neighbouring data) were overwritten", n, _where(~torch.isnan(pad)))
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and not torch.equal(value, kwargs[name]):
            if value.shape != kwargs[name].shape:
                return fail("mutated_input", f"input {name!r} was resized from {tuple(value.shape)} to "
                            f"{tuple(kwargs[name].shape)} by the implementation")
            changed = value.ne(kwargs[name])
            return fail("mutated_input", f"input {name!r} was modified by the implementation "
                        f"({int(changed.sum())} elements changed)", int(changed.sum()), _where(changed))
    if len(got) != len(oracle):
        return fail("shape", f"returned {len(got)} outputs, expected {len(oracle)}")
    for i, (g, o) in enumerate(zip(got, oracle)):
        if not isinstance(g, torch.Tensor):
            return fail("shape", f"output {i} is a {type(g).__name__}, not a tensor")
        if g.shape != o.shape:
            return fail("shape", f"output {i} has shape {tuple(g.shape)}, expected {tuple(o.shape)}")

    score_allowed = 0.0
    worst_ratio = -1.0
    for i, (g, o, b) in enumerate(zip(got, oracle, baseline)):
        if i in spec.discrete_outputs:
            continue
        if g.dtype != b.dtype or g.device != b.device:
            return fail("dtype", f"output {i} is {g.dtype} on {g.device}, expected {b.dtype} on {b.device}")
        g64, o64, b64 = (t.detach().to("cpu", torch.float64) for t in (g, o, b))
        finite = torch.isfinite(o64)
        if out is not None and i == 0:
            unwritten = torch.isnan(out.detach().to("cpu", torch.float64)) & finite
            if unwritten.any():
                n = int(unwritten.sum())
                return fail("unwritten", f"{n} of {out.numel()} elements of `out` still hold the NaN poison "
                            f"(never written, or written as NaN); first at {_where(unwritten)}", n, _where(unwritten))
            if g is not out and not torch.equal(g, out):
                return fail("unwritten", "`out` does not hold the returned result (an implementation given `out` "
                            "must write its result there)")
        bad = ~torch.isfinite(g64) & finite
        if bad.any():
            n = int(bad.sum())
            return fail("nan", f"output {i}: {n} NaN/inf elements where the oracle is finite; first at "
                        f"{_fmt(_where(bad, g64, o64))}", n, _where(bad, g64, o64))
        inf_oracle = torch.isinf(o64)
        if (inf_oracle & (g64 != o64)).any():
            bad = inf_oracle & (g64 != o64)
            return fail("tolerance", f"output {i}: differs where the oracle is infinite; first at "
                        f"{_fmt(_where(bad, g64, o64))}", int(bad.sum()), _where(bad, g64, o64))
        zero = torch.zeros((), dtype=torch.float64)
        diff = torch.where(finite, (g64 - o64).abs(), zero)
        allowed, base_err, floor = rule_tolerance(b64, o64, dtype)
        worst = float(diff.max()) if diff.numel() else 0.0
        if i == 0:
            score_allowed = allowed
        if worst / allowed > worst_ratio:
            worst_ratio, res.worst_error, res.allowed_error = worst / allowed, worst, allowed
        if worst > allowed:
            over = diff > allowed
            n = int(over.sum())
            return fail("tolerance", f"output {i}: max error {worst:.3g} > allowed {allowed:.3g} "
                        f"(2 x baseline error {base_err:.3g} + floor {floor:.3g}); {n} of {diff.numel()} elements "
                        f"exceed it; first: {_fmt(_where(over, g64, o64))}", n, _where(over, g64, o64))

    for i in spec.discrete_outputs:
        ok, msg = check_index_sets(got[i], oracle[0], got[i].shape[-1], atol=score_allowed)
        if not ok:
            return fail("discrete", f"output {i}: {msg}")
    return res


@dataclass
class Report:
    """Conformance of one implementation of one op over the drawn cases of every checked dtype."""

    op: str
    impl: str
    profile: str
    dtypes: list = field(default_factory=list)
    examples: int = 0
    failures: list = field(default_factory=list)  # at most one CaseResult per dtype: the first failing case
    worst_error: float = 0.0  # the case with the largest worst/allowed ratio, over every dtype
    allowed_error: float = 0.0
    worst_ratio: float = 0.0
    draws: str = ""  # how the cases were drawn: `draws(profile, seed)`

    @property
    def passed(self) -> bool:
        return self.examples > 0 and not self.failures

    def summary(self) -> str:
        how = f", {self.draws}" if self.draws else ""
        head = (f"{self.op} / {self.impl} ({self.profile}{how}, {', '.join(self.dtypes)}): "
                f"{'PASS' if self.passed else 'FAIL'} on {self.examples} examples")
        if self.passed:
            return head + f"; worst error {self.worst_error:.3g} (allowed {self.allowed_error:.3g})"
        if not self.failures:
            return head + "; no example was drawn"
        expr = f"get_impl({self.op!r}, {self.impl!r})" if "<locals>" not in self.impl else "fn"
        return head + "\n" + "\n".join(f"[{f.property}] {self.op} {f.dtype}: {f.detail}\n  replay: {f.replay(expr)}"
                                        for f in self.failures)

    def to_records(self) -> list[dict]:
        """One row per property: op, impl, property, passed, worst_error, allowed_error, failing_case (+ dtype).

        `passed` means no drawn case failed on that property (a case stops at its first failing property).
        """
        failed = {f.property: f for f in self.failures}
        rows = []
        for p in PROPERTIES:
            f = failed.get(p)
            rows.append({"op": self.op, "impl": self.impl, "property": p, "passed": f is None and self.examples > 0,
                         "worst_error": f.worst_error if f else self.worst_error,
                         "allowed_error": f.allowed_error if f else self.allowed_error,
                         "failing_case": f.case if f else None, "dtype": f.dtype if f else None,
                         "message": f.message if f else "", "profile": self.profile, "examples": self.examples})
        return rows


def uses_triton(fn: Callable[..., Any]) -> bool:
    """Whether `fn`'s module holds Triton objects (the `triton` module or a @triton.jit kernel)."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None:
        return False
    return any((getattr(v, "__name__", "") or "").split(".")[0] == "triton" or type(v).__module__.split(".")[0] == "triton"
               for v in vars(module).values())


def default_dtypes(impl_fn: Callable[..., Any], device: str = "cpu") -> tuple[torch.dtype, ...]:
    """float32, float16, bfloat16; but not bfloat16 for a Triton kernel off the GPU.

    Under TRITON_INTERPRET=1 (triton 3.9, CPU) `tl.dot` on bf16 operands returns garbage (docs/design.md, the
    interpreter trap; suites/conformance/test_triton_interpreter_trap.py keeps watch), so bf16 Triton kernels are
    checked on the GPU only. PyTorch implementations run bf16 on CPU correctly.
    """
    if str(device).startswith("cuda") or not uses_triton(impl_fn):
        return (torch.float32, torch.float16, torch.bfloat16)
    return (torch.float32, torch.float16)


def default_device() -> str:
    """Where conformance runs unless told: the GPU when there is one (compiled kernels), else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def impl_label(op_name: str, impl_fn: Callable[..., Any]) -> str:
    """The registered name of `impl_fn` for `op_name`, else `module:qualname`."""
    for name, fn in implementations(op_name).items():
        if fn is impl_fn:
            return name
    if impl_fn is get_op(op_name).reference:
        return "reference"
    return f"{getattr(impl_fn, '__module__', '?')}:{getattr(impl_fn, '__qualname__', repr(impl_fn))}"


class _CaseFailed(Exception):
    pass


@contextmanager
def source_constants_off():
    """Draw without the constants hypothesis mines from the source of every local module imported so far.

    Hypothesis (6.131 and later; hypothesis.internal.conjecture.providers) replaces an integer or float draw by
    such a literal now and then (p 0.05 / 0.15). The pool is whatever this process has imported, so without this
    the derandomized ci draws of one checkout differed by entry point (`import harness.cli` first, a pytest-xdist
    worker's earlier tests, a mutant's module) and changed with any literal edited anywhere in the repository.
    Private API of the pinned hypothesis; where it is missing this does nothing.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - another hypothesis
        yield
        return
    mined, cache = getattr(providers, "_get_local_constants", None), getattr(providers, "CONSTANTS_CACHE", None)
    if mined is None or cache is None:  # pragma: no cover - another hypothesis
        yield
        return
    none = Constants()
    providers._get_local_constants = lambda: none
    cache.cache.clear()  # (type, constraints) -> permitted constants, computed with the pool in force
    try:
        yield
    finally:
        providers._get_local_constants = mined
        cache.cache.clear()


def draws(profile: str, seed: int | None) -> str:
    """How `conform` draws its cases: 'seed N', 'derandomized' (profile ci, no seed) or 'random'."""
    if seed is not None:
        return f"seed {seed}"
    return "derandomized" if profile == "ci" else "random"


def conform(op_name: str, impl_fn: Callable[..., Any] | str, profile: str = "ci",
            dtypes: tuple[torch.dtype, ...] | None = None, max_examples: int | None = None, *,
            impl_name: str | None = None, device: str = "cpu", shrink: bool = False,
            seed: int | None = None) -> Report:
    """Run the op's property suite on `impl_fn` for each dtype: the op's explicit examples (OpSpec.examples)
    first, with the default knobs and then with each setting in `impl_fn.conformance_knobs` (reference.registry.
    conformance_knobs), then `max_examples` cases drawn by hypothesis, fresh inputs each.

    impl_fn: a callable, a registered implementation name, or `package.module:function`.
    profile: the input profile handed to `spec.cases` ("ci" small shapes, "gpu" LLaMA-3-8B shapes); the number
    of examples comes from the loaded hypothesis profile unless `max_examples` is given.
    dtypes: default `default_dtypes(impl_fn, device)`, restricted to those the op supports.
    shrink: let hypothesis shrink a failing case to a smaller one before reporting it (slower).
    seed: an int fixes the drawn cases (the same seed draws the same cases); None draws them derandomized under
    the "ci" profile (the same cases on every run and machine, so a CI verdict is reproducible) and afresh
    under "dev" and "gpu" (more examples, for finding what fixed draws miss).
    Stops at the first failing case of each dtype.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fix_seed

    spec = get_op(op_name)
    if isinstance(impl_fn, str):
        impl_name = impl_name or impl_fn
        impl_fn = get_impl(op_name, impl_fn)
    if not callable(impl_fn):
        raise TypeError(f"impl_fn must be callable or a name, got {type(impl_fn).__name__}")
    if profile not in ("ci", "dev", "gpu"):
        raise ValueError(f"profile must be 'ci', 'dev' or 'gpu', got {profile!r}")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
    wanted = tuple(dtypes) if dtypes is not None else default_dtypes(impl_fn, device)
    unsupported = [d for d in wanted if d not in spec.dtypes]
    if unsupported and dtypes is not None:
        raise ValueError(f"dtypes {unsupported} are not supported by op {op_name!r} (supports {list(spec.dtypes)})")
    wanted = tuple(d for d in wanted if d in spec.dtypes)
    report = Report(op_name, impl_name or impl_label(op_name, impl_fn), profile,
                    dtypes=[str(d).replace("torch.", "") for d in wanted], draws=draws(profile, seed))
    phases = (Phase.generate,) + ((Phase.shrink,) if shrink else ())

    def check(case: dict, dtype: torch.dtype, knobs: dict | None = None) -> CaseResult:
        result = check_case(op_name, impl_fn, case, dtype, device, knobs)
        report.examples += 1
        if result.passed and result.allowed_error and result.worst_error / result.allowed_error >= report.worst_ratio:
            report.worst_ratio = result.worst_error / result.allowed_error
            report.worst_error, report.allowed_error = result.worst_error, result.allowed_error
        return result

    for dtype in wanted:
        # The explicit examples first, in the spec's order: a shape known to expose a class of bugs fails here
        # whatever the draws; the first failing one is reported and no case is drawn for this dtype.
        # Then again under each knob setting the implementation declares (conformance_knobs).
        knob_settings = ({},) + tuple(getattr(impl_fn, "conformance_knobs", ()))
        failed = next((r for r in (check(c, dtype, k) for k in knob_settings for c in spec.examples) if not r.passed), None)
        if failed is not None:
            report.failures.append(failed)
            continue
        last: list[CaseResult] = []

        @settings(max_examples=max_examples or settings().max_examples, deadline=None, database=None,
                  phases=phases, derandomize=seed is None and profile == "ci",
                  suppress_health_check=list(HealthCheck))
        @given(spec.cases(profile))
        def run(case):
            result = check(case, dtype)
            if not result.passed:
                last[:] = [result]  # hypothesis replays the (shrunk) failing case last
                raise _CaseFailed(result.message)

        if seed is not None:
            run = fix_seed(seed)(run)
        try:
            with source_constants_off():  # the same draws whatever this process imported
                run()
        except* _CaseFailed:
            pass
        report.failures.extend(last)
    if math.isnan(report.worst_error):
        report.worst_error = float("inf")
    return report
