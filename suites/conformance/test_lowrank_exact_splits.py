"""The low-rank kernel's sinks and window run in `esplits` programs per KV head (ESPLITS on a GPU, swept there), in
their own launch or in the query products' (`qx_fused`); every split count, including more than there are tiles
(capped) and splits left empty, must give the reference's output, and setting it must remake the partial
statistics' scratch."""
from __future__ import annotations

import pytest
import torch

import optimized.triton_fourier_lowrank as lowrank
from optimized.triton_fourier_lowrank import lowrank_plan
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_impl, get_op


@pytest.mark.parametrize("qx_fused", [True, False], ids=["in_the_query_products_launch", "own_launch"])
@pytest.mark.parametrize("seed", [3, 4])
def test_every_split_of_the_exact_tokens_gives_the_reference_output(seed, qx_fused):
    """In their own launch (`_exact_kernel`) and in the query products' (`_query_products_exact_kernel`)."""
    # 4 sinks + 70 window tokens: 5 tiles of 16 (block_t in the interpreter); 4 splits of 2 tiles leave the last empty
    x = make_fourier_cache(2, 4, 2, 16, 220, 20, k_fraction=0.5, v_fraction=0.5, n_init=4, n_local=70,
                           dtype=torch.float32, device="cpu", seed=seed)
    want = get_impl("fourier_decode_attention", "coefficients")(**x)
    tiles = -(-x["k_exact"].shape[2] // 16)
    for splits in (1, 4, 64):
        plan = lowrank_plan(**x)
        plan.esplits, plan.qx_fused = splits, qx_fused
        assert plan.exact_in_phase_1 == qx_fused
        assert plan.esplits == min(splits, tiles)
        assert plan.maxe.shape[0] == plan.b * plan.hkv * plan.esplits
        torch.testing.assert_close(plan.run(), want, atol=2e-5, rtol=2e-5, msg=lambda m: f"esplits {splits}: {m}")


# a varlen batch of three periods (three table groups) whose first middle is one token and whose sinks and window
# differ per sequence
VARLEN = {"batch": 3, "kv_heads": 2, "group": 2, "head_dim": 16, "q_len": 1, "n_init": 2, "n_locals": [5, 9, 3],
          "mid_lens": [1, 17, 40], "periods": [1, 20, 48], "num_freqs": 6, "k_fraction": 0.5, "v_fraction": 0.5,
          "kept_align": 1, "seed": 5}


@pytest.mark.parametrize("v_gemm", [False, True], ids=["v_loop", "v_gemm"])
@pytest.mark.parametrize("varlen", [False, True], ids=["uniform", "varlen"])
def test_the_exact_tokens_merged_in_the_output_give_the_reference_output(varlen, v_gemm):
    """`exact_side`: `_merge_kernel` normalizes H to the middle alone and `_output_kernel` merges the exact splits in
    (on a GPU the sinks and window then run on a side stream beside phase 4). Every form of the compressed V channels
    (the output's loop or chunks, v_gemm's sums) must scale by the middle's share of the softmax."""
    if varlen:
        op = "fourier_decode_attention_varlen"
        x = get_op(op).make_inputs(VARLEN, torch.float32, torch.device("cpu"))
        make = lowrank.varlen_lowrank_plan
    else:
        op = "fourier_decode_attention"
        x = make_fourier_cache(2, 4, 2, 16, 220, 20, k_fraction=0.5, v_fraction=0.5, n_init=4, n_local=70,
                               dtype=torch.float32, device="cpu", seed=6)
        make = lowrank.lowrank_plan
    want = get_impl(op, "coefficients")(**x)
    outs = {}
    for side in (False, True):
        plan = make(**x)
        plan.exact_side, plan.v_gemm = side, v_gemm
        assert not plan.exact_in_phase_1 if side else plan.exact_in_phase_1 == (plan.qx_fused and plan.ck > 0)
        outs[side] = plan.run().clone()
        # the merge left the middle's own statistics (its mass is then 1), or the whole softmax's (less than 1)
        mass = plan.mid.view(-1)
        assert bool((mass == 1).all()) if side else bool(((mass > 0) & (mass < 1)).all()), mass
    for side, out in outs.items():
        torch.testing.assert_close(out, want, atol=2e-5, rtol=2e-5, msg=lambda m: f"exact_side {side}: {m}")
    torch.testing.assert_close(outs[True], outs[False], atol=2e-6, rtol=2e-6)
