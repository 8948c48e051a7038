"""The low-rank kernel's two GEMMs (A = Z W_K for the scores, F = H W_V^H for the values) run in a precision of
GEMM_PRECS: complex64 ("ieee"), complex64 on TF32 tensor cores ("tf32"; the interpreter cuts the mantissas as the
tensor cores would), or their real form in bfloat16 ("bf16"). Conformance runs the defaults; here every precision
the kernel may be asked for is held to the conformance rule on float16 inputs, the real form must be the complex
product, and the reason the scores never take bfloat16 by default is pinned to a case."""
from __future__ import annotations

import pytest
import torch

from harness.kernels.conformance import check_case
from optimized.lowrank_tile_basis import real_form
from optimized.triton_fourier_lowrank import (GEMM_PRECS, GEMM_PRECS_16, fourier_decode_attention_lowrank,
                                              fourier_decode_attention_varlen_lowrank, tf32_truncated)
from reference.ops.fourier_cache import make_fourier_cache

KNOBS = {"block_t": 16, "block": 32, "num_splits": 2}
UNIFORM = dict(batch=2, kv_heads=2, group=2, head_dim=16, q_len=1, n_init=2, n_local=9, mid_len=150, period=160,
               num_freqs=24, k_fraction=0.5, v_fraction=0.5)
# A float16 varlen case with inputs of magnitude 1000, from the ci profile's draws: scores of ~1e5 whose rounding
# the softmax amplifies.
LARGE = dict(batch=3, kv_heads=2, group=2, head_dim=8, q_len=1, n_init=0, n_locals=[1, 30, 7], mid_lens=[1, 33, 12],
             periods=[1, 40, 12], num_freqs=5, v_num_freqs=2, k_fraction=0.5, v_fraction=0.5, kept_align=1,
             score_offset=None, magnitude=1000.0, seed=1)


@pytest.mark.parametrize("precs", [("tf32", "tf32"), ("ieee", "tf32"), ("tf32", "ieee"), ("tf32", "bf16")])
def test_each_precision_conforms_on_float16_inputs(precs):
    for seed in (1, 2):
        res = check_case("fourier_decode_attention", fourier_decode_attention_lowrank, dict(UNIFORM, seed=seed),
                         torch.float16, knobs=dict(KNOBS, gemm_precs=precs))
        assert res.passed, res.message
    res = check_case("fourier_decode_attention_varlen", fourier_decode_attention_varlen_lowrank, LARGE,
                     torch.float16, knobs=dict(KNOBS, gemm_precs=precs))
    assert res.passed, res.message


def test_bfloat16_scores_fail_where_the_default_passes():
    """Why GEMM_PRECS_16 keeps A out of bfloat16: rounding Z and W_K to bfloat16 costs the magnitude-1000 case its
    tolerance (error 1.33 against 1.22 allowed), which the default meets."""
    assert GEMM_PRECS_16[0] != "bf16"
    run = lambda precs: check_case("fourier_decode_attention_varlen", fourier_decode_attention_varlen_lowrank,  # noqa: E731
                                   LARGE, torch.float16, knobs=dict(KNOBS, gemm_precs=precs))
    assert run(GEMM_PRECS_16).passed
    bad = run(("bf16", "ieee"))
    assert not bad.passed and bad.property == "tolerance", bad.message


@pytest.mark.parametrize("precs", [("tf32",), ("tf32", "fp8"), "tf32", ("ieee", "ieee", "ieee")])
def test_a_bad_precision_is_named_before_any_launch(precs):
    x = make_fourier_cache(1, 2, 1, 8, 40, 4, n_init=2, n_local=8, dtype=torch.float16, device="cpu", seed=0)
    with pytest.raises(ValueError, match="gemm_precs"):
        fourier_decode_attention_lowrank(**x, gemm_precs=precs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_real_form_is_the_complex_product(seed):
    g = torch.Generator().manual_seed(seed)
    k, m, rows = (int(v) for v in torch.randint(1, 9, (3,), generator=g))
    w = torch.complex(torch.randn(k, m, dtype=torch.float64, generator=g), torch.randn(k, m, dtype=torch.float64,
                                                                                       generator=g))
    x = torch.complex(torch.randn(rows, k, dtype=torch.float64, generator=g), torch.randn(rows, k, dtype=torch.float64,
                                                                                          generator=g))
    want = torch.view_as_real(x @ w).flatten(-2)
    torch.testing.assert_close(torch.view_as_real(x).flatten(-2) @ real_form(w), want, rtol=1e-12, atol=1e-12)
    # a conjugate view (W_V^H is one) gives the product with the conjugate
    wc = w.conj()
    torch.testing.assert_close(torch.view_as_real(x).flatten(-2) @ real_form(wc),
                               torch.view_as_real(x @ wc.resolve_conj()).flatten(-2), rtol=1e-12, atol=1e-12)


def test_tf32_truncation_keeps_ten_mantissa_bits():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(3)) * 1e3
    t = tf32_truncated(x)
    assert (t.view(torch.int32) & 8191).eq(0).all()  # the 13 low mantissa bits are gone
    rel = ((x - t).abs() / x.abs())
    assert rel.max() < 2.0 ** -10 and rel.max() > 2.0 ** -12  # cut, not left as it was
    assert torch.equal(tf32_truncated(t), t)  # a TF32 value is kept
    z = torch.complex(x[:2048], x[2048:])
    assert torch.equal(torch.view_as_real(tf32_truncated(z)), torch.view_as_real(torch.complex(t[:2048], t[2048:])))
    assert set(GEMM_PRECS) == {"ieee", "tf32", "bf16"}
