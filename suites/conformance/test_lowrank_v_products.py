"""The low-rank kernel sums the compressed V channels' frequencies in one of two places: in the output kernel, or
in chunks (`_v_products_kernel`) whose partial sums the output adds, chosen by how many programs the output alone
would have (`v_chunk_for`). Conformance runs the path the interpreter takes; here both paths, and chunks that do not
divide the frequencies, must give the reference's output."""
from __future__ import annotations

import pytest
import torch

from optimized.triton_fourier_lowrank import V_CHUNK, lowrank_plan, v_chunk_for
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_impl


@pytest.mark.parametrize("seed", [1, 2])
def test_every_chunking_of_the_v_products_gives_the_reference_output(seed):
    # 40 V frequencies: one chunk of 64, three of 16 (the last short); 3 KV heads of 32 channels, 160 middle tokens
    x = make_fourier_cache(2, 6, 3, 32, 180, 40, k_fraction=0.6, v_fraction=0.7, n_init=4, n_local=16,
                           dtype=torch.float32, device="cpu", seed=seed)
    want = get_impl("fourier_decode_attention", "coefficients")(**x)
    for chunk in (0, 16, 64):
        plan = lowrank_plan(**x)
        plan.v_chunk = chunk
        torch.testing.assert_close(plan.run(), want, atol=2e-5, rtol=2e-5, msg=lambda m: f"v_chunk {chunk}: {m}")


def test_chunks_only_while_the_output_alone_leaves_sms_idle():
    assert v_chunk_for(64, 132) == V_CHUNK and v_chunk_for(512, 132) == 0 and v_chunk_for(132, 132) == 0
    assert v_chunk_for(10**6, None) == V_CHUNK  # the interpreter runs the chunked path
