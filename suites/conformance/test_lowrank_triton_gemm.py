"""The low-rank kernel's real table products as a Triton GEMM (`optimized.triton_gemm.gemm_into`): A = [U_c; U_s]
W_K and v_gemm's planes H @ table, with tiles a sweep chooses (A_TILES, PLANES_TILES; the interpreter always takes
them). It must equal a float64 product in "ieee" and the TF32-cut product in "tf32", on any fold of leading dims and
any partial tile, leave alone what it cannot fold, and give the plan the same A and planes as cuBLAS."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given

import optimized.triton_fourier_lowrank as lowrank
from optimized.triton_gemm import gemm_into, rows_2d
from optimized.triton_fourier_lowrank import tf32_truncated
from reference.ops.fourier_cache import make_fourier_cache
from suites.strategies import gemm_cases, seeds


@given(case=gemm_cases(), seed=seeds())
def test_the_gemm_equals_a_float64_product(case, seed):
    """x's last dim sliced from a wider buffer (a row stride past K), out filled with NaN first: every entry of out
    is written and none of x's slack is read."""
    lead, k, n, tiles = case
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(*lead, k + 3, generator=g)
    wide[..., k:] = float("nan")
    x, w = wide[..., :k], torch.randn(k, n, generator=g)
    out = torch.full((*lead, n), float("nan"))
    assert gemm_into(x, w, out, "ieee", tiles)
    want = (x.double() @ w.double()).float()
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5 * k ** 0.5)


@given(case=gemm_cases(), seed=seeds())
def test_tf32_cuts_both_operands_as_the_tensor_cores_would(case, seed):
    lead, k, n, tiles = case
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(*lead, k, generator=g), torch.randn(k, n, generator=g)
    out = torch.empty(*lead, n)
    assert gemm_into(x, w, out, "tf32", tiles)
    want = tf32_truncated(x).double() @ tf32_truncated(w).double()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5 * k ** 0.5)


def test_tf32_is_honoured_not_ignored():
    g = torch.Generator().manual_seed(7)
    x, w = torch.randn(40, 64, generator=g), torch.randn(64, 48, generator=g)
    outs = {p: torch.empty(40, 48) for p in ("ieee", "tf32")}
    for p, out in outs.items():
        assert gemm_into(x, w, out, p, (16, 16, 32, 4, 1))
    assert (outs["tf32"] - outs["ieee"]).abs().max() > 1e-4  # TF32 keeps 10 mantissa bits of float32's 23


def test_leading_dims_that_do_not_fold_are_left_to_the_caller():
    x = torch.randn(4, 6, 8).transpose(0, 1)  # [6, 4, 8]: rows of dim 0 are not evenly strided with dim 1
    assert rows_2d(x) is None
    out = torch.full((6, 4, 5), 7.0)
    assert not gemm_into(x, torch.randn(8, 5), out, "ieee", (16, 16, 16, 4, 1))
    assert out.eq(7.0).all()


@pytest.mark.parametrize("bad,match", [
    (dict(prec="tf16"), "prec must be one of"),
    (dict(tiles=(16, 16, 16, 4)), "tiles must be"),
    (dict(tiles=(16, 24, 16, 4, 1)), "block_n"),
    (dict(tiles=(16, 16, 16, 0, 1)), "num_warps"),
    (dict(w=torch.randn(8, 5, dtype=torch.float64)), "w must be float32"),
    (dict(w=torch.randn(7, 5)), "do not make out = x @ w"),
])
def test_bad_arguments_are_named_before_any_launch(bad, match):
    args = dict(x=torch.randn(3, 8), w=torch.randn(8, 5), out=torch.full((3, 5), 7.0), prec="ieee",
                tiles=(16, 16, 16, 4, 1))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        gemm_into(**args)
    assert args["out"].eq(7.0).all()


@pytest.mark.parametrize("seed", [11, 12])
def test_the_plan_gets_the_same_a_and_planes_from_triton_and_cublas(seed):
    """Float32, one period: A (the GEMM path's two products) and the planes from the Triton tiles equal cuBLAS's."""
    x = make_fourier_cache(3, 6, 3, 16, 200, 30, k_fraction=0.4, v_fraction=0.6, n_init=2, n_local=12,
                           dtype=torch.float32, device="cpu", seed=seed)
    runs = []
    for tiles in (None, (16, 32, 16, 4, 1)):
        plan = lowrank.lowrank_plan(**x)
        plan.qs_gemm, plan.v_gemm = True, True
        plan.a_tiles = plan.planes_tiles = tiles
        plan.run(upto=4)
        runs.append((plan.a.clone(), plan.planes.clone()))
    (a_ref, p_ref), (a, p) = runs
    assert a_ref.abs().max() > 0 and p_ref.abs().max() > 0
    torch.testing.assert_close(a, a_ref, rtol=1e-5, atol=1e-6 * float(a_ref.abs().max()))
    torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-6 * float(p_ref.abs().max()))
