"""FourierAttention ops: compress a span onto Fourier coefficients, reconstruct it, attend over the compressed cache.

FourierAttention (Liu et al., arXiv 2506.11886; facts in specs/fourier-attention.md, "Basis"): the middle span
of a long-context-insensitive channel is projected onto a truncated real DFT with period T:

    c_cos[n] = sum_t x_t cos(2 pi n t / T),   c_sin[n] = sum_t x_t sin(2 pi n t / T),   n < N,      (compress)
    x_hat_t  = sum_{n<N} w_n (c_cos[n] cos(2 pi n t / T) + c_sin[n] sin(2 pi n t / T)),             (reconstruct)

t counted from the start of the span. Scaling: the official code divides by N; we use the orthogonal weights of
the real DFT, w_0 = 1/T, w_{T/2} = 1/T (T even), w_n = 2/T otherwise, so that reconstruction is exact once the
basis is complete (N >= T//2 + 1, span length <= T) and, for a span of length T, the error can only fall as N
grows (Parseval). Moment matching (spec, "Moment matching") rescales the result anyway, so the two scalings give
the same attention whenever it is on.

Layout of a compressed cache (the decode op below, which the Triton kernel reproduces): channels of K (and V) are
flattened over heads, c = h * D + d. `*_kept_idx` lists the channels kept exactly, `*_comp_idx` the compressed
ones (their counts may differ per head and between K and V). Exact tokens (`n_init` initial, then the local
window) hold every channel.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from reference.ops.attention import attention
from reference.registry import OpSpec, register_op


def _check_span_args(num_freqs: int, period: int, length: int | None = None) -> None:
    if not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be a positive integer, got {period!r}")
    if not isinstance(num_freqs, int) or num_freqs < 1:
        raise ValueError(f"num_freqs must be a positive integer, got {num_freqs!r}")
    if length is not None and (not isinstance(length, int) or length < 0):
        raise ValueError(f"length must be a non-negative integer, got {length!r}")


def dft_basis(positions: torch.Tensor, num_freqs: int, period: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin(2 pi n t / T) for positions t (long [L]) and n < num_freqs: each [L, N] in `dtype`.

    The phase is reduced mod T in integer arithmetic first, so float16 bases are as exact as float16 allows.
    """
    n = torch.arange(num_freqs, device=positions.device)
    phase = (positions.long()[:, None] * n[None, :]) % period
    angle = phase.double() * (2 * math.pi / period)
    return torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)


@lru_cache(maxsize=32)
def _span_basis(length: int, num_freqs: int, period: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return dft_basis(torch.arange(length, device=device), num_freqs, period, dtype)


def span_basis(length: int, num_freqs: int, period: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """dft_basis at span positions 0..length-1, memoized (the same table serves every layer and step)."""
    cos, sin = _span_basis(period, num_freqs, period, dtype, str(device))
    if length <= period:
        return cos[:length], sin[:length]
    return dft_basis(torch.arange(length, device=device), num_freqs, period, dtype)


def dft_weights(num_freqs: int, period: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Orthogonal reconstruction weights w_n [N] (see module docstring); frequencies past T/2 weigh 0."""
    n = torch.arange(num_freqs, device=device)
    w = torch.full((num_freqs,), 2.0 / period, dtype=torch.float64, device=device)
    w[n == 0] = 1.0 / period
    if period % 2 == 0:
        w[n == period // 2] = 1.0 / period
    w[n > period // 2] = 0.0  # aliases of lower frequencies: counted once
    return w.to(dtype)


def fourier_compress(x: torch.Tensor, num_freqs: int, period: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [B, L, C] (span, channels last) -> (c_cos, c_sin), each [B, C, num_freqs], in x's dtype."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor [B, L, C], got {getattr(x, 'shape', type(x))}")
    _check_span_args(num_freqs, period)
    if x.shape[1] > period:
        raise ValueError(f"span length {x.shape[1]} exceeds period {period}")
    cos, sin = span_basis(x.shape[1], num_freqs, period, x.dtype, x.device)
    return torch.einsum("blc,ln->bcn", x, cos), torch.einsum("blc,ln->bcn", x, sin)


def fourier_reconstruct(c_cos: torch.Tensor, c_sin: torch.Tensor, length: int, period: int) -> torch.Tensor:
    """(c_cos, c_sin) [B, C, N] -> x_hat [B, length, C] at span positions 0..length-1."""
    if c_cos.shape != c_sin.shape or c_cos.dim() != 3:
        raise ValueError(f"c_cos {tuple(c_cos.shape)} and c_sin {tuple(c_sin.shape)} must both be [B, C, N]")
    _check_span_args(c_cos.shape[2], period, length)
    cos, sin = span_basis(length, c_cos.shape[2], period, c_cos.dtype, c_cos.device)
    w = dft_weights(c_cos.shape[2], period, c_cos.dtype, c_cos.device)
    return torch.einsum("bcn,ln->blc", c_cos * w, cos) + torch.einsum("bcn,ln->blc", c_sin * w, sin)


def moment_match(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) [B, C] so that scale * x_hat + shift has x's mean and spread (max |dev|).

    Spec, "Moment matching": x_hat' = (x_hat - mean(x_hat)) * spread(x) / spread(x_hat) + mean(x). A constant
    reconstruction (spread 0 up to rounding) becomes the constant mean(x).
    """
    mean, mean_hat = x.mean(dim=1), x_hat.mean(dim=1)
    spread = (x - mean[:, None]).abs().amax(dim=1)
    spread_hat = (x_hat - mean_hat[:, None]).abs().amax(dim=1)
    # A reconstruction flat up to rounding (e.g. one frequency: the mean) counts as constant; dividing by its
    # rounding noise would amplify it without bound.
    flat = spread_hat <= torch.finfo(x.dtype).eps ** 0.5 * (mean_hat.abs() + spread)
    scale = torch.where(flat, torch.zeros_like(spread), spread / spread_hat.clamp_min(torch.finfo(x.dtype).tiny))
    return scale, mean - scale * mean_hat


def assemble(exact, n_init, mid_kept, kept_idx, comp_idx, c_cos, c_sin, mm_scale, mm_shift, mid_len, period):
    """Rebuild K or V in position order: [B, Hkv, n_init + mid_len + n_local, D].

    exact: [B, Hkv, n_init + n_local, D]; mid_kept: [B, mid_len, len(kept_idx)];
    c_cos/c_sin: [B, len(comp_idx), N]; mm_scale/mm_shift: [B, len(comp_idx)].
    """
    b, h, _, d = exact.shape
    mid = torch.empty(b, mid_len, h * d, dtype=exact.dtype, device=exact.device)
    mid[:, :, kept_idx] = mid_kept
    if comp_idx.numel():
        rec = fourier_reconstruct(c_cos, c_sin, mid_len, period)
        mid[:, :, comp_idx] = rec * mm_scale[:, None] + mm_shift[:, None]
    mid = mid.reshape(b, mid_len, h, d).transpose(1, 2)
    return torch.cat([exact[:, :, :n_init], mid, exact[:, :, n_init:]], dim=2)


def fourier_decode_attention(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None,
):
    """Attention of the last Lq tokens over a FourierAttention cache: out [B, Hq, Lq, D] in q's dtype.

    q: [B, Hq, Lq, D] (GQA), the newest Lq tokens, which sit at the end of the local window (bottom-right causal
    among them; everything older is visible). k_exact/v_exact: [B, Hkv, n_init + n_local, D]. Middle span of
    `mid_len` tokens: kept channels exact in *_mid_kept [B, mid_len, Ck], compressed channels as coefficients
    *_cos/*_sin [B, Cc, N] with moment matching *_scale/*_shift [B, Cc]; *_kept_idx/*_comp_idx are long index
    lists over Hkv*D channels. All sequences of the batch share lengths. Reference: reconstruct, then dense attention.
    """
    if q.dim() != 4 or k_exact.dim() != 4 or k_exact.shape != v_exact.shape:
        raise ValueError(f"q must be [B, Hq, Lq, D] and k_exact == v_exact shapes [B, Hkv, Le, D]; got {tuple(q.shape)}, {tuple(k_exact.shape)}, {tuple(v_exact.shape)}")
    if not 0 <= n_init <= k_exact.shape[2]:
        raise ValueError(f"n_init={n_init} must lie in [0, {k_exact.shape[2]}]")
    channels = k_exact.shape[1] * k_exact.shape[3]
    for name, kept, comp in (("k", k_kept_idx, k_comp_idx), ("v", v_kept_idx, v_comp_idx)):
        both = torch.cat([kept, comp])
        if both.numel() != channels or not torch.equal(both.sort().values, torch.arange(channels, device=both.device)):
            raise ValueError(f"{name}_kept_idx and {name}_comp_idx must partition the {channels} channels")
    k = assemble(k_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift, mid_len, period)
    v = assemble(v_exact, n_init, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len, period)
    return attention(q, k, v, causal=True, scale=scale)


# ---------------------------------------------------------------- op specs: hypothesis cases and inputs
def _span_cases(profile: str):
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        length = draw(st.integers(1, 2048 if big else 150))
        period = length + draw(st.integers(0, 512 if big else 40))
        return {
            "batch": draw(st.integers(1, 2)),
            "channels": draw(st.integers(1, 1024 if big else 24)),
            "length": length,
            "period": period,
            "num_freqs": draw(st.integers(1, period // 2 + 3)),
            "seed": draw(st.integers(0, 2**31 - 1)),
        }

    return case()


def _compress_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(case["batch"], case["length"], case["channels"], generator=g)
    return {"x": x.to(device=device, dtype=dtype), "num_freqs": case["num_freqs"], "period": case["period"]}


def _reconstruct_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["batch"], case["channels"], case["num_freqs"])
    # Coefficients of a unit-variance span have magnitude ~sqrt(length): draw them at that scale.
    s = math.sqrt(case["length"])
    return {"c_cos": (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype),
            "c_sin": (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype),
            "length": case["length"], "period": case["period"]}


def _decode_cases(profile: str):
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        q_len = draw(st.integers(1, 16))
        mid_len = draw(st.integers(1, 4096 if big else 130))
        return {
            "batch": draw(st.integers(1, 2)),
            "kv_heads": draw(st.sampled_from([8]) if big else st.integers(1, 2)),
            "group": draw(st.sampled_from([4]) if big else st.integers(1, 3)),
            "head_dim": draw(st.sampled_from([128]) if big else st.sampled_from([8, 16, 32])),
            "q_len": q_len,
            "n_init": draw(st.integers(0, 4)),
            "n_local": q_len + draw(st.integers(0, 1020 if big else 40)),
            "mid_len": mid_len,
            "period": mid_len + draw(st.integers(0, 64)),
            "num_freqs": draw(st.integers(1, 512 if big else 40)),
            "k_fraction": draw(st.floats(0.0, 1.0)),
            "v_fraction": draw(st.floats(0.0, 1.0)),
            "seed": draw(st.integers(0, 2**31 - 1)),
        }

    return case()


def _decode_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    b, h, d = case["batch"], case["kv_heads"], case["head_dim"]
    channels, n_freq, m = h * d, case["num_freqs"], case["mid_len"]

    def rand(*shape, s=1.0):
        return (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype)

    out = {
        "q": rand(b, h * case["group"], case["q_len"], d),
        "k_exact": rand(b, h, case["n_init"] + case["n_local"], d),
        "v_exact": rand(b, h, case["n_init"] + case["n_local"], d),
        "n_init": case["n_init"], "mid_len": m, "period": case["period"],
    }
    for name in ("k", "v"):
        perm = torch.randperm(channels, generator=g)
        n_comp = int(round(case[f"{name}_fraction"] * channels))
        comp, kept = perm[:n_comp].sort().values, perm[n_comp:].sort().values
        out.update({
            f"{name}_kept_idx": kept.to(device), f"{name}_comp_idx": comp.to(device),
            f"{name}_mid_kept": rand(b, m, kept.numel()),
            # Coefficients at the scale of a unit-variance span; scale ~ 1 so reconstruction stays O(1).
            f"{name}_cos": rand(b, n_comp, n_freq, s=math.sqrt(m) / 4), f"{name}_sin": rand(b, n_comp, n_freq, s=math.sqrt(m) / 4),
            f"{name}_scale": (torch.rand(b, n_comp, generator=g) + 0.5).to(device=device, dtype=dtype),
            f"{name}_shift": rand(b, n_comp, s=0.5),
        })
    return out


_DECODE_FLOATS = ("q", "k_exact", "v_exact", *(f"{n}_{p}" for n in "kv" for p in ("mid_kept", "cos", "sin", "scale", "shift")))

register_op(OpSpec("fourier_compress", fourier_compress, _span_cases, _compress_inputs, float_inputs=("x",), doc=fourier_compress.__doc__))
register_op(OpSpec("fourier_reconstruct", fourier_reconstruct, _span_cases, _reconstruct_inputs, float_inputs=("c_cos", "c_sin"), doc=fourier_reconstruct.__doc__))
register_op(OpSpec("fourier_decode_attention", fourier_decode_attention, _decode_cases, _decode_inputs, float_inputs=_DECODE_FLOATS, doc=fourier_decode_attention.__doc__))
