"""The streaming update of FourierAttention coefficients: tokens entering the middle span add their projection.

FourierAttention (Liu et al., arXiv 2506.11886; docs/fourier-attention.md): while decoding, each token that
leaves the local window is projected at its own phase t and added to the coefficients. For tokens x [B, n, C] entering at
span phases start .. start + n - 1 (start = the middle's length before them; reference/kv/fourier.py,
`FourierSpan.push`):

    c_cos'[b, c, k] = c_cos[b, c, k] + sum_j x[b, j, c] cos(2 pi k (start + j) / T)
    c_sin'[b, c, k] = c_sin[b, c, k] + sum_j x[b, j, c] sin(2 pi k (start + j) / T)

so streaming equals `fourier_compress` of the extended span. Returns new tensors; the inputs stay untouched.
"""
from __future__ import annotations

import math

import torch

from reference.ops.checks import check_finite, check_int, check_like, check_tensor
from reference.ops.fourier import check_coefficients, dft_basis, magnitudes, period_basis
from reference.registry import OpSpec, register_op


def check_update_inputs(c_cos, c_sin, x, start, period) -> None:
    """Raise TypeError/ValueError naming the argument when the update's inputs do not fit together.

    x may have its own floating dtype (fp16/bf16 tokens with float32 coefficients); c_sin shares c_cos's.
    """
    check_coefficients(c_cos, c_sin)
    check_tensor("x", x, 3, floating=True, layout="[B, n, C]")
    check_like("x", x, "c_cos", c_cos, dtype=False)
    if c_cos.shape[2] < 1:
        raise ValueError(f"c_cos must hold at least one frequency, got shape {tuple(c_cos.shape)}")
    if x.shape[0] != c_cos.shape[0] or x.shape[2] != c_cos.shape[1]:
        raise ValueError(f"x must be [B={c_cos.shape[0]}, n, C={c_cos.shape[1]}] for c_cos {tuple(c_cos.shape)}, "
                         f"got {tuple(x.shape)}")
    check_int("start", start, 0)
    check_int("period", period, 1)
    if start + x.shape[1] > period:
        raise ValueError(f"start={start} + {x.shape[1]} tokens exceeds period={period}: the middle span is full "
                         f"(x holds the tokens)")
    check_finite(("c_cos", c_cos), ("c_sin", c_sin), ("x", x))


def fourier_stream_update(c_cos: torch.Tensor, c_sin: torch.Tensor, x: torch.Tensor, start: int, period: int):
    """(c_cos, c_sin) [B, C, N] plus the projection of x [B, n, C] at phases start.. -> new (c_cos, c_sin) [B, C, N].

    Computed in c_cos's dtype (x is cast to it; the KV method keeps float32 coefficients for fp16/bf16 tokens).
    """
    check_update_inputs(c_cos, c_sin, x, start, period)
    phases = torch.arange(start, start + x.shape[1], device=x.device)
    return add_projection(c_cos, c_sin, x, *dft_basis(phases, c_cos.shape[2], period, c_cos.dtype))


def stream_update_unchecked(c_cos, c_sin, x, start: int, period: int):
    """`fourier_stream_update` without its checks, for a caller that owns a valid span (the KV method, every layer
    at every decode step). The basis rows start.. come from the memoized table of the period (`period_basis`, which
    the span's compression already filled): the same numbers as `dft_basis` at those phases, without recomputing
    them per step."""
    cos, sin = period_basis(c_cos.shape[2], period, c_cos.dtype, str(x.device))
    return add_projection(c_cos, c_sin, x, cos[start : start + x.shape[1]], sin[start : start + x.shape[1]])


def add_projection(c_cos, c_sin, x, cos, sin):
    """(c_cos, c_sin) plus x [B, n, C] projected on the basis rows cos/sin [n, N], in c_cos's dtype."""
    xt = x.to(c_cos.dtype).transpose(1, 2)  # [B, C, n]: c_cos[b, c, n'] += sum_j x[b, j, c] cos[j, n']
    b = x.shape[0]
    return (torch.baddbmm(c_cos, xt, cos.expand(b, *cos.shape)), torch.baddbmm(c_sin, xt, sin.expand(b, *sin.shape)))


def _update_cases(profile: str):
    """Coefficients of a span of `start` tokens, then 1..n tokens (1 per decode step, more for a chunk)."""
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        start = draw(st.integers(0, 32_000 if big else 200))
        tokens = draw(st.integers(1, 64 if big else 40))
        period = start + tokens + draw(st.integers(0, 1024 if big else 40))
        return {
            "batch": draw(st.integers(1, 2)),
            "channels": draw(st.integers(1, 1024 if big else 24)),
            "tokens": tokens,
            "start": start,
            "period": period,
            "num_freqs": draw(st.integers(1, 512 if big else 40)),
            "magnitude": draw(magnitudes(st, big)),
            "seed": draw(st.integers(0, 2**31 - 1)),
        }

    return case()


def _update_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["batch"], case["channels"], case["num_freqs"])
    mag = case.get("magnitude", 1.0)  # the magnitude family: reference/ops/fourier.py
    s = math.sqrt(max(case["start"], 1)) * mag  # coefficients of a unit-variance span of `start` tokens: ~sqrt(start)
    return {"c_cos": (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype),
            "c_sin": (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype),
            "x": (torch.randn(case["batch"], case["tokens"], case["channels"], generator=g) * mag).to(device=device,
                                                                                                   dtype=dtype),
            "start": case["start"], "period": case["period"]}


# Checked before any drawn case (OpSpec.examples): the first token of an empty span into a period of one; a
# decode step whose token sits at the period's last phase; a chunk crossing a 32-token tile with N past T/2 + 1;
# batch 0; channels 0; no tokens (an empty update); channels and frequencies one past a 64-wide tile (a grid
# sized wrongly leaves channels unwritten) and tokens over three 64-token tiles (the compensated sum across tiles);
# at magnitude 1000 (reference/ops/fourier.py, the magnitude family): a decode step, the three tiles, and a whole even
# period from phase 0 with the Nyquist term kept (N = T/2 + 1), whose phases expose a basis a few ulps off.
EXAMPLES = (
    {"batch": 1, "channels": 2, "tokens": 1, "start": 0, "period": 1, "num_freqs": 1, "magnitude": 1.0, "seed": 1},
    {"batch": 2, "channels": 7, "tokens": 1, "start": 63, "period": 64, "num_freqs": 33, "magnitude": 1000.0,
     "seed": 2},
    {"batch": 1, "channels": 24, "tokens": 33, "start": 31, "period": 70, "num_freqs": 40, "magnitude": 1.0, "seed": 3},
    {"batch": 0, "channels": 3, "tokens": 2, "start": 5, "period": 9, "num_freqs": 4, "magnitude": 1.0, "seed": 4},
    {"batch": 2, "channels": 0, "tokens": 2, "start": 5, "period": 9, "num_freqs": 4, "magnitude": 1.0, "seed": 5},
    {"batch": 2, "channels": 3, "tokens": 0, "start": 5, "period": 9, "num_freqs": 4, "magnitude": 1.0, "seed": 6},
    {"batch": 1, "channels": 65, "tokens": 130, "start": 3, "period": 140, "num_freqs": 65, "magnitude": 1000.0,
     "seed": 7},
    {"batch": 2, "channels": 9, "tokens": 16, "start": 0, "period": 16, "num_freqs": 9, "magnitude": 1000.0, "seed": 8},
)

register_op(OpSpec("fourier_stream_update", fourier_stream_update, _update_cases, _update_inputs,
                   float_inputs=("c_cos", "c_sin", "x"), examples=EXAMPLES, doc=fourier_stream_update.__doc__))
