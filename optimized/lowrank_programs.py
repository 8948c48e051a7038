"""Which (sequence, KV head) a low-rank decode program takes, and when it may start (programmatic dependent launch):
the opening lines the low-rank kernels share."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def head_of(bh, LENS, Hkv, period, n_rows, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr):
    """(sequence, KV head) pair bh: (b, h, the sequence's period, its query rows, which of them are real)."""
    b = bh // Hkv
    if VARLEN:
        period = tl.load(LENS + 3 * b + 2)
    rows = tl.arange(0, BLOCK_M)
    return b, bh % Hkv, period, rows, rows < n_rows


@triton.jit
def head_program(LENS, Hkv, period, n_rows, VARLEN: tl.constexpr, BLOCK_M: tl.constexpr):
    """A program of one (sequence, KV head) along axis 0 (`head_of`)."""
    return head_of(tl.program_id(0), LENS, Hkv, period, n_rows, VARLEN, BLOCK_M)


@triton.jit
def after_predecessor(PDL: tl.constexpr, PDL_EARLY: tl.constexpr = True):
    """With PDL (the launch's programmatic dependent launch): wait until the kernel before this one has finished
    and its stores are visible, then, with PDL_EARLY, let the kernel after this one launch (its programs may then
    take SMs this launch's later programs would have had); without PDL_EARLY the trigger is each program's exit, so
    the next launch overlaps only this one's last programs. Without PDL, nothing: stream order."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        if PDL_EARLY:
            tl.extra.cuda.gdc_launch_dependents()
