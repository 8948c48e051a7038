"""Masked-diffusion LMs (LLaDA/Dream style): the model, the generation loops, and caching strategies by name.

One file per strategy; a new one is one file plus one line in CACHES.
"""
from __future__ import annotations

from reference.dllm.cache import DecodeCache
from reference.dllm.dllm_cache import DLLMCache
from reference.dllm.fast_dllm import FastDLLM
from reference.dllm.sparse_dllm import SparseDLLM
from reference.dllm.vanilla import Vanilla

CACHES: dict[str, type[DecodeCache]] = {c.name: c for c in (Vanilla, SparseDLLM, FastDLLM, DLLMCache)}


def make_cache(name: str, **params) -> DecodeCache:
    """A strategy by name with its own parameters, e.g. make_cache("sparse_dllm", keep_ratio=0.5)."""
    if name not in CACHES:
        raise KeyError(f"unknown dLLM cache {name!r}; known: {sorted(CACHES)}")
    try:
        return CACHES[name](**params)
    except TypeError as exc:
        raise TypeError(f"dLLM cache {name!r}: bad parameters {params}: {exc}") from exc
