"""Masked-diffusion LMs (LLaDA/Dream style): the model, the generation loops, and caching strategies by name.

One file per strategy, registered with `@CACHES.register(name)` (reference/dllm/cache.py); every module of this
package is imported the first time CACHES is read, so a new strategy is one new file. Its presets (the labels
suites compare) and its listing order are class attributes.
"""
from __future__ import annotations

from reference.dllm.cache import CACHES, DecodeCache


def make_cache(name: str, **params) -> DecodeCache:
    """A strategy by name with its own parameters, e.g. make_cache("sparse_dllm", keep_ratio=0.5)."""
    cls = CACHES.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise TypeError(f"dLLM cache {name!r}: bad parameters {params}: {exc}") from exc
