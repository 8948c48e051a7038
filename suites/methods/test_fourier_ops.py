"""FourierAttention ops (reference/ops/fourier.py): basis properties, the decode layout, argument errors.

Implementations are checked against these references by suites/conformance; here the references themselves are
checked against facts that do not depend on their code (exactness, Parseval, dense attention, causality).
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.ops.attention import attention
from reference.ops.fourier import (
    dft_basis,
    dft_weights,
    fourier_compress,
    fourier_decode_attention,
    fourier_reconstruct,
    moment_match,
)
from reference.registry import get_op
from suites.strategies import seeds


def randn(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- compress / reconstruct
@given(length=st.integers(1, 70), extra=st.integers(0, 20), more=st.integers(0, 3), channels=st.integers(1, 5), seed=seeds())
def test_reconstruction_is_exact_with_a_complete_basis(length, extra, more, channels, seed):
    period = length + extra
    x = randn(2, length, channels, seed=seed)
    rec = fourier_reconstruct(*fourier_compress(x, period // 2 + 1 + more, period), length, period)
    torch.testing.assert_close(rec, x, atol=1e-9, rtol=1e-9)


@given(period=st.integers(2, 60), channels=st.integers(1, 4), seed=seeds())
def test_error_is_the_dropped_energy_and_never_grows(period, channels, seed):
    # Span length == period: the truncated reconstruction is an orthogonal projection, so (Parseval)
    # |x - x_hat_N|^2 = |x|^2 - sum_{n<N} w_n (c_cos[n]^2 + c_sin[n]^2), which falls as N grows.
    x = randn(1, period, channels, seed=seed)
    c_cos, c_sin = fourier_compress(x, period // 2 + 1, period)
    w = dft_weights(period // 2 + 1, period, torch.float64)
    energy = (x**2).sum(dim=1)[0]
    errors = []
    for n in range(1, period // 2 + 2):
        err = ((fourier_reconstruct(c_cos[..., :n], c_sin[..., :n], period, period) - x) ** 2).sum(dim=1)[0]
        kept = (w[:n] * (c_cos[0, :, :n] ** 2 + c_sin[0, :, :n] ** 2)).sum(dim=-1)
        torch.testing.assert_close(err, energy - kept, atol=1e-8 * float(energy.max()), rtol=1e-8)
        errors.append(err)
    for a, b in zip(errors, errors[1:]):
        assert (b <= a + 1e-9).all()
    assert float(errors[-1].max()) < 1e-18 * period * float(energy.max()) + 1e-18


@given(length=st.integers(1, 40), new=st.integers(1, 10), extra=st.integers(0, 10), n=st.integers(1, 12), seed=seeds())
def test_adding_tokens_at_their_phase_equals_compressing_the_longer_span(length, new, extra, n, seed):
    # The streaming update of the KV method rests on this: coefficients are sums over positions.
    period = length + new + extra
    x = randn(2, length + new, 3, seed=seed)
    c_cos, c_sin = fourier_compress(x[:, :length], n, period)
    cos, sin = dft_basis(torch.arange(length, length + new), n, period, torch.float64)
    c_cos = c_cos + torch.einsum("blc,ln->bcn", x[:, length:], cos)
    c_sin = c_sin + torch.einsum("blc,ln->bcn", x[:, length:], sin)
    want_cos, want_sin = fourier_compress(x, n, period)
    torch.testing.assert_close(c_cos, want_cos, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(c_sin, want_sin, atol=1e-10, rtol=1e-10)


def test_basis_is_accurate_at_long_periods():
    # n * t is reduced mod T before the angle: at T = 32k the float32 table is still exact to rounding.
    t = torch.tensor([0, 1, 16_383, 32_767])
    cos, sin = dft_basis(t, 512, 32_768, torch.float32)
    angle = 2 * math.pi * ((t[:, None] * torch.arange(512)[None]) % 32_768).double() / 32_768
    torch.testing.assert_close(cos.double(), torch.cos(angle), atol=1e-7, rtol=0)
    torch.testing.assert_close(sin.double(), torch.sin(angle), atol=1e-7, rtol=0)


@given(length=st.integers(3, 60), channels=st.integers(1, 5), seed=seeds())
def test_moment_matching_restores_mean_and_spread(length, channels, seed):
    x = randn(2, length, channels, seed=seed) * 3 + 1
    x_hat = 0.2 * x + 0.05 * randn(2, length, channels, seed=seed + 1)  # a damped, noisy reconstruction
    scale, shift = moment_match(x, x_hat)
    y = x_hat * scale[:, None] + shift[:, None]
    torch.testing.assert_close(y.mean(dim=1), x.mean(dim=1), atol=1e-9, rtol=1e-9)
    spread = lambda t: (t - t.mean(dim=1, keepdim=True)).abs().amax(dim=1)  # noqa: E731
    torch.testing.assert_close(spread(y), spread(x), atol=1e-9, rtol=1e-9)


def test_moment_matching_of_a_flat_reconstruction_is_the_mean():
    x = randn(1, 30, 2, seed=3)
    scale, shift = moment_match(x, torch.full_like(x, 0.7))
    assert torch.equal(scale, torch.zeros_like(scale))
    torch.testing.assert_close(shift, x.mean(dim=1))


# ---------------------------------------------------------------- decode attention over the compact layout
def decode_inputs(seed: int, dtype=torch.float64, **overrides) -> dict:
    """Inputs of the op from its own registered case strategy's builder, with chosen case values."""
    case = {"batch": 2, "kv_heads": 2, "group": 2, "head_dim": 8, "q_len": 3, "n_init": 2, "n_local": 7, "mid_len": 23,
            "period": 30, "num_freqs": 5, "k_fraction": 0.6, "v_fraction": 0.4, "seed": seed, **overrides}
    return get_op("fourier_decode_attention").make_inputs(case, dtype, torch.device("cpu"))


def rebuild_by_hand(inp: dict, p: str) -> torch.Tensor:
    """K or V in position order, one channel at a time (independent of the op's `assemble`)."""
    exact = inp[f"{p}_exact"]
    b, h, _, d = exact.shape
    m, n_init = inp["mid_len"], inp["n_init"]
    mid = torch.empty(b, h, m, d, dtype=exact.dtype)
    for j, c in enumerate(inp[f"{p}_kept_idx"].tolist()):
        mid[:, c // d, :, c % d] = inp[f"{p}_mid_kept"][:, :, j]
    for j, c in enumerate(inp[f"{p}_comp_idx"].tolist()):
        rec = fourier_reconstruct(inp[f"{p}_cos"][:, j : j + 1], inp[f"{p}_sin"][:, j : j + 1], m, inp["period"])[:, :, 0]
        mid[:, c // d, :, c % d] = rec * inp[f"{p}_scale"][:, j : j + 1] + inp[f"{p}_shift"][:, j : j + 1]
    return torch.cat([exact[:, :, :n_init], mid, exact[:, :, n_init:]], dim=2)


@given(case=get_op("fourier_decode_attention").cases("ci"))
def test_decode_attention_is_dense_attention_over_the_rebuilt_cache(case):
    inp = get_op("fourier_decode_attention").make_inputs(case, torch.float64, torch.device("cpu"))
    k, v = rebuild_by_hand(inp, "k"), rebuild_by_hand(inp, "v")
    want = attention(inp["q"], k, v, causal=True)
    torch.testing.assert_close(fourier_decode_attention(**inp), want, atol=1e-10, rtol=1e-10)


@given(seed=seeds(), q_len=st.integers(1, 5), n_init=st.integers(0, 4))
def test_with_every_channel_kept_it_is_attention_over_the_tokens_in_order(seed, q_len, n_init):
    inp = decode_inputs(seed, q_len=q_len, n_init=n_init, k_fraction=0.0, v_fraction=0.0)
    b, h, _, d = inp["k_exact"].shape

    def tokens(p):
        mid = inp[f"{p}_mid_kept"].reshape(b, inp["mid_len"], h, d).transpose(1, 2)  # kept_idx is every channel
        e = inp[f"{p}_exact"]
        return torch.cat([e[:, :, :n_init], mid, e[:, :, n_init:]], dim=2)

    torch.testing.assert_close(fourier_decode_attention(**inp), attention(inp["q"], tokens("k"), tokens("v")), atol=1e-12, rtol=0)


@given(seed=seeds(), q_len=st.integers(2, 6))
def test_queries_are_causal_among_themselves(seed, q_len):
    inp = decode_inputs(seed, q_len=q_len)
    before = fourier_decode_attention(**inp)
    inp["k_exact"][:, :, -1] += 5.0  # the newest token: only the last query may see it
    inp["v_exact"][:, :, -1] -= 5.0
    after = fourier_decode_attention(**inp)
    assert torch.equal(before[:, :, :-1], after[:, :, :-1])
    assert not torch.allclose(before[:, :, -1], after[:, :, -1])


def test_float32_coefficients_with_half_precision_tokens():
    # The KV method holds coefficients and statistics in float32 next to bfloat16 K/V.
    inp = decode_inputs(11)
    oracle = fourier_decode_attention(**inp)
    mixed = {k: (v.to(torch.float32 if k[2:] in ("cos", "sin", "scale", "shift") else torch.bfloat16)
                 if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in inp.items()}
    out = fourier_decode_attention(**mixed)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), oracle, atol=5e-2, rtol=5e-2)


# ---------------------------------------------------------------- argument errors name the argument
def test_bad_span_arguments():
    x = randn(1, 10, 3, seed=0)
    with pytest.raises(ValueError, match="period"):
        fourier_compress(x, 4, 0)
    with pytest.raises(ValueError, match="period=5"):
        fourier_compress(x, 4, 5)
    with pytest.raises(ValueError, match="num_freqs"):
        fourier_compress(x, 0, 10)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fourier_compress(x.tolist(), 4, 10)
    with pytest.raises(ValueError, match="x must be 3-D"):
        fourier_compress(x[0], 4, 10)
    c_cos, c_sin = fourier_compress(x, 4, 12)
    with pytest.raises(ValueError, match="c_sin"):
        fourier_reconstruct(c_cos, c_sin[..., :3], 10, 12)
    with pytest.raises(ValueError, match="length=13"):
        fourier_reconstruct(c_cos, c_sin, 13, 12)


def _drop_first(t):
    return t[1:]


@pytest.mark.parametrize(
    "name,change,error,needle",
    [
        ("k_comp_idx", _drop_first, ValueError, "partition"),
        ("v_kept_idx", lambda t: t.flip(0), ValueError, "v_kept_idx must be sorted"),
        ("k_kept_idx", lambda t: t.int(), TypeError, "k_kept_idx"),
        ("k_mid_kept", lambda t: t[:, 1:], ValueError, "k_mid_kept"),
        ("v_cos", lambda t: t[:, 1:], ValueError, "v_cos"),
        ("k_scale", lambda t: t[:, :, None], ValueError, "k_scale"),
        ("q", lambda t: t[:, :3], ValueError, "heads"),
        ("q", lambda t: t.repeat(1, 1, 4, 1), ValueError, "local part"),
        ("n_init", lambda n: 99, ValueError, "n_init"),
        ("mid_len", lambda n: 31, ValueError, "mid_len"),
        ("period", lambda n: 0, ValueError, "period"),
        ("scale", lambda s: -1.0, ValueError, "scale"),
        ("v_exact", lambda t: t[:, :, 1:], ValueError, "v_exact"),
    ],
)
def test_bad_decode_arguments_name_the_argument(name, change, error, needle):
    inp = decode_inputs(5, q_len=2, n_local=6)
    inp[name] = change(inp.get(name))
    with pytest.raises(error, match=needle):
        fourier_decode_attention(**inp)
