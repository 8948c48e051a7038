"""The low-rank kernel's sinks and window run in `esplits` programs per KV head (ESPLITS on a GPU, swept there), in
their own launch or in the query products' (`qx_fused`); every split count, including more than there are tiles
(capped) and splits left empty, must give the reference's output, and setting it must remake the partial
statistics' scratch."""
from __future__ import annotations

import pytest
import torch

from optimized.triton_fourier_lowrank import lowrank_plan
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_impl


@pytest.mark.parametrize("qx_fused", [True, False], ids=["in_the_query_products_launch", "own_launch"])
@pytest.mark.parametrize("seed", [3, 4])
def test_every_split_of_the_exact_tokens_gives_the_reference_output(seed, qx_fused):
    """In their own launch (`_exact_kernel`) and in the query products' (`_prologue_kernel`)."""
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
