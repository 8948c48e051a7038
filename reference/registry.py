"""The one registry: ops (reference + input strategy) and their implementations.

An op is a function that kernels must reproduce. Its spec names the reference (ground truth, run in float64
as the oracle and in the tested dtype as the baseline; docs/conformance.md), a hypothesis strategy
that draws a *case* (shapes, flags, seed: plain Python values, printable and replayable), and a builder that
turns a case into tensors of a given dtype and device. Implementations register under the op name with an
implementation name (`reference`, `torch`, `triton`, or a user's `module:function`).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class OpSpec:
    """What an op is: its reference, how to draw valid inputs, and what is discrete in its output.

    reference(**inputs) -> Tensor or tuple of Tensors; must run in any floating dtype it is given.
    cases(profile) -> hypothesis strategy of dict cases (plain values; `profile` is "ci" or "gpu").
    make_inputs(case, dtype, device) -> dict of keyword arguments for the reference and implementations.
    float_inputs: names of the floating tensor inputs cast to float64 for the oracle.
    discrete_outputs: indices of outputs compared exactly (up to ties), e.g. top-k index sets.
    examples: explicit cases (boundary shapes, and shapes that expose known classes of bugs such as a GQA group
    > 1) that conformance checks before any drawn case, in every profile, so no verdict rests on a lucky draw.
    Each has exactly the keys of a drawn case (suites/conformance/test_op_examples.py keeps watch).
    """

    name: str
    reference: Callable[..., Any]
    cases: Callable[[str], Any]
    make_inputs: Callable[[dict, torch.dtype, torch.device], dict]
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
    float_inputs: tuple[str, ...] = ()
    discrete_outputs: tuple[int, ...] = ()
    examples: tuple[dict, ...] = ()
    doc: str = ""


# Head dims the "ci" input profiles draw from: powers of two and odd sizes (a kernel's masked head-dim path must
# run in CI, not only on the GPU), up to LLaMA-3-8B's 128. Ops whose small cases stay cheap take a prefix.
HEAD_DIMS = (8, 16, 24, 32, 40, 59, 64, 128)

OPS: dict[str, OpSpec] = {}
IMPLS: dict[str, dict[str, Callable[..., Any]]] = {}
_IMPL_MODULES: list[str] = []


def register_op(spec: OpSpec) -> OpSpec:
    if spec.name in OPS and OPS[spec.name] is not spec:
        raise ValueError(f"op {spec.name!r} is already registered")
    OPS[spec.name] = spec
    IMPLS.setdefault(spec.name, {})
    return spec


def register_impl(op: str, name: str) -> Callable[[Callable], Callable]:
    """Decorator: `@register_impl("attention", "torch")` registers an implementation of `op`."""

    def deco(fn: Callable) -> Callable:
        IMPLS.setdefault(op, {})[name] = fn
        return fn

    return deco


def _load_builtin() -> None:
    # Importing the packages runs their registrations (one line per file in their __init__).
    importlib.import_module("reference.ops")
    importlib.import_module("optimized")


def get_op(name: str) -> OpSpec:
    _load_builtin()
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; registered ops: {sorted(OPS)}")
    return OPS[name]


def all_ops() -> dict[str, OpSpec]:
    _load_builtin()
    return dict(OPS)


def implementations(op: str) -> dict[str, Callable[..., Any]]:
    """Every registered implementation of `op` (the reference itself is not listed)."""
    get_op(op)
    return dict(IMPLS.get(op, {}))


def get_impl(op: str, name: str) -> Callable[..., Any]:
    """An implementation by registered name, `reference`, or `package.module:function`."""
    spec = get_op(op)
    if name == "reference":
        return spec.reference
    if ":" in name:
        return load_callable(name)
    impls = IMPLS.get(op, {})
    if name not in impls:
        raise KeyError(f"op {op!r} has no implementation {name!r}; registered: {sorted(impls) + ['reference']}")
    return impls[name]


def load_callable(path: str) -> Callable[..., Any]:
    """Import `package.module:function`, with an error that says which part failed."""
    if path.count(":") != 1:
        raise ValueError(f"impl must look like 'package.module:function', got {path!r}")
    module_name, attr = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
        raise ImportError(f"impl {path!r}: cannot import module {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ImportError(f"impl {path!r}: module {module_name!r} has no callable {attr!r}")
    return fn


def check_signature(op: str, fn: Callable[..., Any]) -> None:
    """Raise TypeError naming the missing arguments when `fn` cannot take the op's keyword inputs."""
    spec = get_op(op)
    ref_params = [p for p in inspect.signature(spec.reference).parameters.values() if p.name != "out"]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return  # builtins and compiled callables: nothing to check before calling
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    missing = [p.name for p in ref_params if p.name not in params]
    if missing:
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)} does not accept the arguments of op {op!r}: missing {missing}; "
            f"expected signature {inspect.signature(spec.reference)}"
        )


def accepts_out(fn: Callable[..., Any]) -> bool:
    try:
        return "out" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class Registry:
    """Named registry for non-op plug-ins (KV methods, policies): one file each, one decorator line."""

    kind: str
    items: dict[str, Any] = field(default_factory=dict)

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            if name in self.items and self.items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self.items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        if name not in self.items:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self.items)}")
        return self.items[name]

    def names(self) -> list[str]:
        return list(self.items)
