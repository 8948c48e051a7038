"""Bad input to every op gets a TypeError/ValueError naming the argument, raised before any kernel launches.

Every op of the registry and every implementation of it (`reference` plus `implementations(op)`; Triton ones only
with TRITON_INTERPRET=1 or a GPU), one test per (op, implementation) with the reference in each. The bad inputs are
derived from valid cases drawn by the op's own strategy
(`spec.cases("ci")`, `spec.make_inputs`, float32), so a new op is covered without editing this file. Tried per op
and drawn case:

- each tensor argument: not a tensor (a list); one rank more, one rank less; each dimension one longer, alone (so
  it mismatches its peers); each dimension 0 (empty); an integer dtype (floating arguments) or float32 and int32
  (index and length arguments); float16 among float32 peers (`DTYPE_GROUPS` says which floating arguments share a
  dtype; a whole group in float16 must work); on another device than its peers (`meta` on the CPU, the CPU on a
  GPU); NaN, +inf and -inf at a position the op reads; NaN at a position it does not read (padding past the
  lengths, cache rows not kept). Which positions are read: where a NaN changes the reference's output (finite
  checks off);
- every tensor argument at once as a non-contiguous view of the same values;
- scalar arguments: floats (scale, None in the case) NaN, +inf, -inf, 0, -1, a bool, a string; bools (causal) 2,
  a string, None; ints (n_init, mid_len, period, start, length, num_freqs, keep, kernel_size) -1, a bool, 1.5, a
  string, None; and, for ints, 0, 1, one more, and more than the longest dimension (top-k past the length);
- sequence lengths 0 and 1: each case field named like a length (`*_len`, `*_lens`, `length`, `tokens`,
  `n_local(s)`, `keep`, `kept`; in a list every entry, then the first alone) set to 0 and to 1.

Verdicts: wrong types, ranks, dtypes, devices, NaN/inf where read, and the scalars above that no op accepts
(negative, bool, non-integer, non-finite) must raise TypeError/ValueError naming the argument, with no Triton launch
in between. Where validity depends on the op (a longer or empty dimension, a count of 0 or 1 or more, a length
of 0 or 1, a lone float16 argument, NaN in unread padding, non-contiguous views) the reference decides: it raises
such an error (then every implementation must too, before launching) or returns a defined result without NaN (then
every implementation must give it within the conformance rule of harness/kernels/conformance.py, or refuse it with such an
error before launching, e.g. a kernel's tile limit).
"""
from __future__ import annotations

import inspect
import math
import os
import random
import re

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings

from harness.kernels.conformance import check_index_sets, default_device, rule_tolerance, uses_triton
from reference.ops.checks import finite_checks
from reference.ops.fourier import COEFFICIENT_INPUTS, TOKEN_INPUTS
from reference.registry import all_ops, get_op, implementations

DEVICE = default_device()
TRITON_RUNS = DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
OTHER_DEVICE = torch.device("meta") if DEVICE == "cpu" else torch.device("cpu")
# 3 cases per op under the ci profile (a third of its examples, rounded up; the first is the strategy's minimal case),
# at most 10: on a GPU every new shape compiles the kernels again.
EXAMPLES = max(1, min(10, -(-settings().max_examples // 3)))
MAX_ELEMENTS = 20_000  # small cases: each Triton kernel runs some 10-20 times per case in the interpreter
LENGTH_FIELD = re.compile(r"(^|_)(len|lens|length|tokens|n_locals?|keep|kept)$")
# Floating arguments that share one dtype; by default all of an op's floating arguments do.
DTYPE_GROUPS = {
    "fourier_stream_update": (("c_cos", "c_sin"), ("x",)),  # x may be fp16/bf16 with float32 coefficients
    "fourier_decode_attention": (TOKEN_INPUTS, COEFFICIENT_INPUTS),  # float32 coefficients for fp16/bf16 tokens
    "fourier_decode_attention_varlen": (TOKEN_INPUTS, COEFFICIENT_INPUTS),
}
OPS = sorted(all_ops())


def _impls(op: str) -> dict:
    fns = {"reference": get_op(op).reference, **implementations(op)}
    return {name: fn for name, fn in fns.items() if TRITON_RUNS or not uses_triton(fn)}


@pytest.fixture(autouse=True)
def one_thread():
    """The inputs are tiny: a second intra-op thread only adds wake-up latency (seen: 16 ms instead of 20 us per
    small matmul on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def launches(monkeypatch) -> dict:
    """Counts Triton kernel launches (compiled or interpreted) while the test runs."""
    counter = {"n": 0}
    try:
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction
    except ImportError:
        return counter
    for cls in (JITFunction, InterpretedFunction):
        original = cls.run

        def run(self, *args, _original=original, **kwargs):
            counter["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "run", run)
    return counter


# ---------------------------------------------------------------------------------------------------------- verdicts
def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _names(message: str, names) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", message) for n in names)


class Checker:
    """Runs one op's implementations on derived inputs and collects every verdict that fails."""

    def __init__(self, op: str, launches: dict, impl: str = "reference"):
        """The reference and implementation `impl` of `op` (the reference decides what is valid)."""
        impls = {name: fn for name, fn in _impls(op).items() if name in ("reference", impl)}
        self.op, self.spec, self.impls, self.launches = op, get_op(op), impls, launches
        self.params = [p for p in inspect.signature(self.spec.reference).parameters if p != "out"]
        self.failures: list[str] = []

    def fail(self, label: str, impl: str, why: str) -> None:
        self.failures.append(f"{self.op}/{impl}, {label}: {why}")

    def _error(self, label: str, impl: str, exc: Exception, names, before: int, value_error: bool = False) -> None:
        kinds = (ValueError,) if value_error else (TypeError, ValueError)
        if not isinstance(exc, kinds):
            self.fail(label, impl, f"raised {type(exc).__name__}, not {'/'.join(k.__name__ for k in kinds)}: {exc}")
        elif not _names(str(exc), names):
            self.fail(label, impl, f"the {type(exc).__name__} does not name {' or '.join(names)}: {exc}")
        elif self.launches["n"] != before:
            self.fail(label, impl, f"a kernel launched before the error: {exc}")

    def rejects(self, label: str, kwargs: dict, name: str, value_error: bool = False) -> None:
        """Every implementation raises TypeError/ValueError (ValueError alone if asked) naming `name`, unlaunched."""
        for impl, fn in self.impls.items():
            before = self.launches["n"]
            try:
                fn(**kwargs)
            except Exception as exc:  # noqa: BLE001 - the verdict is about which exception
                self._error(label, impl, exc, [name], before, value_error)
            else:
                self.fail(label, impl, "no error")

    def agrees(self, label: str, kwargs: dict, names) -> bool:
        """The reference decides: an error naming one of `names` (then every implementation raises one, unlaunched)
        or a result without NaN (then every implementation gives it, or refuses with such an error). True if valid."""
        try:
            ref = _as_tuple(self.spec.reference(**kwargs))
        except Exception as exc:  # noqa: BLE001
            self._error(label, "reference", exc, names, self.launches["n"])
            for impl, fn in self.impls.items():
                if impl != "reference":
                    before = self.launches["n"]
                    try:
                        fn(**kwargs)
                    except Exception as exc2:  # noqa: BLE001
                        self._error(label, impl, exc2, names, before)
                    else:
                        self.fail(label, impl, f"no error where the reference raised: {exc}")
            return False
        if any(o.is_floating_point() and bool(o.isnan().any()) for o in ref):
            self.fail(label, "reference", "returned NaN: not a defined result")
            return True
        oracle = None
        for impl, fn in self.impls.items():
            if impl == "reference":
                continue
            before = self.launches["n"]
            try:
                got = _as_tuple(fn(**kwargs))
            except Exception as exc:  # noqa: BLE001 - a kernel may refuse what it cannot hold, clearly and early
                self._error(label, impl, exc, self.params, before, value_error=True)
                print(f"{self.op}/{impl} refuses {label}, which the reference accepts: {exc}")
                continue
            oracle = oracle or self._oracle(kwargs)
            why = self._differs(got, ref, oracle)
            if why:
                self.fail(label, impl, f"differs from the reference: {why}")
        return True

    def _oracle(self, kwargs: dict) -> tuple:
        cast = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                for k, v in kwargs.items()}
        return _as_tuple(self.spec.reference(**cast))

    def _differs(self, got: tuple, base: tuple, oracle: tuple) -> str:
        """The conformance rule (harness/kernels/conformance.py) in short: '' when `got` passes."""
        if len(got) != len(base):
            return f"{len(got)} outputs, expected {len(base)}"
        allowed0 = 0.0
        for i, (g, b, o) in enumerate(zip(got, base, oracle)):
            if not isinstance(g, torch.Tensor) or g.shape != b.shape:
                return f"output {i} is {getattr(g, 'shape', type(g).__name__)}, expected shape {tuple(b.shape)}"
            if i in self.spec.discrete_outputs:
                continue
            if g.dtype != b.dtype:
                return f"output {i} is {g.dtype}, expected {b.dtype}"
            g64, b64, o64 = (t.detach().to("cpu", torch.float64) for t in (g, b, o))
            if bool((~torch.isfinite(g64) & torch.isfinite(o64)).any()):
                return f"output {i} holds NaN/inf where the oracle is finite"
            if not g64.numel():
                continue
            allowed = rule_tolerance(b64, o64, b.dtype)[0]
            allowed0 = allowed0 or allowed
            worst = float((g64 - o64).abs().max())
            if worst > allowed:
                return f"output {i}: max error {worst:.3g} > allowed {allowed:.3g}"
        for i in self.spec.discrete_outputs:
            if got[i].shape[-1]:
                ok, msg = check_index_sets(got[i], oracle[0], got[i].shape[-1], atol=allowed0)
                if not ok:
                    return f"output {i}: {msg}"
        return ""


# ------------------------------------------------------------------------------------------------------ derivations
def _grow(t: torch.Tensor, dim: int) -> torch.Tensor:
    """One more entry along `dim`: a copy of the first (zeros when there is none)."""
    if t.shape[dim]:
        extra = t.narrow(dim, 0, 1)
    else:
        extra = torch.zeros([1 if i == dim else n for i, n in enumerate(t.shape)], dtype=t.dtype, device=t.device)
    return torch.cat([t, extra], dim)


def _fewer_dims(t: torch.Tensor) -> torch.Tensor | None:
    if t.dim() >= 2:
        return t.flatten(0, 1)
    return t[0] if t.dim() == 1 and t.numel() else None


def _strided(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous view (every other element of a buffer twice as long)."""
    return torch.stack([t, t], dim=-1)[..., 0] if t.dim() else t


def _with_value(t: torch.Tensor, positions, value: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[torch.as_tensor(list(positions), dtype=torch.long, device=t.device)] = value
    return t


class Probe:
    """Where the reference reads a floating argument: positions whose NaN changes its output (checks off)."""

    def __init__(self, spec, kwargs: dict):
        self.spec, self.kwargs = spec, kwargs
        with finite_checks(False):
            self.clean = _as_tuple(spec.reference(**kwargs))

    def reads(self, name: str, positions) -> bool:
        with finite_checks(False):
            nan = _with_value(self.kwargs[name], positions, math.nan)
            out = _as_tuple(self.spec.reference(**{**self.kwargs, name: nan}))
        return any(not torch.equal(o, c) for o, c in zip(out, self.clean))

    def find(self, name: str, rng: random.Random) -> tuple[int | None, int | None]:
        """(a position read, a position not read), either None when there is none (or none was found)."""
        n = self.kwargs[name].numel()
        if not n:
            return None, None
        read = unread = None
        for p in dict.fromkeys([0, n - 1, rng.randrange(n), rng.randrange(n)]):
            if self.reads(name, [p]):
                read = p if read is None else read
            else:
                unread = p if unread is None else unread
        if read is None and self.reads(name, range(n)):  # bisect for a read position
            lo, hi = 0, n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if self.reads(name, range(lo, mid)) else (mid, hi)
            read = lo
        return read, unread


def _dtype_group(op: str, name: str, floats: list[str]) -> tuple[str, ...]:
    for group in DTYPE_GROUPS.get(op, (tuple(floats),)):
        if name in group:
            return tuple(g for g in group if g in floats)
    return (name,)


def _length_variants(case: dict):
    for field, value in case.items():
        if not LENGTH_FIELD.search(field):
            continue
        for v in (0, 1):
            if isinstance(value, list) and value:
                for new in ([v] * len(value), [v] + value[1:]):
                    if new != value:
                        yield f"{field}={new}", {**case, field: new}
            elif value is None or (isinstance(value, int) and not isinstance(value, bool) and value != v):
                yield f"{field}={v}", {**case, field: v}


# ------------------------------------------------------------------------------------------------------------ battery
def run_battery(chk: Checker, case: dict, x: dict) -> None:
    op, spec = chk.op, chk.spec
    tensors = [n for n, v in x.items() if isinstance(v, torch.Tensor)]
    floats = [n for n in tensors if x[n].is_floating_point()]
    longest = max((max(x[n].shape, default=0) for n in tensors), default=0)
    rng = random.Random(case.get("seed", 0))
    valid = chk.agrees("the drawn case", x, chk.params)
    assert valid, chk.failures

    for name in tensors:
        t = x[name]
        chk.rejects(f"{name} as a list", {**x, name: t.tolist()}, name)
        chk.rejects(f"{name} with one more dimension", {**x, name: t[None]}, name)
        fewer = _fewer_dims(t)
        if fewer is not None:
            chk.rejects(f"{name} with one dimension less", {**x, name: fewer}, name)
        for dim in range(t.dim()):
            chk.agrees(f"{name} dim {dim} one longer ({t.shape[dim] + 1})", {**x, name: _grow(t, dim)}, [name])
            if t.shape[dim]:
                chk.agrees(f"{name} dim {dim} empty", {**x, name: t.narrow(dim, 0, 0)}, [name])
        if len(tensors) > 1:  # an op of one tensor has no peer device to differ from
            chk.rejects(f"{name} on {OTHER_DEVICE}", {**x, name: t.to(OTHER_DEVICE)}, name)
        if t.is_floating_point():
            chk.rejects(f"{name} as int64", {**x, name: t.long()}, name)
            group = _dtype_group(op, name, floats)
            if len(group) > 1:
                chk.rejects(f"{name} float16 among float32 {group}", {**x, name: t.half()}, name)
            else:
                chk.agrees(f"{name} float16 (its own dtype)", {**x, name: t.half()}, [name])
        else:
            chk.rejects(f"{name} as float32", {**x, name: t.float()}, name)
            if t.dtype != torch.int32:
                chk.rejects(f"{name} as int32", {**x, name: t.int()}, name)
    for group in DTYPE_GROUPS.get(op, ()):
        members = [n for n in group if n in floats]
        chk.agrees(f"{members} all float16", {**x, **{n: x[n].half() for n in members}}, members)

    # NaN and inf where the op reads them; NaN where it does not (padding) changes nothing.
    probe = Probe(spec, x)
    unread = {}
    for name in floats:
        read, spare = probe.find(name, rng)
        if read is not None:
            for value in (math.nan, math.inf, -math.inf):
                chk.rejects(f"{name}[{read}] (flat) = {value}, read by the op",
                            {**x, name: _with_value(x[name], [read], value)}, name, value_error=True)
        if spare is not None:
            unread[name] = _with_value(x[name], [spare], math.nan)
    if unread:
        chk.agrees(f"NaN in padding the op does not read ({sorted(unread)})", {**x, **unread}, list(unread))

    strided = {n: _strided(x[n]) for n in tensors}
    if chk.agrees("every tensor non-contiguous", {**x, **strided}, list(strided)):
        got, want = _as_tuple(spec.reference(**{**x, **strided})), _as_tuple(spec.reference(**x))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, msg=lambda m: f"{op}/reference on non-contiguous views: {m}")

    for name, value in x.items():
        if isinstance(value, torch.Tensor):
            continue
        if isinstance(value, bool):
            for bad in (2, "yes", None):
                chk.rejects(f"{name}={bad!r}", {**x, name: bad}, name)
        elif value is None or isinstance(value, float):
            for bad in (math.nan, math.inf, -math.inf, 0.0, -1.0, True, "0.1"):
                chk.rejects(f"{name}={bad!r}", {**x, name: bad}, name)
        elif isinstance(value, int):
            for bad in (-1, True, 1.5, "1", None):
                chk.rejects(f"{name}={bad!r}", {**x, name: bad}, name)
            for edge in dict.fromkeys((0, 1, value + 1, value + longest + 1)):
                if edge != value:
                    chk.agrees(f"{name}={edge}", {**x, name: edge}, [name])

    for label, variant in _length_variants(case):
        try:
            vx = spec.make_inputs(variant, torch.float32, torch.device(DEVICE))
        except Exception:  # noqa: BLE001 - the strategy's builder cannot make this case: nothing to check
            continue
        chk.agrees(f"length {label} (case {variant})", vx, chk.params)


def _small(x: dict) -> bool:
    return sum(v.numel() for v in x.values() if isinstance(v, torch.Tensor)) <= MAX_ELEMENTS


def _no_missing_tensor(spec, x: dict) -> bool:
    """An optional tensor argument (annotated Tensor | None) that the case left None would go untested."""
    params = inspect.signature(spec.reference).parameters
    return not any(v is None and "Tensor" in str(params[k].annotation) for k, v in x.items() if k in params)


def _shards(op: str) -> list[str]:
    """One test per implementation of `op` (each beside the reference), so the slow ones run in parallel; the
    reference alone where no other implementation runs here."""
    return [name for name in sorted(_impls(op)) if name != "reference"] or ["reference"]


@pytest.mark.parametrize("op,impl", [pytest.param(op, impl, id=f"{op}-{impl}") for op in OPS for impl in _shards(op)])
def test_bad_inputs_raise_naming_the_argument(op, impl, launches):
    spec = get_op(op)
    chk = Checker(op, launches, impl)

    @settings(max_examples=EXAMPLES, database=None, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(spec.cases("ci"))
    def check(case):
        x = spec.make_inputs(case, torch.float32, torch.device(DEVICE))
        assume(_small(x) and _no_missing_tensor(spec, x))
        chk.failures.clear()
        with finite_checks(True):  # whatever LONGCTX_CHECK_FINITE says
            run_battery(chk, case, x)
        assert not chk.failures, f"case {case}:\n" + "\n".join(chk.failures[:40])

    check()


def test_the_finite_check_has_one_switch(monkeypatch):
    """finite_checks(False) and LONGCTX_CHECK_FINITE=0 turn the NaN/inf check off; finite_checks(True) wins."""
    from reference.ops.attention import attention

    monkeypatch.delenv("LONGCTX_CHECK_FINITE", raising=False)
    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 1, 5, 8)
    k[0, 0, 2, 1] = math.nan
    with pytest.raises(ValueError, match=r"k must be finite .* index \(0, 0, 2, 1\)"):
        attention(q, k, k)
    with finite_checks(False):
        assert attention(q, k, k).isnan().any()
    monkeypatch.setenv("LONGCTX_CHECK_FINITE", "0")
    assert attention(q, k, k).isnan().any()
    with finite_checks(True), pytest.raises(ValueError, match="k must be finite"):
        attention(q, k, k)
