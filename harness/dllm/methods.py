"""The dLLM decoding methods the suites compare, by label: a caching strategy of reference/dllm and its parameters.

The labels and their parameters are the strategies' own `presets` (a class attribute beside the strategy, in
registry order); a label is what the boards show. `variants(labels, keep_ratios, impl)` expands the strategies that
sweep a keep ratio (sparse_dllm) over keep ratios and impls and gives each cell the parameters that identify it.
"""
from __future__ import annotations

from reference.dllm import CACHES, make_cache


def methods() -> dict[str, tuple[str, dict]]:
    """{label: (registered cache name, parameters)} for every preset of every registered strategy, in order."""
    out: dict[str, tuple[str, dict]] = {}
    for name, cls in CACHES.items.items():
        for label, params in (cls.presets or {name: {}}).items():
            out[label] = (name, dict(params))
    return out


def labels() -> tuple[str, ...]:
    """Every method label, in the strategies' order (boards, benchmarks and `--methods` defaults follow it)."""
    return tuple(methods())


def variants(labels, keep_ratios=(0.5,), impls=("torch",)) -> list[tuple[str, str, dict]]:
    """(label, impl, cache params) cells: keep-ratio strategies once per keep ratio and impl, the others once
    (impl torch)."""
    known = methods()
    out = []
    for label in labels:
        if label not in known:
            raise ValueError(f"unknown dLLM method {label!r}; known: {sorted(known)}")
        name, params = known[label]
        if CACHES.get(name).sweeps_keep_ratio:
            out += [(label, impl, {**params, "keep_ratio": r}) for impl in impls for r in keep_ratios]
        else:
            out.append((label, "torch", dict(params)))
    return out


def build(label: str, impl: str, params: dict):
    name, _ = methods()[label]
    return make_cache(name, **params, **({"impl": impl} if CACHES.get(name).sweeps_keep_ratio else {}))
