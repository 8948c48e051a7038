"""The Triton interpreter's int32 overflow checks: computed and dropped by default, so the CPU tier skips them.

Triton's `sanitize_overflow` option (on by default) makes every int32 `+`, `-` and `*` inside a kernel also run in
int64 and compare the result with the int32 range; the comparison becomes an assertion only with `debug=True`,
which the interpreter's options never set. So under TRITON_INTERPRET=1 the checks cost time and cannot fire: 37-41%
of the interpreter's time in the Fourier decode kernels' conformance (2026-12-07, triton 3.9: 11.5 -> 7.2 s and
16.6 -> 9.8 s per float32 run of the low-rank and token-major kernels). `suites/conftest.py` turns them off, or,
with LONGCTX_OVERFLOW_CHECKS=1, on for real (debug on as well, so an overflow raises);
`suites/conformance/test_interpreter_overflow.py` shows all three settings.
"""
from __future__ import annotations

import dataclasses
import os

ENV = "LONGCTX_OVERFLOW_CHECKS"


def set_overflow_checks(on: bool) -> bool | None:
    """Overflow checks that raise (`on`: sanitize_overflow and debug) or none at all (sanitize_overflow and debug
    off) for this process's interpreter. Returns whether the checks raised before, or None where this Triton's
    interpreter has no such options (then nothing changes)."""
    if not isinstance(on, bool):
        raise TypeError(f"on must be a bool, got {type(on).__name__}")
    try:
        from triton.runtime import interpreter
    except ImportError:
        return None
    builder = getattr(interpreter, "interpreter_builder", None)
    options = getattr(builder, "options", None)
    if not dataclasses.is_dataclass(options) or not all(hasattr(options, f) for f in ("sanitize_overflow", "debug")):
        return None
    previous = bool(options.sanitize_overflow and options.debug)
    builder.options = dataclasses.replace(options, sanitize_overflow=on, debug=on)
    return previous


def overflow_checks_wanted() -> bool:
    """LONGCTX_OVERFLOW_CHECKS=1 asks for checks that raise (slower, e.g. before a submission); unset or 0 for none."""
    value = os.environ.get(ENV, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV} must be 0 or 1, got {value!r}")
    return value == "1"
