"""FourierAttention ops: project a span onto a truncated real DFT, reconstruct it, attend over the compressed cache.

FourierAttention (Liu et al., arXiv 2506.11886, sec. 3; facts in docs/fourier-attention.md): the middle
span of a long-context-insensitive channel is projected onto N frequencies of a real DFT with period T,

    c_cos[n] = sum_t x_t cos(2 pi n t / T),   c_sin[n] = sum_t x_t sin(2 pi n t / T),     n < N     (compress)
    x_hat_t  = sum_{n<N} w_n (c_cos[n] cos(2 pi n t / T) + c_sin[n] sin(2 pi n t / T))           (reconstruct)

with t counted from the start of the span (0..L-1, L <= T).

Scaling of the reconstruction. The official code multiplies by 1/N. We use the weights of the orthogonal real DFT,
w_0 = 1/T, w_{T/2} = 1/T (T even), w_n = 2/T for 0 < n < T/2 and w_n = 0 past T/2 (those are aliases of lower
frequencies). With them the truncated reconstruction is the least-squares projection of the span onto the kept
frequencies, so (a) it is exact once the basis is complete (N >= T//2 + 1 and L <= T) and (b) for L == T its
error is the energy of the dropped frequencies (Parseval), which can only fall as N grows. With 1/N neither
holds. Moment matching (spec, "Moment matching") rescales each channel to the span's own mean and spread, which
cancels any per-channel constant factor, so with it on the two scalings give the same cache.

`fourier_decode_attention` fixes the compact cache layout that the Triton kernel reads (see its docstring).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from reference.ops.attention import attend
from reference.ops.checks import check_finite, check_gqa, check_int, check_like, check_scale, check_tensor
from reference.ops.fourier_cache import BENCH
from reference.ops.score_offset import offset_fourier_cache, score_offsets
from reference.registry import HEAD_DIMS, OpSpec, register_op


# ---------------------------------------------------------------- the basis
def dft_basis(positions: torch.Tensor, num_freqs: int, period: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi n t / T for positions t (long [L]) and n < num_freqs: each [L, num_freqs] in `dtype`.

    n * t is reduced mod T in integer arithmetic before the angle is formed, so the table is as accurate as
    `dtype` allows even for t, n in the tens of thousands.
    """
    n = torch.arange(num_freqs, device=positions.device)
    phase = (positions.long()[:, None] * n[None, :]) % period
    angle = phase.double() * (2 * math.pi / period)
    return torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)


@lru_cache(maxsize=8)
def period_basis(num_freqs: int, period: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """dft_basis at positions 0..period-1, memoized per (num_freqs, period, dtype, device); `cache_clear()` frees it."""
    return dft_basis(torch.arange(period, device=device), num_freqs, period, dtype)


def span_basis(length: int, num_freqs: int, period: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """dft_basis at span positions 0..length-1 (length <= period), memoized: every layer and step shares it."""
    cos, sin = period_basis(num_freqs, period, dtype, str(device))
    return cos[:length], sin[:length]


def dft_weights(num_freqs: int, period: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Reconstruction weights w_n [num_freqs] of the orthogonal real DFT (module docstring). Memoized per
    (N, T, dtype, device): every layer and decode step shares the tensor, so callers must not modify it."""
    return _dft_weights(num_freqs, period, dtype, str(device) if device is not None else "cpu")


@lru_cache(maxsize=64)
def _dft_weights(num_freqs: int, period: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    n = torch.arange(num_freqs, device=device)
    w = torch.full((num_freqs,), 2.0 / period, dtype=torch.float64, device=device)
    w[n == 0] = 1.0 / period
    if period % 2 == 0:
        w[n == period // 2] = 1.0 / period
    w[n > period // 2] = 0.0
    return w.to(dtype)


# ---------------------------------------------------------------- compress / reconstruct
def check_compress_inputs(x, num_freqs, period) -> None:
    """Raise TypeError/ValueError naming the argument when `fourier_compress(x, num_freqs, period)` is not valid."""
    check_tensor("x", x, 3, floating=True, layout="[B, L, C]")
    check_int("num_freqs", num_freqs, 1)
    check_int("period", period, 1)
    if x.shape[1] > period:
        raise ValueError(f"x holds {x.shape[1]} span positions, more than period={period}")
    check_finite(("x", x))


def fourier_compress(x: torch.Tensor, num_freqs: int, period: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Project a span onto the first `num_freqs` frequencies of period T = `period`.

    x: [B, L, C] (span positions t = 0..L-1, channels last; L <= period) -> (c_cos, c_sin), each [B, C, num_freqs],
    computed in x's dtype. Spec "Basis", prefill compression.
    """
    check_compress_inputs(x, num_freqs, period)
    cos, sin = span_basis(x.shape[1], num_freqs, period, x.dtype, x.device)
    return torch.einsum("blc,ln->bcn", x, cos), torch.einsum("blc,ln->bcn", x, sin)


def check_coefficients(c_cos, c_sin) -> None:
    """c_cos, c_sin: floating [B, C, N] tensors of one shape, dtype and device (a span's Fourier coefficients)."""
    check_tensor("c_cos", c_cos, 3, floating=True, layout="[B, C, N]")
    check_tensor("c_sin", c_sin, 3, floating=True, layout="[B, C, N]")
    check_like("c_sin", c_sin, "c_cos", c_cos)
    if c_sin.shape != c_cos.shape:
        raise ValueError(f"c_sin {tuple(c_sin.shape)} must have c_cos's shape {tuple(c_cos.shape)}")


def check_reconstruct_inputs(c_cos, c_sin, length, period) -> None:
    """Raise TypeError/ValueError naming the argument when `fourier_reconstruct(...)` is not a valid call."""
    check_coefficients(c_cos, c_sin)
    check_int("length", length, 0)
    check_int("period", period, 1)
    if length > period:
        raise ValueError(f"length={length} must not exceed period={period}")
    check_finite(("c_cos", c_cos), ("c_sin", c_sin))


def fourier_reconstruct(c_cos: torch.Tensor, c_sin: torch.Tensor, length: int, period: int) -> torch.Tensor:
    """Rebuild span positions 0..length-1 from coefficients: (c_cos, c_sin) [B, C, N] -> x_hat [B, length, C].

    Orthogonal DFT weights (module docstring), computed in c_cos's dtype; length <= period.
    """
    check_reconstruct_inputs(c_cos, c_sin, length, period)
    return _reconstruct(c_cos, c_sin, length, period)


def _reconstruct(c_cos: torch.Tensor, c_sin: torch.Tensor, length: int, period: int) -> torch.Tensor:
    num_freqs = c_cos.shape[2]
    if num_freqs == 0:
        return c_cos.new_zeros(c_cos.shape[0], length, c_cos.shape[1])
    cos, sin = span_basis(length, num_freqs, period, c_cos.dtype, c_cos.device)
    w = dft_weights(num_freqs, period, c_cos.dtype, c_cos.device)
    return torch.einsum("bcn,ln->blc", c_cos * w, cos) + torch.einsum("bcn,ln->blc", c_sin * w, sin)


def moment_match(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift), each [B, C], such that scale * x_hat + shift has x's mean and spread.

    x, x_hat: [B, L, C]. Spec, "Moment matching": x_hat' = (x_hat - mean(x_hat)) * spread(x) / spread(x_hat)
    + mean(x), spread = max |x_t - mean(x)| over the span. A reconstruction that is flat up to rounding becomes
    the constant mean(x): dividing by its rounding noise would blow that noise up.
    """
    mean, mean_hat = x.mean(dim=1), x_hat.mean(dim=1)
    spread = (x - mean[:, None]).abs().amax(dim=1)
    spread_hat = (x_hat - mean_hat[:, None]).abs().amax(dim=1)
    flat = spread_hat <= torch.finfo(x_hat.dtype).eps ** 0.5 * (mean_hat.abs() + spread)
    scale = torch.where(flat, torch.zeros_like(spread), spread / spread_hat.clamp_min(torch.finfo(x_hat.dtype).tiny))
    return scale, mean - scale * mean_hat


# ---------------------------------------------------------------- the compressed cache and decode attention
def assemble(exact, n_init, mid_kept, kept_idx, comp_idx, c_cos, c_sin, mm_scale, mm_shift, mid_len, period):
    """K or V of a FourierAttention cache in position order (init, middle, local): [B, Hkv, n_init + mid_len + n_local, D].

    exact: [B, Hkv, n_init + n_local, D]; mid_kept: [B, mid_len, len(kept_idx)]; c_cos/c_sin: [B, len(comp_idx), N];
    mm_scale/mm_shift: [B, len(comp_idx)]. The compressed channels are reconstructed in the coefficients' dtype,
    moment-matched, then rounded to exact's dtype. Channel c of the middle is head c // D, dimension c % D.
    """
    b, h, _, d = exact.shape
    mid = torch.empty(b, mid_len, h * d, dtype=exact.dtype, device=exact.device)
    mid[:, :, kept_idx] = mid_kept.to(exact.dtype)
    if comp_idx.numel():
        rec = _reconstruct(c_cos, c_sin, mid_len, period)
        mid[:, :, comp_idx] = (rec * mm_scale[:, None] + mm_shift[:, None]).to(exact.dtype)
    mid = mid.reshape(b, mid_len, h, d).transpose(1, 2)
    return torch.cat([exact[:, :, :n_init], mid, exact[:, :, n_init:]], dim=2)


TOKEN_INPUTS = ("q", "k_exact", "v_exact", "k_mid_kept", "v_mid_kept")  # q's dtype
COEFFICIENT_INPUTS = tuple(f"{p}_{n}" for p in "kv" for n in ("cos", "sin", "scale", "shift"))  # one dtype of their own


def check_cache_layout(q, k_exact, v_exact, k_args, v_args, mid_len=None) -> None:
    """Types, ranks, devices, dtypes and shapes of a FourierAttention cache (the layout of `fourier_decode_attention`).

    k_args/v_args: (mid_kept, kept_idx, comp_idx, cos, sin, scale, shift). mid_len: the middle's length, or None for
    the padded layout of the varlen op, whose middle capacity M_max is k_mid_kept.shape[1]. The tokens (q, k_exact,
    v_exact, *_mid_kept) share q's dtype; the coefficients and moment statistics share k_cos's (float32 in a cache).
    Reads the index lists (sorted, a partition of the channels): a host sync on a GPU.
    """
    check_tensor("q", q, 4, floating=True, layout="[B, Hq, Lq, D]")
    check_tensor("k_exact", k_exact, 4, floating=True, layout="[B, Hkv, Le, D]")
    check_tensor("v_exact", v_exact, 4, floating=True, layout="[B, Hkv, Le, D]")
    named = {}
    for p, args in (("k", k_args), ("v", v_args)):
        mid_kept, kept, comp, cos, sin, s, sh = args
        check_tensor(f"{p}_mid_kept", mid_kept, 3, floating=True, layout="[B, M, Ck]")
        check_tensor(f"{p}_kept_idx", kept, 1, dtype=torch.long, layout="[Ck]")
        check_tensor(f"{p}_comp_idx", comp, 1, dtype=torch.long, layout="[Cc]")
        for name, t, dim, layout in ((f"{p}_cos", cos, 3, "[B, Cc, N]"), (f"{p}_sin", sin, 3, "[B, Cc, N]"),
                                     (f"{p}_scale", s, 2, "[B, Cc]"), (f"{p}_shift", sh, 2, "[B, Cc]")):
            check_tensor(name, t, dim, floating=True, layout=layout)
        named.update({f"{p}_mid_kept": mid_kept, f"{p}_kept_idx": kept, f"{p}_comp_idx": comp, f"{p}_cos": cos,
                      f"{p}_sin": sin, f"{p}_scale": s, f"{p}_shift": sh})
    named.update(k_exact=k_exact, v_exact=v_exact)
    for name, t in named.items():
        check_like(name, t, "q", q, dtype=False)
    for name in TOKEN_INPUTS[1:]:
        check_like(name, named[name], "q", q)
    for name in COEFFICIENT_INPUTS[1:]:
        check_like(name, named[name], "k_cos", named["k_cos"])

    b, hq, lq, d = q.shape
    if k_exact.shape != v_exact.shape:
        raise ValueError(f"k_exact {tuple(k_exact.shape)} and v_exact {tuple(v_exact.shape)} must have the same shape")
    _, hkv, _, dk = k_exact.shape
    if k_exact.shape[0] != b or dk != d:
        raise ValueError(f"k_exact {tuple(k_exact.shape)} must be [B={b}, Hkv, Le, D={d}] for q {tuple(q.shape)}")
    if b == 0 or d == 0 or lq == 0:
        raise ValueError(f"q must have a non-empty batch, Lq and head_dim, got shape {tuple(q.shape)}")
    check_gqa("q", hq, "k_exact", hkv)
    channels = hkv * d
    m = k_args[0].shape[1] if mid_len is None else mid_len
    m_text = "M_max (k_mid_kept.shape[1])" if mid_len is None else "mid_len"
    for p, (mid_kept, kept, comp, cos, sin, s, sh) in (("k", k_args), ("v", v_args)):
        for name, idx in ((f"{p}_kept_idx", kept), (f"{p}_comp_idx", comp)):
            if idx.numel() > 1 and not bool((idx[1:] > idx[:-1]).all()):
                raise ValueError(f"{name} must be sorted ascending without repeats (each head's channels form one run)")
        both = torch.cat([kept, comp]).sort().values
        if both.numel() != channels or not torch.equal(both, torch.arange(channels, device=both.device)):
            raise ValueError(f"{p}_kept_idx and {p}_comp_idx must partition the {channels} channels (Hkv * D) of "
                             f"k_exact, got {kept.numel()} + {comp.numel()} indices")
        if tuple(mid_kept.shape) != (b, m, kept.numel()):
            raise ValueError(f"{p}_mid_kept must be [B, {m_text}, len({p}_kept_idx)]={(b, m, kept.numel())}, "
                             f"got {tuple(mid_kept.shape)}")
        if cos.shape != sin.shape or cos.shape[:2] != (b, comp.numel()) or cos.shape[2] < 1:
            raise ValueError(f"{p}_cos/{p}_sin must both be [B, len({p}_comp_idx), N>=1]=({b}, {comp.numel()}, N), "
                             f"got {tuple(cos.shape)} and {tuple(sin.shape)}")
        for name, t in ((f"{p}_scale", s), (f"{p}_shift", sh)):
            if tuple(t.shape) != (b, comp.numel()):
                raise ValueError(f"{name} must be [B, len({p}_comp_idx)]={(b, comp.numel())}, got {tuple(t.shape)}")


def check_decode_inputs(q, k_exact, v_exact, n_init,
                        k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
                        v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
                        mid_len, period, scale=None) -> None:
    """Raise TypeError/ValueError naming the argument when the inputs are not a valid FourierAttention cache.

    Kernels call this before launching, so a bad layout fails the same way in every implementation.
    """
    check_int("n_init", n_init, 0)
    check_int("mid_len", mid_len, 1)
    check_int("period", period, 1)
    check_scale(scale)
    if mid_len > period:
        raise ValueError(f"mid_len={mid_len} must not exceed period={period}")
    k_args = (k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift)
    v_args = (v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift)
    check_cache_layout(q, k_exact, v_exact, k_args, v_args, mid_len)
    le, lq = k_exact.shape[2], q.shape[2]
    if n_init > le:
        raise ValueError(f"n_init={n_init} exceeds the {le} exact tokens of k_exact")
    if not 1 <= lq <= le - n_init:
        raise ValueError(f"q holds {lq} tokens; they must be the newest tokens of the local part of k_exact, which "
                         f"holds Le - n_init = {le} - {n_init} = {le - n_init}")
    check_finite(("q", q), ("k_exact", k_exact), ("v_exact", v_exact),
                 *((f"{p}_{n}", t) for p, args in (("k", k_args), ("v", v_args))
                   for n, t in zip(("mid_kept", "", "", "cos", "sin", "scale", "shift"), args) if n))


def fourier_decode_attention(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None,
):
    """Attention of the newest Lq tokens over a FourierAttention cache: out [B, Hq, Lq, D] in q's dtype.

    Layout (spec, "Token layout"; one layer, every sequence of the batch with the same lengths):
      q: [B, Hq, Lq, D], Lq in 1..16 in practice, Hq a multiple of Hkv (GQA: query head h reads KV head
        h // (Hq // Hkv)). The queries are the last Lq tokens of the local part: bottom-right causal among
        themselves, every older token visible.
      k_exact, v_exact: [B, Hkv, n_init + n_local, D], every channel of the `n_init` initial (sink) tokens followed
        by the local window, in position order.
      Middle span of `mid_len` tokens (positions n_init .. n_init + mid_len - 1), per K and per V (prefix k_/v_):
        *_kept_idx, *_comp_idx: long [Ck], [Cc], sorted, partitioning the Hkv * D channels (channel c = head
          c // D, dim c % D; the counts per head vary);
        *_mid_kept: [B, mid_len, Ck] the critical channels, exact;
        *_cos, *_sin: [B, Cc, N] Fourier coefficients of the compressed channels (span phase t = 0..mid_len-1,
          period `period` >= mid_len; `fourier_compress`), usually float32;
        *_scale, *_shift: [B, Cc] moment matching: x_hat' = scale * x_hat + shift (`moment_match`).
      scale: softmax scale, default D ** -0.5.
    Reference: rebuild K and V in position order (init, middle, local) with `assemble`, then dense attention.
    A kernel reads this layout once and never writes the rebuilt K/V to memory.
    """
    check_decode_inputs(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
                        v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len, period, scale)
    k = assemble(k_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift, mid_len, period)
    v = assemble(v_exact, n_init, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len, period)
    return attend(q, k.to(q.dtype), v.to(q.dtype), causal=True, scale=scale)


# ---------------------------------------------------------------- op specs: hypothesis cases and inputs
# The magnitude family: a case key `magnitude` scales the values an op sums (the span, the coefficients, V) by 1 or
# LARGE. The rule's float32 floor (atol 1e-5) is absolute, so at magnitude 1 it hides a basis or compensated sum a
# few ulps less accurate than the reference (a truncated Taylor term of a kernel's cos/sin, a dropped compensation);
# at LARGE the floor is negligible and the comparison is against the reference's own float32 error. Only 1 in the
# gpu profile, whose long fp16 spans would overflow at LARGE (explicit examples keep LARGE spans short); never with
# a score offset (one family at a time: each alone stresses float32 to near the rule's bound), except in the needle
# examples, whose scores put all the weight on one token and so add no rounding of their own.
LARGE = 1000.0


def magnitudes(st, big: bool):
    return st.just(1.0) if big else st.sampled_from((1.0, 1.0, 1.0, LARGE))


def _span_cases(profile: str):
    """Spans of any length (rarely a block multiple), period >= length, num_freqs past T/2 + 1 at times."""
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
            "num_freqs": draw(st.integers(1, min(512, period // 2 + 3) if big else period // 2 + 3)),
            "magnitude": draw(magnitudes(st, big)),
            "seed": draw(st.integers(0, 2**31 - 1)),
        }

    return case()


def _compress_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(case["batch"], case["length"], case["channels"], generator=g) * case.get("magnitude", 1.0)
    return {"x": x.to(device=device, dtype=dtype), "num_freqs": case["num_freqs"], "period": case["period"]}


def _reconstruct_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["batch"], case["channels"], case["num_freqs"])
    s = math.sqrt(case["length"]) * case.get("magnitude", 1.0)  # coefficients of a unit-variance span: ~sqrt(L)
    return {"c_cos": (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype),
            "c_sin": (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype),
            "length": case["length"], "period": case["period"]}


def _decode_cases(profile: str):
    """Caches with 0..4 sink tokens, any middle and local lengths, random channel splits (possibly all/none)."""
    from hypothesis import strategies as st

    big = profile == "gpu"

    @st.composite
    def case(draw):
        q_len = draw(st.integers(1, 16))
        mid_len = draw(st.integers(1, 4096 if big else 130))
        return {
            "batch": draw(st.integers(1, 2)),
            "kv_heads": 8 if big else draw(st.integers(1, 2)),
            "group": 4 if big else draw(st.integers(1, 3)),
            "head_dim": 128 if big else draw(st.sampled_from(HEAD_DIMS[:-2])),
            "q_len": q_len,
            "n_init": draw(st.integers(0, 4)),
            "n_local": q_len + draw(st.integers(0, 1020 if big else 40)),
            "mid_len": mid_len,
            "period": mid_len + draw(st.integers(0, 64)),
            "num_freqs": draw(st.integers(1, 512 if big else 40)),
            "v_num_freqs": draw(st.integers(1, 512 if big else 40)),
            "k_fraction": draw(st.floats(0.0, 1.0)),
            "v_fraction": draw(st.floats(0.0, 1.0)),
            "kept_align": 1,  # the aligned layout (kept runs on multiples of 8) is an explicit example
            "score_offset": (offset := draw(score_offsets(st))),
            "magnitude": draw(magnitudes(st, big)) if offset is None else 1.0,  # one family at a time
            "seed": draw(st.integers(0, 2**31 - 1)),
            "scale": None,  # head_dim ** -0.5; an explicit scale is an explicit example
        }

    return case()


def channel_split(g: torch.Generator, heads: int, head_dim: int, fraction: float, align: int = 1):
    """(compressed, kept) sorted channel indices over heads * head_dim for a test cache: a random `fraction` of
    the channels compressed, or with align > 1 every head keeping the same multiple of `align` channels (its
    fraction rounded), so each head's run of the kept list starts on a multiple of `align` (the layout whose
    alignment a kernel may promise its compiler; optimized/triton_fourier_spectral.py)."""
    channels = heads * head_dim
    perm = torch.randperm(channels, generator=g)
    if align == 1:
        n_comp = int(round(fraction * channels))
        return perm[:n_comp].sort().values, perm[n_comp:].sort().values
    keep = min(head_dim, int(round((1.0 - fraction) * head_dim / align)) * align)
    kept = torch.cat([(h * head_dim + perm[(perm // head_dim) == h] % head_dim)[:keep] for h in range(heads)])
    mask = torch.ones(channels, dtype=torch.bool)
    mask[kept] = False
    return torch.arange(channels)[mask], kept.sort().values


def _decode_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    b, h, d = case["batch"], case["kv_heads"], case["head_dim"]
    m = case["mid_len"]

    def rand(*shape, s=1.0):
        return (torch.randn(*shape, generator=g) * s).to(device=device, dtype=dtype)

    out = {
        "q": rand(b, h * case["group"], case["q_len"], d),
        "k_exact": rand(b, h, case["n_init"] + case["n_local"], d),
        "v_exact": rand(b, h, case["n_init"] + case["n_local"], d),
        "n_init": case["n_init"], "mid_len": m, "period": case["period"],
    }
    if case.get("scale") is not None:  # an explicit softmax scale (default: head_dim ** -0.5)
        out["scale"] = case["scale"]
    for p in ("k", "v"):
        n_freq = case["num_freqs"] if p == "k" else case.get("v_num_freqs", case["num_freqs"])  # K and V: own N
        comp, kept = channel_split(g, h, d, case[f"{p}_fraction"], case.get("kept_align", 1))
        n_comp = comp.numel()
        out.update({
            f"{p}_kept_idx": kept.to(device), f"{p}_comp_idx": comp.to(device),
            f"{p}_mid_kept": rand(b, m, kept.numel()),
            # Coefficients at a scale that keeps the reconstruction O(1) for any N.
            f"{p}_cos": rand(b, n_comp, n_freq, s=math.sqrt(m) / 4), f"{p}_sin": rand(b, n_comp, n_freq, s=math.sqrt(m) / 4),
            f"{p}_scale": (torch.rand(b, n_comp, generator=g) + 0.5).to(device=device, dtype=dtype),
            f"{p}_shift": rand(b, n_comp, s=0.5),
        })
    return scale_values(offset_fourier_cache(out, case.get("score_offset")), case.get("magnitude", 1.0))


def scale_values(inputs: dict, magnitude: float) -> dict:
    """V of a FourierAttention cache times `magnitude` (exact tokens, kept channels, and the compressed channels'
    coefficients and moment shift, so their reconstruction scales too), in place; the output scales with it."""
    if magnitude != 1.0:
        for name in ("v_exact", "v_mid_kept", "v_cos", "v_sin", "v_shift"):
            inputs[name].mul_(magnitude)
    return inputs


_DECODE_FLOATS = ("q", "k_exact", "v_exact", *(f"{p}_{n}" for p in "kv" for n in ("mid_kept", "cos", "sin", "scale", "shift")))

# Checked before any drawn case (OpSpec.examples). Spans: one token; an even period with the Nyquist term kept
# (N = T/2 + 1); N past T/2 + 1 with T > L; a span one past a 32-token tile; batch 0; channels 0; an empty span;
# the Nyquist span and the three-tile span at magnitude 1000 (the magnitude family, above);
# channels and frequencies one past a 64-wide tile, a span of three 64-token tiles (the compensated sum
# carries its error term across tiles).
SPAN_EXAMPLES = (
    {"batch": 1, "channels": 3, "length": 1, "period": 1, "num_freqs": 1, "magnitude": 1.0, "seed": 1},
    {"batch": 2, "channels": 5, "length": 16, "period": 16, "num_freqs": 9, "magnitude": 1000.0, "seed": 2},
    {"batch": 1, "channels": 7, "length": 10, "period": 13, "num_freqs": 9, "magnitude": 1.0, "seed": 3},
    {"batch": 1, "channels": 24, "length": 33, "period": 40, "num_freqs": 6, "magnitude": 1.0, "seed": 4},
    {"batch": 0, "channels": 3, "length": 5, "period": 8, "num_freqs": 3, "magnitude": 1.0, "seed": 5},
    {"batch": 2, "channels": 0, "length": 5, "period": 8, "num_freqs": 3, "magnitude": 1.0, "seed": 6},
    {"batch": 2, "channels": 4, "length": 0, "period": 4, "num_freqs": 2, "magnitude": 1.0, "seed": 7},
    {"batch": 1, "channels": 65, "length": 130, "period": 130, "num_freqs": 65, "magnitude": 1000.0, "seed": 8},
)
# Decode: every channel compressed (K) and none (V) under GQA with no sinks, with an explicit softmax scale (0.3, not
# head_dim ** -0.5: an entry point that drops or misroutes `scale` fails it); a one-token middle span; both halves
# split with sinks, a 16-token chunk and a middle one past a 32-token tile; odd head dims with every score far
# below 0 and far above it. K and V keep their own number of frequencies (v_num_freqs), equal in one example only;
# two at magnitude 1000. Last, a needle (reference/ops/score_offset.py: all attention on middle token 3) at
# magnitude 1000 with period 8, where every odd phase sits on the edge of the basis's quadrant reduction
# (|a| = pi/4, where a Taylor cos/sin is least accurate), and V rebuilt from N = 2 frequencies, so both edge
# terms of the needle's row (n = 1) carry most of it: a basis 6 float32 ulps off at the edges (a kernel's sin
# polynomial with its a**9 term doubled) fails it, at 1.2x to 1.9x the bound on each of seeds 1-6, and our torch,
# coefficients and Triton kernels pass at under 0.6x. Averaged over the tokens, the drawn cases see at most a
# fraction of such an error. Then 3 heads each keeping 8 of their 40 channels in K and in V (kept_align 8: each
# head's run of the kept list starts on a multiple of 8, the layout a kernel may promise aligned loads for) in
# rows whose stride, 24 + 3 (the conformance's padded views add 3), is a multiple of 3, 9 and 27 but not of 8,
# and 72 rows per sequence (a batch stride that is a multiple of 8): an alignment check that tests the row stride
# against the wrong divisor promises wrongly here.
DECODE_EXAMPLES = (
    {"batch": 1, "kv_heads": 2, "group": 2, "head_dim": 8, "q_len": 1, "n_init": 0, "n_local": 5, "mid_len": 40,
     "period": 64, "num_freqs": 7, "v_num_freqs": 3,
     "k_fraction": 1.0, "v_fraction": 0.0, "kept_align": 1, "score_offset": None, "magnitude": 1.0,
     "seed": 1, "scale": 0.3},
    {"batch": 2, "kv_heads": 1, "group": 3, "head_dim": 16, "q_len": 2, "n_init": 4, "n_local": 2, "mid_len": 1,
     "period": 1, "num_freqs": 1, "v_num_freqs": 1,
     "k_fraction": 0.5, "v_fraction": 0.5, "kept_align": 1, "score_offset": None, "magnitude": 1000.0,
     "seed": 2, "scale": None},
    {"batch": 1, "kv_heads": 2, "group": 1, "head_dim": 32, "q_len": 16, "n_init": 1, "n_local": 16, "mid_len": 33,
     "period": 34, "num_freqs": 18, "v_num_freqs": 25,
     "k_fraction": 0.25, "v_fraction": 0.75, "kept_align": 1, "score_offset": None, "magnitude": 1000.0,
     "seed": 3, "scale": None},
    {"batch": 1, "kv_heads": 2, "group": 2, "head_dim": 24, "q_len": 3, "n_init": 2, "n_local": 9, "mid_len": 65,
     "period": 66, "num_freqs": 11, "v_num_freqs": 11,
     "k_fraction": 0.5, "v_fraction": 0.5, "kept_align": 1, "score_offset": "below", "magnitude": 1.0,
     "seed": 4, "scale": None},
    {"batch": 2, "kv_heads": 1, "group": 2, "head_dim": 40, "q_len": 1, "n_init": 0, "n_local": 4, "mid_len": 32,
     "period": 40, "num_freqs": 5, "v_num_freqs": 7,
     "k_fraction": 0.5, "v_fraction": 0.5, "kept_align": 1, "score_offset": "above", "magnitude": 1.0,
     "seed": 5, "scale": None},
    {"batch": 2, "kv_heads": 2, "group": 2, "head_dim": 32, "q_len": 2, "n_init": 1, "n_local": 3, "mid_len": 6,
     "period": 8, "num_freqs": 5, "v_num_freqs": 2,
     "k_fraction": 0.5, "v_fraction": 1.0, "kept_align": 1, "score_offset": "needle", "magnitude": 1000.0,
     "seed": 6, "scale": None},
    {"batch": 2, "kv_heads": 3, "group": 2, "head_dim": 40, "q_len": 1, "n_init": 2, "n_local": 5, "mid_len": 72,
     "period": 75, "num_freqs": 9, "v_num_freqs": 6,
     "k_fraction": 0.8, "v_fraction": 0.8, "kept_align": 8, "score_offset": None, "magnitude": 1.0,
     "seed": 7, "scale": None},
)

register_op(OpSpec("fourier_compress", fourier_compress, _span_cases, _compress_inputs,
                   float_inputs=("x",), examples=SPAN_EXAMPLES, doc=fourier_compress.__doc__))
register_op(OpSpec("fourier_reconstruct", fourier_reconstruct, _span_cases, _reconstruct_inputs,
                   float_inputs=("c_cos", "c_sin"), examples=SPAN_EXAMPLES, doc=fourier_reconstruct.__doc__))
register_op(OpSpec("fourier_decode_attention", fourier_decode_attention, _decode_cases, _decode_inputs,
                   float_inputs=_DECODE_FLOATS, examples=DECODE_EXAMPLES, doc=fourier_decode_attention.__doc__,
                   bench=BENCH))
