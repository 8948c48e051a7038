"""The dLLM decoding methods the suites compare, by label: a caching strategy of reference/dllm and its parameters.

A label is what the boards show; `variants(labels, keep_ratios, impl)` expands sparse_dllm over keep ratios and
gives each cell the parameters that identify it in the store.
"""
from __future__ import annotations

from reference.dllm import make_cache

METHODS = {
    "vanilla": ("vanilla", {}),
    "sparse_dllm": ("sparse_dllm", {"kernel_size": 3}),
    "fast_dllm_prefix": ("fast_dllm", {"mode": "prefix"}),
    "fast_dllm_dual": ("fast_dllm", {"mode": "dual"}),
    "dllm_cache": ("dllm_cache", {"prompt_interval": 100, "response_interval": 7, "refresh_ratio": 0.25}),
}


def variants(labels, keep_ratios=(0.5,), impls=("torch",)) -> list[tuple[str, str, dict]]:
    """(label, impl, cache params) cells: sparse_dllm once per keep ratio and impl, the others once (impl torch)."""
    out = []
    for label in labels:
        if label not in METHODS:
            raise ValueError(f"unknown dLLM method {label!r}; known: {sorted(METHODS)}")
        _, params = METHODS[label]
        if label == "sparse_dllm":
            out += [(label, impl, {**params, "keep_ratio": r}) for impl in impls for r in keep_ratios]
        else:
            out.append((label, "torch", dict(params)))
    return out


def build(label: str, impl: str, params: dict):
    name, _ = METHODS[label]
    return make_cache(name, **params, **({"impl": impl} if name == "sparse_dllm" else {}))
