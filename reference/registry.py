"""The one registry: ops (reference + input strategy) and their implementations.

An op is a function that kernels must reproduce. Its spec names the reference (ground truth, run in float64
as the oracle and in the tested dtype as the baseline; docs/conformance.md), a hypothesis strategy
that draws a *case* (shapes, flags, seed: plain Python values, printable and replayable), and a builder that
turns a case into tensors of a given dtype and device. Implementations register under the op name with an
implementation name (`reference`, `torch`, `triton`, or a user's `module:function`). An op whose spec has a
`bench` (reference/bench_spec.py) is timed by the kernel benchmark, every implementation of it and its baselines.
"""
from __future__ import annotations

import importlib
import inspect
import math
import os
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from reference.bench_spec import ImplBench, OpBench


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
    bench: how the kernel benchmark builds the op's inputs and counts its bytes (None: the op is not benchmarked).
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
    bench: OpBench | None = None


# Head dims the "ci" input profiles draw from: powers of two and odd sizes (a kernel's masked head-dim path must
# run in CI, not only on the GPU), up to LLaMA-3-8B's 128. Ops whose small cases stay cheap take a prefix.
HEAD_DIMS = (8, 16, 24, 32, 40, 59, 64, 128)

OPS: dict[str, OpSpec] = {}
IMPLS: dict[str, dict[str, Callable[..., Any]]] = {}
BENCH: dict[str, dict[str, ImplBench | None]] = {}  # op -> implementation -> its benchmark hooks (None: not timed)
BASELINES: dict[str, dict[str, ImplBench]] = {}  # op -> timed beside the implementations, not checked by conformance

# Auto-loading. Every module of a built-in package is imported the first time its registry is read (a pkgutil
# walk), so adding an op, a kernel, a KV method, a dLLM cache or a policy is one new file, its name written once in
# its decorator. Code outside the repository joins through PLUGINS_ENV: comma-separated modules or packages (a
# package's modules are all imported), imported before any registry lookup; `python -m harness --plugins` sets it.
PLUGINS_ENV = "LONGCTX_PLUGINS"
OP_PACKAGES = ("reference.ops", "optimized")
_walked: set[str] = set()
_walking: set[str] = set()
_plugins_loaded: set[str] = set()


def import_package(name: str) -> None:
    """Import module `name` and, if it is a package, every module under it (once per process, once it succeeded:
    a module that fails to import fails every lookup, never leaving a silently partial registry)."""
    if name in _walked or name in _walking:
        return
    _walking.add(name)  # a module of the walk may read its registry while it is imported
    try:
        module = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{name}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)
    finally:
        _walking.discard(name)
    _walked.add(name)


def plugin_names(value: str | None = None) -> list[str]:
    """The plugin modules named by `value` (default: the PLUGINS_ENV environment variable)."""
    value = os.environ.get(PLUGINS_ENV, "") if value is None else value
    return [p.strip() for p in value.split(",") if p.strip()]


def load_plugins(value: str | None = None) -> list[str]:
    """Import the plugins (PLUGINS_ENV, or `value`) not imported yet; an ImportError names the plugin."""
    names = plugin_names(value)
    for name in names:
        if name in _plugins_loaded:
            continue
        _plugins_loaded.add(name)
        try:
            import_package(name)
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything on import
            _plugins_loaded.discard(name)
            _walked.discard(name)
            raise ImportError(f"plugin {name!r} ({PLUGINS_ENV}): cannot import it: {exc}") from exc
    return names


def register_op(spec: OpSpec) -> OpSpec:
    if spec.name in OPS and OPS[spec.name] is not spec:
        raise ValueError(f"op {spec.name!r} is already registered")
    OPS[spec.name] = spec
    IMPLS.setdefault(spec.name, {})
    return spec


def register_impl(op: str, name: str, *, bench: ImplBench | bool = True) -> Callable[[Callable], Callable]:
    """Decorator: `@register_impl("attention", "torch")` registers an implementation of `op`.

    bench: the implementation's hooks for the kernel benchmark (`ImplBench`); True (default hooks) or False (not
    timed, e.g. a reference formulation). It matters only for ops with a `bench` spec.
    """
    if not (isinstance(bench, (bool, ImplBench))):
        raise TypeError(f"register_impl({op!r}, {name!r}): bench must be an ImplBench, True or False, got {bench!r}")

    def deco(fn: Callable) -> Callable:
        if name in BASELINES.get(op, {}):
            raise ValueError(f"{name!r} is already a baseline of op {op!r}")
        IMPLS.setdefault(op, {})[name] = fn
        BENCH.setdefault(op, {})[name] = (ImplBench() if bench is True else bench) or None
        return fn

    return deco


def conformance_knobs(*settings: dict) -> Callable[[Callable], Callable]:
    """Decorator: keyword settings of an implementation's tuning knobs that conformance also checks.

    `@conformance_knobs({"block_t": 16, "num_splits": 2})` makes conformance run the op's explicit examples once
    more per setting, the knobs passed as keywords: a tuned configuration must be as right as the default one, and
    a knob the entry point drops or hands to the wrong parameter shows. Each setting is a non-empty dict of
    parameter names the function takes.
    """
    for i, knobs in enumerate(settings):
        if not isinstance(knobs, dict) or not knobs or not all(isinstance(k, str) for k in knobs):
            raise TypeError(f"conformance_knobs: setting {i} must be a non-empty dict of parameter names, got {knobs!r}")

    def deco(fn: Callable) -> Callable:
        params = inspect.signature(fn).parameters
        unknown = sorted({k for knobs in settings for k in knobs} - set(params))
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            raise TypeError(f"conformance_knobs: {fn.__qualname__} takes no parameter(s) {unknown}")
        fn.conformance_knobs = tuple(dict(k) for k in settings)
        return fn

    return deco


def register_baseline(op: str, name: str, bench: ImplBench) -> ImplBench:
    """Register a baseline of `op`: a kernel the benchmark times beside the implementations on the op's inputs
    (`bench.prepare` makes its call) but the conformance suite does not check (someone else's, e.g. PyTorch SDPA)."""
    if not isinstance(bench, ImplBench) or bench.prepare is None:
        raise TypeError(f"register_baseline({op!r}, {name!r}): bench must be an ImplBench with a prepare hook")
    if name in IMPLS.get(op, {}):
        raise ValueError(f"{name!r} is already an implementation of op {op!r}")
    BASELINES.setdefault(op, {})[name] = bench
    return bench


def load_ops() -> None:
    """Register every built-in op and implementation (every module of OP_PACKAGES) and the plugins."""
    for package in OP_PACKAGES:
        import_package(package)
    load_plugins()


def get_op(name: str) -> OpSpec:
    load_ops()
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; registered ops: {sorted(OPS)}")
    return OPS[name]


def all_ops() -> dict[str, OpSpec]:
    load_ops()
    return dict(OPS)


def implementations(op: str) -> dict[str, Callable[..., Any]]:
    """Every registered implementation of `op` (the reference itself is not listed)."""
    get_op(op)
    return dict(IMPLS.get(op, {}))


def bench_hooks(op: str) -> dict[str, ImplBench]:
    """The benchmark hooks of every timed implementation of `op` (default hooks for one registered without them)."""
    get_op(op)
    hooks = BENCH.get(op, {})
    return {name: hooks.get(name) or ImplBench() for name in [*hooks, *IMPLS.get(op, {})]
            if hooks.get(name, True) is not None}


def baselines(op: str) -> dict[str, ImplBench]:
    """Every baseline registered for `op` (`register_baseline`)."""
    get_op(op)
    return dict(BASELINES.get(op, {}))


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


class Registry:
    """Named plug-ins of one kind (KV methods, dLLM caches, scheduling policies, suites), auto-loaded.

    `@REGISTRY.register("name")` on a class (or function) registers it and sets its `name` attribute: the name is
    written once. What belongs to the thing lives on it: `order` (a number: listing order, default after the
    others in registration order) and any presets. Reading the registry (get, names, `in`, iteration) first
    imports every module of `packages` and the plugins, so a new file is found with no other edit.
    """

    def __init__(self, kind: str, packages: tuple[str, ...] = ()):
        self.kind = kind
        self.packages = tuple(packages)
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind}: register takes the name, as in @register('my_name')")

        def deco(obj: Any) -> Any:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if isinstance(obj, type) or callable(obj):
                try:
                    obj.name = name
                except (AttributeError, TypeError):
                    pass
            self._items[name] = obj
            return obj

        return deco

    def load(self) -> None:
        for package in self.packages:
            import_package(package)
        load_plugins()

    @property
    def items(self) -> dict[str, Any]:
        """Every registered thing by name, in `names()` order."""
        self.load()
        return {n: self._items[n] for n in self._ordered()}

    def _ordered(self) -> list[str]:
        index = {n: i for i, n in enumerate(self._items)}
        return sorted(self._items, key=lambda n: (getattr(self._items[n], "order", math.inf), index[n]))

    def get(self, name: str) -> Any:
        self.load()
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {self._ordered()}")
        return self._items[name]

    def names(self) -> list[str]:
        self.load()
        return self._ordered()

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> Any:
        return self.get(name)
