"""A per-process memo for what a sweep's worker loads once and reuses across cells: models, calibrated methods.

Ray keeps a worker process alive across the tasks it runs, so a worker that measured one shard of a model
measures the next without loading it again; the local executor runs every shard in one process anyway.
"""
from __future__ import annotations

from typing import Any, Callable

_CACHE: dict[tuple, Any] = {}
MAX_ENTRIES = 8  # models are large: keep few; the oldest goes first


def cached(key: tuple, build: Callable[[], Any]) -> Any:
    """`build()` once per key in this process."""
    if key not in _CACHE:
        while len(_CACHE) >= MAX_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = build()
    return _CACHE[key]


def clear() -> None:
    _CACHE.clear()
