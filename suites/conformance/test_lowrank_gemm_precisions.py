"""The low-rank kernel's GEMMs: A = Z W_K (scores) and F = H W_V^H (values) run in a precision of GEMM_PRECS,
complex64 ("ieee") or complex64 on TF32 tensor cores ("tf32"; the interpreter cuts both operands' mantissas as the
tensor cores would), and the query spectrum Z is either one kernel or GEMMs over a block-diagonal query (qs_gemm).
Conformance runs the defaults (the interpreter takes the GEMM path); here every precision and both query-spectrum
paths are held to the conformance rule, and the TF32 stand-in must cut what it should."""
from __future__ import annotations

import pytest
import torch

import optimized.triton_fourier_lowrank as lowrank
from ci.lowrank_f32_coefs import uniform, varlen
from harness.kernels.conformance import check_case
from optimized.triton_fourier_lowrank import (GEMM_PRECS, QS_GEMM_MIN_BATCH, fourier_decode_attention_lowrank,
                                              qs_gemm_for, tf32_truncated)
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_op

KNOBS = {"block_t": 16, "block": 32, "num_splits": 2}
UNIFORM = {"batch": 2, "kv_heads": 2, "group": 2, "head_dim": 16, "q_len": 1, "n_init": 2, "n_local": 9,
           "mid_len": 150, "period": 160, "num_freqs": 24, "k_fraction": 0.5, "v_fraction": 0.5}
# A float16 varlen case with inputs of magnitude 1000, three periods (three table groups), from the ci profile's
# draws: scores of ~1e5 whose rounding the softmax amplifies.
LARGE = {"batch": 3, "kv_heads": 2, "group": 2, "head_dim": 8, "q_len": 1, "n_init": 0, "n_locals": [1, 30, 7],
         "mid_lens": [1, 33, 12], "periods": [1, 40, 12], "num_freqs": 5, "v_num_freqs": 2, "k_fraction": 0.5,
         "v_fraction": 0.5, "kept_align": 1, "score_offset": None, "magnitude": 1000.0, "seed": 1}


@pytest.fixture(params=[False, True], ids=["query_spectrum_kernel", "qs_gemm"])
def qs_path(request, monkeypatch):
    """Every plan takes the query-spectrum path of the parameter."""
    monkeypatch.setattr(lowrank, "qs_gemm_for", lambda batch, gpu, coefs: request.param)
    return request.param


@pytest.fixture(params=[False, True], ids=["v_loop", "v_gemm"])
def v_path(request, monkeypatch):
    """Every plan sums the V products where the parameter says: the output kernel's loop, or GEMMs."""
    monkeypatch.setattr(lowrank, "v_gemm_for", lambda batch, gpu, coefs: request.param)
    return request.param


@pytest.mark.parametrize("precs", [("tf32", "tf32"), ("ieee", "tf32"), ("tf32", "ieee")])
def test_each_precision_and_query_spectrum_path_conforms_on_16_bit_queries(precs, qs_path, v_path):
    """float16 queries and caches with the coefficients in float32 (the KV method's format, `ci.lowrank_f32_coefs`),
    which the GEMM path needs."""
    for seed in (1, 2):
        res = check_case("fourier_decode_attention", uniform, dict(UNIFORM, seed=seed), torch.float16,
                         knobs=dict(KNOBS, gemm_precs=precs))
        assert res.passed, res.message
    res = check_case("fourier_decode_attention_varlen", varlen, LARGE, torch.float16,
                     knobs=dict(KNOBS, gemm_precs=precs))
    assert res.passed, res.message


def test_16_bit_coefficients_take_the_kernel():
    x = make_fourier_cache(2, 2, 1, 8, 40, 4, n_init=2, n_local=8, dtype=torch.float16, device="cpu", seed=0)
    x16 = {k: v.half() if k in ("k_cos", "k_sin") else v for k, v in x.items()}
    assert lowrank.lowrank_plan(**x).qs_gemm and not lowrank.lowrank_plan(**x16).qs_gemm
    with pytest.raises(ValueError, match="qs_gemm needs float32 K coefficients"):
        lowrank.lowrank_plan(**x16).qs_gemm = True


def test_float32_inputs_keep_float32_gemms(qs_path):
    """TF32 misses float32's tolerance (4e-5 against 1.1e-5 allowed on UNIFORM, seed 1): float32 stays "ieee"."""
    x = make_fourier_cache(1, 2, 1, 8, 40, 4, n_init=2, n_local=8, dtype=torch.float32, device="cpu", seed=0)
    plan = lowrank.lowrank_plan(**x)
    assert plan.gemm_precs == ("ieee", "ieee") and plan.qs_gemm_prec == "ieee" and plan.qs_gemm == qs_path
    res = check_case("fourier_decode_attention", fourier_decode_attention_lowrank, dict(UNIFORM, seed=1),
                     torch.float32, knobs=KNOBS)
    assert res.passed, res.message


def test_the_v_products_paths_give_the_same_output(monkeypatch):
    """The V channels' sums from the planes' GEMMs (v_gemm) equal the output kernel's loop in float32, on a varlen
    batch of three periods (three tables, planes zero past each period's bins)."""
    x = get_op("fourier_decode_attention_varlen").make_inputs(dict(LARGE, magnitude=1.0), torch.float32,
                                                              torch.device("cpu"))
    outs = []
    for on in (False, True):
        monkeypatch.setattr(lowrank, "v_gemm_for", lambda batch, gpu, coefs, on=on: on)
        outs.append(varlen(**x, **KNOBS))
    assert outs[0].abs().max() > 0 and not torch.equal(outs[0], outs[1])  # two paths, not one
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)


def test_the_query_spectrum_paths_give_the_same_scores_tables():
    """A (the scores' rank-r coefficients) from the kernel's Z and from the GEMMs' two halves agree in float32."""
    x = make_fourier_cache(3, 6, 3, 16, 200, 30, k_fraction=0.4, v_fraction=0.6, n_init=2, n_local=12,
                           dtype=torch.float32, device="cpu", seed=5)
    plans = [lowrank.lowrank_plan(**x) for _ in range(2)]
    for plan, on in zip(plans, (False, True)):
        plan.qs_gemm = on
        plan.run(upto=2)
    a_kernel = plans[0].a
    a_gemm = plans[1].a[0] + torch.stack((plans[1].a[1][..., 1::2], -plans[1].a[1][..., 0::2]), -1).flatten(-2)
    assert a_kernel.abs().max() > 0
    torch.testing.assert_close(a_gemm, a_kernel, rtol=1e-4, atol=1e-5 * float(a_kernel.abs().max()))
    z0 = plans[0].z[..., 0, 0]
    torch.testing.assert_close(plans[1].z0, z0, rtol=1e-5, atol=1e-5 * float(z0.abs().max()))


def test_the_gemm_path_from_its_batch_on_and_always_in_the_interpreter(monkeypatch):
    f32 = torch.float32
    assert qs_gemm_for(1, False, f32) and not qs_gemm_for(8, False, torch.bfloat16)
    first = QS_GEMM_MIN_BATCH
    assert not qs_gemm_for(first - 1, True, f32) and qs_gemm_for(first, True, f32)
    monkeypatch.setattr(lowrank, "QS_GEMM_MIN_BATCH", 4)
    assert not qs_gemm_for(3, True, f32) and qs_gemm_for(4, True, f32) and not qs_gemm_for(4, True, torch.float16)
    monkeypatch.setattr(lowrank, "QS_GEMM_MIN_BATCH", None)  # never on a GPU
    assert not any(qs_gemm_for(b, True, f32) for b in (1, 8, 1024)) and qs_gemm_for(1, False, f32)


@pytest.mark.parametrize("precs", [("tf32",), ("tf32", "bf16"), "tf32", ("ieee", "ieee", "ieee")])
def test_a_bad_precision_is_named_before_any_launch(precs):
    x = make_fourier_cache(1, 2, 1, 8, 40, 4, n_init=2, n_local=8, dtype=torch.float16, device="cpu", seed=0)
    with pytest.raises(ValueError, match="gemm_precs"):
        fourier_decode_attention_lowrank(**x, gemm_precs=precs)


def test_tf32_truncation_keeps_ten_mantissa_bits():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(3)) * 1e3
    t = tf32_truncated(x)
    assert (t.view(torch.int32) & 8191).eq(0).all()  # the 13 low mantissa bits are gone
    rel = (x - t).abs() / x.abs()
    assert rel.max() < 2.0 ** -10 and rel.max() > 2.0 ** -12  # cut, not left as it was
    assert torch.equal(tf32_truncated(t), t)  # a TF32 value is kept
    z = torch.complex(x[:2048], x[2048:])
    assert torch.equal(torch.view_as_real(tf32_truncated(z)), torch.view_as_real(torch.complex(t[:2048], t[2048:])))
    assert torch.equal(tf32_truncated(z.conj()), torch.complex(t[:2048], -t[2048:]))  # a conjugate view resolved
    assert set(GEMM_PRECS) == {"ieee", "tf32"}
    with pytest.raises(ValueError, match="float32 or complex64"):
        tf32_truncated(x.half())
