"""Checks the run configs' `validate()` methods share: each raises ValueError (FileNotFoundError for a path)
naming the config field and its CLI option, so `python -m harness run` fails before it loads a model or runs a
cell, and a Python caller of the library gets the same message.
"""
from __future__ import annotations

import math

from harness.argtypes import device_problem, dir_problem


def _name(field: str, option: str | None) -> str:
    return f"{field} ({option})" if option else field


def check_int(value, field: str, option: str | None, minimum: int = 0, maximum: int | None = None) -> None:
    """An int (not a bool) in [minimum, maximum]; `option` is the CLI option that sets it (None: none does)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{_name(field, option)} must be an integer {bound}, got {value!r}")


def check_finite(values, field: str, option: str | None) -> None:
    """Every value a finite number (no NaN, no inf, no bool)."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{_name(field, option)} must be finite numbers, got {list(values)}")


def check_results_dir(path, option: str = "--results") -> None:
    """A results store directory: a non-empty path that is not an existing file (it is created when missing)."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"results ({option}) must be a directory path, got {path!r}")
    problem = dir_problem(path)
    if problem:
        raise ValueError(f"results ({option}): {problem}")


def check_device(device, option: str = "--device") -> None:
    """A device torch can run on here (cpu, cuda, cuda:N below the device count)."""
    problem = device_problem(device) if isinstance(device, str) else f"{device!r} is not a device name"
    if problem:
        raise ValueError(f"device ({option}): {problem}")


def check_attention_impl(impl, option: str = "--impl") -> None:
    """An implementation name the KV methods can look up: reference, a name some op registers (torch, triton: which
    op a method calls depends on the method), or pkg.module:function (imported here, so a typo fails before the
    model loads)."""
    from reference.registry import all_ops, implementations, load_callable

    if not isinstance(impl, str) or not impl.strip():
        raise ValueError(f"impl ({option}) must be a non-empty name, got {impl!r}")
    if impl == "reference":
        return
    if ":" in impl:
        try:
            load_callable(impl)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"impl ({option}): {exc}") from None
        return
    known = sorted({name for op in all_ops() for name in implementations(op)} | {"reference"})
    if impl not in known:
        raise ValueError(f"impl ({option}): unknown implementation {impl!r}; registered: {known} or "
                         f"package.module:function")
