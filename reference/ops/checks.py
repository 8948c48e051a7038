"""Argument checks shared by the ops and by their kernels' launchers: each error names the argument it is about.

TypeError for a wrong kind (not a tensor, wrong dtype, a float where an int belongs), ValueError for a wrong value
(rank, shape, device, range, NaN/inf). Everything but two checks reads only metadata. Those two read tensor values,
a reduction plus a host sync on a GPU: the range checks of index and length tensors (the callers' `check_values`)
and `check_finite`. The finiteness check has one switch, on by default: `with finite_checks(False):` or the
environment variable LONGCTX_CHECK_FINITE=0 turn it off, for timed code and for models that call ops every step.
"""
from __future__ import annotations

import difflib
import math
import numbers
import os
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_FINITE: ContextVar[bool | None] = ContextVar("longctx_check_finite", default=None)


def finite_checks_enabled() -> bool:
    """Whether `check_finite` runs: the innermost `finite_checks(...)`, else LONGCTX_CHECK_FINITE (default on)."""
    forced = _FINITE.get()
    if forced is not None:
        return forced
    return os.environ.get("LONGCTX_CHECK_FINITE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def finite_checks(enabled: bool):
    """Turn the NaN/inf check of every op on or off inside the block (this thread or task only)."""
    token = _FINITE.set(bool(enabled))
    try:
        yield
    finally:
        _FINITE.reset(token)


def check_tensor(name: str, t, ndim: int | None = None, *, floating: bool = False, dtype: torch.dtype | None = None,
                 layout: str = "") -> None:
    """`t` is a tensor of rank `ndim` (layout, e.g. "[B, H, L, D]", goes into the message), floating or of `dtype`."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D{' ' + layout if layout else ''}, got shape {tuple(t.shape)}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        kind = "long (int64)" if dtype == torch.long else str(dtype).replace("torch.", "")
        raise TypeError(f"{name} must be a {kind} tensor, got {t.dtype}")


def check_like(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor, dtype: bool = True) -> None:
    """`t` is on `ref`'s device (ValueError) and, when `dtype`, has its dtype (TypeError)."""
    if t.device != ref.device:
        raise ValueError(f"{name} must be on {ref_name}'s device {ref.device}, got {t.device}")
    if dtype and t.dtype != ref.dtype:
        raise TypeError(f"{name} must have {ref_name}'s dtype {ref.dtype}, got {t.dtype}")


def check_gqa(q_name: str, hq: int, k_name: str, hkv: int) -> None:
    """GQA (Ainslie et al., 2023): query head h reads KV head h // (Hq // Hkv), so Hq is a positive multiple of Hkv."""
    if hkv == 0 or hq == 0 or hq % hkv:
        raise ValueError(f"{q_name} heads ({hq}) must be a positive multiple of {k_name} heads ({hkv}) for GQA")


def check_int(name: str, value, low: int = 0, high: int | None = None, optional: bool = False) -> None:
    """An int (not a bool) in [low, high]; None too when `optional`."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{' or None' if optional else ''}, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def check_block(name: str, value) -> None:
    """A kernel's optional block-size knob: None, or an int >= 16 that is a power of two."""
    check_int(name, value, 16, optional=True)
    if value is not None and value & (value - 1):
        raise ValueError(f"{name} must be None or a power of two >= 16, got {value!r}")


def check_scale(scale) -> None:
    """The softmax scale: None (D ** -0.5) or a positive finite number."""
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be None or a positive finite number, got {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be None or a positive finite number, got {scale!r}")


def check_out(out, shape: tuple, dtype: torch.dtype, device: torch.device) -> None:
    """An `out` argument: None, or a tensor of exactly this shape, dtype and device."""
    if out is None:
        return
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be None or a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype or out.device != device:
        raise ValueError(f"out must be a {tuple(shape)} {dtype} tensor on {device}, got {tuple(out.shape)} "
                         f"{out.dtype} on {out.device}")


def check_lengths(name: str, t, batch: int, low, high, ref_name: str, ref: torch.Tensor, check_values: bool = True,
                  why: str = "") -> None:
    """A long [batch] tensor on `ref`'s device whose values lie in [low, high] (each an int or a [batch] tensor; high
    None: no upper bound). The value check reads the tensor (a host sync); `check_values=False` skips it."""
    check_tensor(name, t, 1, dtype=torch.long, layout=f"[B]=({batch},)")
    if tuple(t.shape) != (batch,):
        raise ValueError(f"{name} must have shape [B]=({batch},), got {tuple(t.shape)}")
    check_like(name, t, ref_name, ref, dtype=False)
    if not check_values:
        return
    low_t = torch.as_tensor(low, device=t.device).expand(batch)
    bad = t < low_t
    if high is not None:
        bad = bad | (t > torch.as_tensor(high, device=t.device).expand(batch))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        hi = "" if high is None else f" and <= {int(torch.as_tensor(high).expand(batch)[i])}"
        raise ValueError(f"{name}[{i}] = {int(t[i])} must be >= {int(low_t[i])}{hi}{' (' + why + ')' if why else ''}")


def positions_below(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """bool [B, size]: True at positions j < lengths[b] (the valid part of a padded axis)."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def check_finite(*items) -> None:
    """No NaN or inf where an op reads: items are (name, tensor) or (name, tensor, valid), `valid` a bool tensor
    broadcastable to the tensor (False marks padding the op never reads, which may hold anything).

    One host sync for all items; skipped under `finite_checks(False)` or LONGCTX_CHECK_FINITE=0, and for meta
    tensors (no values).
    """
    if not finite_checks_enabled():
        return
    flags, checked = [], []
    for name, t, *valid in items:
        if t.device.type == "meta" or t.numel() == 0 or not (t.is_floating_point() or t.is_complex()):
            continue
        ok = torch.isfinite(t)
        if valid and valid[0] is not None:
            ok = ok | ~valid[0]
        flags.append(ok.all())
        checked.append((name, ok))
    if not flags or bool(torch.stack(flags).all()):
        return
    for (name, ok), flag in zip(checked, flags):
        if not bool(flag):
            idx = tuple((~ok).nonzero()[0].tolist())
            t = next(item[1] for item in items if item[0] == name)
            raise ValueError(f"{name} must be finite where it is read; it holds {float(t[idx])} at index {idx}")


def check_triton_runnable(what: str, t: torch.Tensor) -> None:
    """RuntimeError unless a Triton kernel can run on t's device: CUDA, or the CPU with TRITON_INTERPRET=1 (an
    environment problem, not a bad argument; the inputs' devices agree by the time a launcher asks)."""
    if t.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"{what}: tensors are on {t.device}; Triton kernels need a CUDA device, or "
                           "TRITON_INTERPRET=1 set before triton is imported to run them on the CPU")


TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_triton_dtype(name: str, t: torch.Tensor) -> None:
    """TypeError unless `t` is float32, float16 or bfloat16, the dtypes the Triton kernels load."""
    if t.dtype not in TRITON_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16 for the Triton kernel, got {t.dtype}")


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    """`value` must be one of `choices`; the error names the argument, the choices and the closest one."""
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value).lower(), choices, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}{hint}")
    return value
