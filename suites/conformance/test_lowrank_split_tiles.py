"""The merge and both outputs (with the folds and without) read every split count as whole tiles
(optimized/lowrank_split_tiles.py), and the fold path's output takes its channels as slots of each KV head's kept and
compressed runs (optimized/lowrank_fold_output.py): tiles capped below the split and part counts (so the unrolled
later steps run) must give the reference's output, and the slot tables must list each head's channels in order,
once each."""
from __future__ import annotations

import os

import pytest
import torch

import optimized.lowrank_fold_output as fold_output
import optimized.triton_fourier_lowrank as lowrank
from optimized.lowrank_split_tiles import tile_steps
from reference.ops.fourier_cache import make_fourier_cache
from reference.registry import get_impl

KNOBS = {"block_t": 16, "block": 32, "num_splits": 5}


@pytest.fixture
def v_gemm_everywhere(monkeypatch):
    """Plans with float32 V coefficients take the fold path in the interpreter too (its prerequisite)."""
    monkeypatch.setattr(lowrank, "v_gemm_for", lambda batch, gpu, coefs: coefs == torch.float32)


def test_tile_steps_cover_every_split_in_the_fewest_power_of_two_tiles():
    for n in range(1, 300):
        for cap in (2, 32, 64, 128):
            block, steps = tile_steps(n, cap)
            assert block & (block - 1) == 0 and block <= cap
            assert (steps - 1) * block < n <= steps * block
            assert block >= min(n, cap)


@pytest.mark.parametrize("cap", [1, 2, 4], ids=lambda c: f"tiles_of_{c}")
def test_tiles_smaller_than_the_split_and_part_counts_give_the_reference_output(cap, v_gemm_everywhere, monkeypatch):
    """5 middle splits, 2 exact splits and 9 merge parts, read `cap` at a time: 2-9 unrolled steps per sum, where
    the default reads each in one. A later step left out (or read twice) moves the output by the splits' weight."""
    seed = int.from_bytes(os.urandom(4), "little")
    x = make_fourier_cache(1, 4, 2, 16, 320, 20, n_init=2, n_local=40, k_fraction=0.5, v_fraction=0.5,
                           dtype=torch.float32, device="cpu", seed=seed)
    want = get_impl("fourier_decode_attention", "coefficients")(**x)
    plan = lowrank.lowrank_plan(**x, **KNOBS)
    plan.fold_merge_cols = 32  # one block per merge program: as many partial sums as blocks
    assert plan.folds and plan.splits == 5 and plan.esplits == 2 and plan.merge_parts == 9
    monkeypatch.setattr(lowrank, "OUT_TILE_SPLITS", 2 * cap)  # the parts' tiles are half the splits' cap
    monkeypatch.setattr(lowrank, "MERGE_TILE_SPLITS", cap)
    torch.testing.assert_close(plan.run(), want, atol=2e-5, rtol=2e-5, msg=lambda m: f"seed {seed}: {m}")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_output_tables_list_each_heads_channels_as_its_slots(seed):
    g = torch.Generator().manual_seed(seed)
    hkv, d = 3, 8
    kept_mask = torch.rand(hkv * d, generator=g) < 0.4
    kept_mask[d:2 * d] = seed % 2 == 0  # one head all kept or all compressed
    kept = torch.nonzero(kept_mask).flatten().tolist()
    comp = torch.nonzero(~kept_mask).flatten().tolist()
    kdim, cdim, cidx = fold_output.output_tables(kept, comp, hkv, d, 4, 8, "cpu")
    assert kdim.shape[1] % 4 == 0 and cdim.shape[1] % 8 == 0 and cidx.shape == cdim.shape
    for h in range(hkv):
        own_k = [c - h * d for c in kept if c // d == h]
        own_c = [(i, c - h * d) for i, c in enumerate(comp) if c // d == h]
        assert kdim[h, :len(own_k)].tolist() == own_k and (kdim[h, len(own_k):] == -1).all()
        assert cdim[h, :len(own_c)].tolist() == [c for _, c in own_c] and (cdim[h, len(own_c):] == -1).all()
        assert cidx[h, :len(own_c)].tolist() == [i for i, _ in own_c]


@pytest.mark.parametrize("v_gemm", [False, True], ids=["spectrum", "v_sums_in_output"])
@pytest.mark.parametrize("cap", [1, 2, 4], ids=lambda c: f"tiles_of_{c}")
def test_the_output_without_folds_reads_its_splits_in_capped_tiles(cap, v_gemm, monkeypatch):
    """The output as batch 2 and up take it (no folds) merges the exact and middle splits in tiles too
    (OUT_KEPT_TILE_SPLITS): 5 middle and 2 exact splits read `cap` at a time, for the kept channels and, with the V
    sums in the output's launch (v_gemm, vo_fused), for the compressed channels' exact share."""
    monkeypatch.setattr(lowrank, "v_gemm_for", lambda batch, gpu, coefs: v_gemm and coefs == torch.float32)
    seed = int.from_bytes(os.urandom(4), "little")
    x = make_fourier_cache(1, 4, 2, 16, 320, 20, n_init=2, n_local=40, k_fraction=0.5, v_fraction=0.5,
                           dtype=torch.float32, device="cpu", seed=seed)
    want = get_impl("fourier_decode_attention", "coefficients")(**x)
    plan = lowrank.lowrank_plan(**x, **KNOBS)
    plan.folds = False
    plan.vo_fused = v_gemm
    assert not plan.folds and plan.v_gemm == v_gemm and plan.splits == 5 and plan.esplits == 2
    monkeypatch.setattr(lowrank, "OUT_KEPT_TILE_SPLITS", cap)
    torch.testing.assert_close(plan.run(), want, atol=2e-5, rtol=2e-5, msg=lambda m: f"seed {seed}: {m}")
