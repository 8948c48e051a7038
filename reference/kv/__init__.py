"""KV-cache compression methods, one file each, registered with `@METHODS.register(name)`.

Every module of this package is imported the first time METHODS is read (reference/registry.py), so a new method
is one new file; so are methods outside the repository, through the plugin hook (LONGCTX_PLUGINS).
"""
from __future__ import annotations

import dataclasses
import difflib

from reference.kv.base import METHODS, KVMethod, PrefillLayer, TokenCache  # noqa: F401


def make_method(name: str, compression_ratio: float = 0.0, **params) -> KVMethod:
    """Build a registered method by name, e.g. make_method("snapkv", 0.5, window=32)."""
    cls = METHODS.get(name)
    known = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "compression_ratio"]
    unknown = [k for k in params if k not in known]
    if unknown:
        close = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        hints = "; ".join(f"{k!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for k, c in close.items())
        raise TypeError(f"method {name!r} has no parameter {hints}; its parameters: {known}")
    try:
        return cls(compression_ratio=compression_ratio, **params)
    except TypeError as exc:
        raise TypeError(f"method {name!r}: {exc}") from exc


def variant_params(name: str) -> dict:
    """{option: default} of a method's variant options (`KVMethod.VARIANT_PARAMS`); {} for an unknown name."""
    cls = METHODS.items.get(name)
    return dict(getattr(cls, "VARIANT_PARAMS", {})) if cls is not None else {}
