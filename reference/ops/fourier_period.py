"""The DFT period T of a FourierAttention middle span (docs/fourier-attention.md, "The period").

The paper takes T = the middle's capacity (max_tokens - numinittokens - maxlocallen), "span". Two alternatives
keep N frequencies and the bytes and only move the basis (frequencies 2 pi n / T), trading accuracy for transform
speed: "smooth", the smallest 7-smooth length >= the capacity (only factors 2, 3, 5, 7: a length FFT libraries
run at full speed, at most a few percent longer, under 0.1% at 32k tokens), and "pow2", the next power of two
(up to twice as long, which measurably costs NIAH accuracy).
"""
from __future__ import annotations

from reference.ops.checks import check_choice

PERIOD_MODES = ("span", "smooth", "pow2")


def next_smooth(n: int) -> int:
    """The smallest integer >= n whose prime factors are all in {2, 3, 5, 7}."""
    best = 1 << max(0, (n - 1).bit_length())  # a power of two is 7-smooth: an upper bound
    p7 = 1
    while p7 < best:
        p5 = p7
        while p5 < best:
            p3 = p5
            while p3 < best:
                m = p3
                while m < n:
                    m *= 2
                best = min(best, m)
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best


def choose_period(capacity: int, mode: str) -> int:
    """The period of a middle span that can hold `capacity` tokens under `mode` (one of PERIOD_MODES)."""
    check_choice("period", mode, PERIOD_MODES)
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
    if mode == "span":
        return capacity
    return next_smooth(capacity) if mode == "smooth" else 1 << (capacity - 1).bit_length()
