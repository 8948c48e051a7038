"""The low-rank kernel's two-launch path (optimized/lowrank_solo.py): it conforms through the op's property suite
(uniform and varlen, float32 and float16), on the fold cases (the magnitude-1000 varlen one included), equals the
four-launch fold path in float32 call after call on one plan, and its slot table, head span and switch rules hold."""
from __future__ import annotations

import pytest
import torch

import optimized.triton_fourier_lowrank as lowrank
from ci.lowrank_f32_coefs import uniform_solo, varlen_solo
from harness.kernels.conformance import check_case, conform
from optimized.lowrank_solo import heads_per_row_block, kept_slots, solo_by_default
from reference.ops.fourier_cache import make_fourier_cache
from suites.conformance.test_lowrank_folds import KNOBS, LARGE, UNIFORM, v_gemm_everywhere  # noqa: F401 (fixture)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("op,fn", [("fourier_decode_attention", uniform_solo),
                                   ("fourier_decode_attention_varlen", varlen_solo)], ids=["uniform", "varlen"])
def test_the_two_launch_path_conforms(op, fn, dtype):
    report = conform(op, fn, dtypes=(dtype,), max_examples=6)
    assert report.passed, report.failures[0].message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("op,fn,case", [("fourier_decode_attention", uniform_solo, UNIFORM),
                                        ("fourier_decode_attention_varlen", varlen_solo, LARGE)],
                         ids=["uniform", "varlen-magnitude-1000"])
def test_the_two_launch_path_conforms_on_the_fold_cases(op, fn, case, dtype):
    res = check_case(op, fn, case, dtype, knobs=KNOBS)
    assert res.passed, res.message


def _cache(batch=1, q_len=1, seed=8):
    """Two KV heads of two query heads: a row block spans both; with q_len 3 the exact tokens are causal."""
    return make_fourier_cache(batch, 4, 2, 16, 150, 24, n_init=2, n_local=9, q_len=q_len, dtype=torch.float32,
                              device="cpu", seed=seed, k_fraction=0.5, v_fraction=0.5)


@pytest.mark.usefixtures("v_gemm_everywhere")
@pytest.mark.parametrize("q_len", [1, 3])
def test_it_equals_the_fold_path_call_after_call(q_len):
    x = _cache(q_len=q_len)
    folds = lowrank.lowrank_plan(**x, **KNOBS, folds=True)
    assert folds.folds
    solo = lowrank.lowrank_plan(**x, **KNOBS)
    solo.solo = True
    assert solo.solo and solo.splits > 1
    want = folds.run().clone()
    for _ in range(2):  # the scratch (A, H, O, QBD) is rewritten, not accumulated
        torch.testing.assert_close(solo.run(), want, rtol=2e-5, atol=2e-5)


def test_kept_slots_number_each_heads_kept_dimensions():
    slots = kept_slots([1, 3, 4, 6, 7], hkv=2, d=4)  # head 0 keeps dims 1, 3; head 1 dims 0, 2, 3
    assert slots.tolist() == [[-1, 0, -1, 1], [0, -1, 1, 2]]


def test_heads_per_row_block_counts_a_partial_head_at_either_end():
    assert heads_per_row_block(32, 4, 16) == 4  # LLaMA-3-8B: 4 whole heads a block
    assert heads_per_row_block(12, 3, 16) == 4  # one block of 12 rows
    assert heads_per_row_block(30, 6, 16) == 3  # rows 0..15: heads 0, 1, 2 (the last in part)
    assert heads_per_row_block(64, 32, 16) == 1  # a head's rows over two blocks


def test_the_rule_takes_it_on_a_gpu_where_the_folds_would_be_taken():
    assert solo_by_default(True, True, None, False, True, 1)  # 1 x 32k and 1 x 128k on an H100
    assert not solo_by_default(False, True, None, False, True, 1)  # SOLO off
    assert not solo_by_default(True, False, None, False, True, 1)  # the interpreter: asked for only
    assert not solo_by_default(True, True, True, False, True, 1)  # folds set: that path asked for
    assert not solo_by_default(True, True, None, True, True, 1)  # the rebuilt rows (1 x 4k)
    assert not solo_by_default(True, True, None, False, False, 1)  # batch 2 and up, or a path without folds
    assert not solo_by_default(True, True, None, False, True, 2)  # a V window in two slices


def test_a_plan_takes_it_only_when_asked_off_a_gpu_and_names_a_wide_window():
    x = _cache()
    assert not lowrank.lowrank_plan(**x, **KNOBS).solo  # the interpreter's plans: asked for only
    plan = lowrank.lowrank_plan(**x, **KNOBS)
    plan.solo = True
    plan.solo = False
    assert not plan.solo
    plan.v_slices = 2  # a V window wider than one slice
    with pytest.raises(ValueError, match="solo needs each row block's V window in one slice"):
        plan.solo = True
