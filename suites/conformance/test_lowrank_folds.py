"""The low-rank kernel's coefficient folds (optimized/lowrank_folds.py): FoldK and FoldV reproduce the two products
over frequencies they replace (float64, drawn inputs), the fold path conforms wherever it runs (uniform and varlen,
float32 and float16, the magnitude-1000 varlen case), and the plan takes it only where its path allows and at
batch 1 by default."""
from __future__ import annotations

import os

import pytest
import torch

import optimized.triton_fourier_lowrank as lowrank
import ci.lowrank_f32_coefs as f32_coefs
from ci.lowrank_f32_coefs import uniform_folds, varlen_folds
from harness.kernels.conformance import check_case
from optimized.lowrank_folds import k_fold, k_fold_dims, stored_fold, v_fold
from reference.ops.fourier_cache import make_fourier_cache

KNOBS = {"block_t": 16, "block": 32, "num_splits": 2}
UNIFORM = {"batch": 2, "kv_heads": 2, "group": 2, "head_dim": 16, "q_len": 1, "n_init": 2, "n_local": 9,
           "mid_len": 150, "period": 160, "num_freqs": 24, "k_fraction": 0.5, "v_fraction": 0.5, "seed": 4}
# three periods (three table groups), inputs of magnitude 1000: the float16 case closest to its tolerance
LARGE = {"batch": 3, "kv_heads": 2, "group": 2, "head_dim": 8, "q_len": 1, "n_init": 0, "n_locals": [1, 30, 7],
         "mid_lens": [1, 33, 12], "periods": [1, 40, 12], "num_freqs": 5, "v_num_freqs": 2, "k_fraction": 0.5,
         "v_fraction": 0.5, "kept_align": 1, "score_offset": None, "magnitude": 1000.0, "seed": 1}


@pytest.fixture
def v_gemm_everywhere(monkeypatch):
    """Plans with float32 V coefficients sum the V products as GEMMs in the interpreter too (the GPU's path), the
    folds' prerequisite."""
    monkeypatch.setattr(lowrank, "v_gemm_for", lambda batch, gpu, coefs: coefs == torch.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_fold_gives_a_as_the_query_spectrum_times_w_k(seed):
    g = torch.Generator().manual_seed(seed)
    rows, chans, nz, m = 3, 5, 7, 6
    qs = torch.randn(rows, chans, generator=g, dtype=torch.float64)
    k_cos, k_sin = (torch.randn(1, chans, nz + 2, generator=g, dtype=torch.float64) for _ in range(2))
    w_k = torch.randn(nz, m, 2, generator=g, dtype=torch.float64)
    w_k = torch.view_as_complex(w_k)
    z = (qs @ k_cos[0, :, :nz]) - 1j * (qs @ k_sin[0, :, :nz])  # Z_n without the n = 0 term's special handling
    a = torch.view_as_real(z @ w_k).flatten(1)  # re, im interleaved per rank entry
    torch.testing.assert_close(qs @ k_fold(k_cos, k_sin, w_k)[0], a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_v_fold_gives_the_channel_sums_of_the_planes(seed):
    g = torch.Generator().manual_seed(seed)
    rows, chans, cols, width, nv = 4, 6, 10, 8, 7  # N_v < width: the table's columns past it meet no coefficient
    h = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    table = torch.randn(cols, 2 * width, generator=g, dtype=torch.float64)
    v_cos, v_sin = (torch.randn(1, chans, nv, generator=g, dtype=torch.float64) for _ in range(2))
    planes = h @ table
    sums = planes[:, :nv] @ v_cos[0].T - planes[:, width:width + nv] @ v_sin[0].T
    torch.testing.assert_close(h @ v_fold(v_cos, v_sin, table)[0].T, sums, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("op,fn,case", [("fourier_decode_attention", uniform_folds, UNIFORM),
                                        ("fourier_decode_attention_varlen", varlen_folds, LARGE)],
                         ids=["uniform", "varlen-magnitude-1000"])
def test_the_fold_path_conforms(op, fn, case, dtype, v_gemm_everywhere):
    res = check_case(op, fn, case, dtype, knobs=KNOBS)
    assert res.passed, res.message


@pytest.mark.parametrize("precs", ["kv16", "k32"])
@pytest.mark.parametrize("op,layout,case", [("fourier_decode_attention", "uniform", UNIFORM),
                                            ("fourier_decode_attention_varlen", "varlen", LARGE)],
                         ids=["uniform", "varlen-magnitude-1000"])
def test_the_gpu_wrappers_of_other_fold_precisions_conform_in_float16(op, layout, case, precs, v_gemm_everywhere):
    """The wrappers the GPU conformance runs for fold precisions other than the default (ci/lowrank_f32_coefs.py)."""
    res = check_case(op, getattr(f32_coefs, f"{layout}_folds_{precs}"), case, torch.float16, knobs=KNOBS)
    assert res.passed, res.message


def test_the_fold_path_equals_the_gemm_path_in_float32(v_gemm_everywhere):
    """Same A and the same channel sums, only summed in another order: the outputs agree to float32 rounding."""
    x = make_fourier_cache(2, 4, 2, 16, 150, 24, n_init=2, n_local=9, dtype=torch.float32, device="cpu", seed=5,
                           k_fraction=0.5, v_fraction=0.5)
    plain = lowrank.lowrank_plan(**x, **KNOBS, folds=False)
    folded = lowrank.lowrank_plan(**x, **KNOBS, folds=True)
    assert folded.folds and not plain.folds and not folded.a_split
    torch.testing.assert_close(folded.run(), plain.run(), rtol=2e-5, atol=2e-6)


def test_folds_only_where_the_path_allows_and_at_batch_one(v_gemm_everywhere, monkeypatch):
    one = make_fourier_cache(1, 4, 2, 16, 120, 12, n_init=2, n_local=10, dtype=torch.float32, device="cpu", seed=6)
    two = make_fourier_cache(2, 4, 2, 16, 120, 12, n_init=2, n_local=10, dtype=torch.float32, device="cpu", seed=6)
    assert lowrank.lowrank_plan(**one).folds  # FOLDS_MAX_BATCH 1
    assert not lowrank.lowrank_plan(**two).folds
    assert lowrank.lowrank_plan(**two, folds=True).folds
    made, real = [], lowrank.LowRankPlan.fold_tensors  # a one-off call of the op makes no folds unless asked for:
    monkeypatch.setattr(lowrank.LowRankPlan, "fold_tensors", lambda self: made.append(1) or real(self))  # one step
    lowrank.fourier_decode_attention_lowrank(**one, **KNOBS)
    assert not made
    lowrank.fourier_decode_attention_lowrank(**one, **KNOBS, folds=True)
    assert made
    plan = lowrank.lowrank_plan(**one)
    plan.vo_fused = False  # the V sums out of the output's launch: no folds, A split again
    assert not plan.folds and plan.a_split
    plan = lowrank.lowrank_plan(**one)
    plan.qs_gemm = False  # the query spectrum kernel's Z: no prologue to take A, no folds
    assert not plan.folds and not plan.a_split


def test_folds_are_stored_in_float32_and_a_bad_switch_is_named():
    fold = torch.randn(1, 3, 8, dtype=torch.float64)
    assert stored_fold(fold, "tf32", True).dtype == torch.float32
    assert stored_fold(fold, "bf16", True).dtype == torch.bfloat16
    assert torch.equal(stored_fold(fold, "bf16", False), fold.float().to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="fold precision"):
        stored_fold(fold, "fp8", False)
    x = make_fourier_cache(1, 4, 2, 16, 120, 12, n_init=2, n_local=10, dtype=torch.float32, device="cpu", seed=6)
    with pytest.raises(ValueError, match="folds"):
        lowrank.lowrank_plan(**x, folds="yes")
    with pytest.raises(ValueError, match="folds"):  # the op's one-off default does not swallow a bad value
        lowrank.fourier_decode_attention_lowrank(**x, folds="yes")


def test_foldk_in_bfloat16_by_default_foldv_in_tf32_and_both_still_conform(v_gemm_everywhere):
    """For bfloat16 GEMMs the default takes FoldK in bfloat16 and, for float16 inputs, FoldV in TF32 (both in
    bfloat16 failed the float16 tolerances on an H100, and passed the bfloat16 ones); `fold_precs` sets either,
    and the interpreter holds a bfloat16 fold as float32 values rounded to bfloat16; a bad precision is named."""
    x = make_fourier_cache(1, 4, 2, 16, 150, 24, n_init=2, n_local=9, dtype=torch.float16, device="cpu", seed=7,
                           k_fraction=0.5, v_fraction=0.5)
    plan = lowrank.lowrank_plan(**x, **KNOBS)
    assert plan.folds and plan.gemm_precs == ("bf16", "bf16") and plan.fold_precs == ("bf16", "tf32")
    fk, fv = plan.fold_tensors()
    assert torch.equal(fk, fk.to(torch.bfloat16).float())  # rounded to bfloat16
    assert not torch.equal(fv, fv.to(torch.bfloat16).float())  # kept in float32
    bf16_k = plan.run().float().clone()
    plan.fold_precs = ("tf32", "tf32")
    assert not torch.equal(plan.fold_tensors()[0], fk)  # made again, unrounded
    torch.testing.assert_close(plan.run().float(), bf16_k, rtol=2e-2, atol=2e-2)
    assert lowrank.lowrank_plan(**dict(x, q=x["q"].float()), **KNOBS).fold_precs == ("ieee", "ieee")
    assert lowrank.lowrank_plan(**dict(x, q=x["q"].bfloat16()), **KNOBS).fold_precs == ("bf16", "bf16")
    with pytest.raises(ValueError, match="fold_precs"):
        plan.fold_precs = ("bf16", "fp8")


@pytest.mark.parametrize("shapes", [{"fold_block_n": 16}, {"fold_merge_cols": 16}, {"merge_warps": 2},
                                    {"fold_block_n": 32, "fold_merge_cols": 64, "merge_warps": 8}],
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_the_fold_paths_launch_shapes_leave_the_output_unchanged(v_gemm_everywhere, shapes):
    """The sweep's fold-path shapes (A's columns per fold program, H's columns and warps per merge program) only
    regroup the same products: float32 outputs agree with the default plan's to rounding, on drawn caches."""
    seed = int.from_bytes(os.urandom(4), "little")
    x = make_fourier_cache(1, 4, 2, 16, 300, 24, n_init=2, n_local=9, dtype=torch.float32, device="cpu", seed=seed,
                           k_fraction=0.5, v_fraction=0.5)
    plain = lowrank.lowrank_plan(**x, **KNOBS)
    shaped = lowrank.lowrank_plan(**x, **KNOBS)
    for name, value in shapes.items():
        setattr(shaped, name, value)
    assert plain.folds and shaped.folds
    if "fold_merge_cols" in shapes:  # more merge programs than the default, so more partial sums
        assert shaped.fold_merge_blocks < plain.fold_merge_blocks
    torch.testing.assert_close(shaped.run(), plain.run(), rtol=2e-5, atol=2e-6, msg=lambda m: f"seed {seed}: {m}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_foldk_by_dimension_gives_a_and_re_z0_from_the_query_as_it_is(seed):
    """q @ FoldK_dims = (q_c s_c / T) @ FoldK over the compressed channels, and q . z = sum_c q_c mu_c +
    sum_c (q_c s_c / T) a_{c,0} (eq. scores): kept dimensions contribute nothing."""
    g = torch.Generator().manual_seed(seed)
    seqs, channels, cols = 2, 12, 5
    comp = torch.sort(torch.randperm(channels, generator=g)[:7]).values
    fold = torch.randn(seqs, len(comp), cols, generator=g, dtype=torch.float64)
    scale, shift, a0 = (torch.randn(seqs, len(comp), generator=g, dtype=torch.float64) for _ in range(3))
    periods = torch.tensor([40, 17])
    q = torch.randn(seqs, 3, channels, generator=g, dtype=torch.float64)
    rows, z = k_fold_dims(fold, comp, scale, shift, a0, periods, channels)
    qs = q[:, :, comp] * (scale / periods[:, None])[:, None, :]
    torch.testing.assert_close(q @ rows, qs @ fold, rtol=1e-12, atol=1e-12)
    z0 = (q[:, :, comp] * shift[:, None, :]).sum(-1) + (qs * a0[:, None, :]).sum(-1)
    torch.testing.assert_close((q * z[:, None, :]).sum(-1), z0, rtol=1e-12, atol=1e-12)
    kept = torch.ones(channels, dtype=torch.bool)
    kept[comp] = False
    assert (rows[:, kept] == 0).all() and (z[:, kept] == 0).all()
