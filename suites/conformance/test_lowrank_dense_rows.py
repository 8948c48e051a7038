"""The low-rank kernel's short-middle path (optimized/lowrank_dense_rows.py): its inverse-FFT rebuild equals the
reference's reconstruction in float64 over drawn spans, the path conforms through the op's property suite (uniform
and varlen, float32 and float16: every layout the op's strategy draws) and on the magnitude-1000 varlen case, and a
plan takes it only where the rule says it pays, on a GPU, for a plan kept across steps."""
from __future__ import annotations

import pytest
import torch
from hypothesis import example, given

import optimized.triton_fourier_lowrank as lowrank
from ci.lowrank_f32_coefs import uniform_dense, varlen_dense
from harness.kernels.conformance import check_case, conform
from optimized.lowrank_dense_rows import dense_by_default, dense_rows_pay, rebuilt
from optimized.triton_decode_attention import MAX_ROWS as decode_max_rows
from optimized.triton_fourier import MAX_ROWS as fourier_max_rows
from reference.ops.fourier import fourier_reconstruct
from reference.ops.fourier_cache import make_fourier_cache
from suites.conformance.test_lowrank_folds import KNOBS, LARGE, UNIFORM
from suites.strategies import fourier_spans


@given(fourier_spans())
@example((3, 5, 6, 8, 1))  # even T with the Nyquist term kept, a span shorter than T
@example((2, 9, 9, 9, 2))  # odd T, N above T / 2: the weights drop the frequencies past it
@example((4, 3, 0, 5, 3))  # an empty span
def test_rebuilt_equals_the_reference_reconstruction_in_float64(span):
    channels, num_freqs, length, period, seed = span
    g = torch.Generator().manual_seed(seed)
    c_cos, c_sin = (torch.randn(1, channels, num_freqs, generator=g, dtype=torch.float64) for _ in range(2))
    scale, shift = torch.rand(channels, generator=g, dtype=torch.float64) + 0.5, torch.randn(channels, generator=g,
                                                                                               dtype=torch.float64)
    want = fourier_reconstruct(c_cos, c_sin, length, period)[0] * scale + shift
    torch.testing.assert_close(rebuilt(c_cos[0], c_sin[0], scale, shift, length, period), want, rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("op,fn", [("fourier_decode_attention", uniform_dense),
                                   ("fourier_decode_attention_varlen", varlen_dense)], ids=["uniform", "varlen"])
def test_the_dense_path_conforms(op, fn, dtype):
    report = conform(op, fn, dtypes=(dtype,), max_examples=6)
    assert report.passed, report.failures[0].message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("op,fn,case", [("fourier_decode_attention", uniform_dense, UNIFORM),
                                        ("fourier_decode_attention_varlen", varlen_dense, LARGE)],
                         ids=["uniform", "varlen-magnitude-1000"])
def test_the_dense_path_conforms_on_the_fold_cases(op, fn, case, dtype):
    res = check_case(op, fn, case, dtype, knobs=KNOBS)
    assert res.passed, res.message


def test_the_rule_takes_the_rows_where_a_block_is_no_longer_than_its_bases():
    assert dense_rows_pay(64, 64, 64)  # 1 x 4k on an H100: 64-token blocks, rank width 64
    assert not dense_rows_pay(128, 64, 64)  # 1 x 8k: the folds are half the rows
    assert not dense_rows_pay(64, 64, 32)  # either basis narrower than the block keeps the folds
    assert dense_by_default(True, None, True, 64, 64, 64)
    assert not dense_by_default(False, None, True, 64, 64, 64)  # the interpreter's plans: asked for only
    assert not dense_by_default(True, False, True, 64, 64, 64)  # folds set either way: the path asked for
    assert not dense_by_default(True, None, False, 64, 64, 64)  # batch 2 and up, no folds by default
    assert not dense_by_default(True, None, True, 128, 64, 64)


def test_every_plan_fits_the_flash_decoding_tile():
    """A plan's G x Lq rows per KV head are capped where the Fourier kernels take their query (check_plan_inputs),
    and the flash-decoding kernel holds as many: `dense` needs no cap of its own."""
    assert fourier_max_rows == decode_max_rows


def _cache(dtype=torch.float32):
    return make_fourier_cache(1, 4, 2, 16, 150, 24, n_init=2, n_local=9, dtype=dtype, device="cpu", seed=8,
                              k_fraction=0.5, v_fraction=0.5)


def test_a_plan_takes_the_rows_when_asked_and_then_no_folds():
    x = _cache()
    assert not lowrank.lowrank_plan(**x, **KNOBS).dense  # off a GPU only when asked for
    plan = lowrank.lowrank_plan(**x, **KNOBS, dense=True)
    assert plan.dense and not plan.folds
    k_rows, v_rows, seq_lens = plan._dense_rows
    assert k_rows.shape == v_rows.shape == (1, 2, 139 + 11, 16)  # the middle, then 2 sinks and 9 window tokens
    assert seq_lens.tolist() == [150]
    torch.testing.assert_close(k_rows[0, :, 139:], x["k_exact"][0], rtol=0, atol=0)
    dense_out = plan.run().clone()
    plan.dense = False
    assert not plan.dense and plan._dense_rows is None
    torch.testing.assert_close(dense_out, plan.run(), rtol=2e-5, atol=2e-6)  # the low-rank path, same plan


def test_a_bad_dense_value_is_named():
    with pytest.raises(ValueError, match="dense"):
        lowrank.lowrank_plan(**_cache(), dense="yes")
    with pytest.raises(ValueError, match="dense"):  # the op's one-off default does not swallow a bad value
        lowrank.fourier_decode_attention_lowrank(**_cache(), dense="yes")


def test_the_dense_path_is_timed_as_one_phase(monkeypatch):
    """Its one pass is the stream's phase, on the one plan that said it is dense (the rows are rebuilt once); the
    low-rank path's phases are timed cumulatively as before."""
    timed, built = [], []
    make = lowrank.lowrank_plan

    def counted(**kw):
        built.append(1)
        return make(**kw)

    monkeypatch.setattr(lowrank, "lowrank_plan", counted)

    def timer(fn, sets):
        for x in sets:
            fn(x)
        timed.append(1)
        return 0.25 * len(timed)

    x = _cache()
    phases = lowrank.phase_times(timer, [x], **KNOBS, dense=True)
    assert phases == {name: (0.25 if name == "stream" else 0.0) for name in lowrank.PHASES} and len(timed) == 1
    assert len(built) == 1
    phases = lowrank.phase_times(timer, [x], **KNOBS, dense=False)
    assert len(timed) == 1 + len(lowrank.PHASES) and sum(phases.values()) > 0
