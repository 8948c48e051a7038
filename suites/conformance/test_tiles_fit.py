"""The token-major kernel's tile setting fitted to the call's query rows and the GPU's shared memory
(optimized/tiles_fit.py). On an H100 the varlen op's gpu-profile conformance raised for a call with 20 query rows
per KV head: the tuned range, measured at 4 rows, asked for 1.1 MB of shared memory (built offline for sm_90)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import optimized.triton_fourier_tiles as tiles
from optimized.tiles_fit import MIN_PAIRS, TUNED_ROWS, Setting, fit_setting, smaller, tuned_range
from reference.registry import get_op

POW2 = st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128])


def _model(rows: int, elem: int = 2):
    """A shared-memory model shaped like the fused pass's (operands of [pairs, block_t] per stage)."""
    return lambda s: rows * s.range_t * s.block_t * elem * (s.num_stages + 1)


@given(range_t=POW2, rows=POW2)
def test_tuned_range_keeps_the_tuned_pairs(range_t, rows):
    got = tuned_range(range_t, rows)
    assert rows * got >= MIN_PAIRS
    # never more pairs than tuned nor more tiles, unless the minimum needs them; with more rows than tuned exactly
    # the tuned pairs where they divide, with fewer the tuned tiles
    assert rows * got <= max(range_t * TUNED_ROWS, MIN_PAIRS, rows)
    assert got <= range_t or rows * got <= max(MIN_PAIRS, rows)
    if range_t * TUNED_ROWS >= MIN_PAIRS and range_t * TUNED_ROWS % rows == 0:
        assert rows * got == range_t * TUNED_ROWS if rows >= TUNED_ROWS else got == max(range_t, -(-MIN_PAIRS // rows))


@given(block_t=st.sampled_from([16, 32, 64, 128]), range_t=POW2, stages=st.integers(1, 4),
       rows=st.sampled_from([1, 4, 8, 32]), limit=st.integers(1_000, 400_000))
def test_fit_takes_the_first_setting_that_fits_in_order(block_t, range_t, stages, rows, limit):
    range_t = max(range_t, -(-MIN_PAIRS // rows))
    start, need = Setting(block_t, range_t, stages), _model(rows)
    order = [start]
    while (nxt := smaller(order[-1], rows)) is not None:
        order.append(nxt)
    # the order: pipelining depth first, then the range (pairs kept >= MIN_PAIRS), then the tile
    assert all(rows * s.range_t >= min(MIN_PAIRS, rows * range_t) and s.block_t >= 16 for s in order)
    assert [need(s) for s in order] == sorted((need(s) for s in order), reverse=True)
    fitting = [s for s in order if need(s) <= limit]
    if fitting:
        assert fit_setting(start, rows, need, limit) == fitting[0]
    else:
        with pytest.raises(ValueError, match="no tile setting fits"):
            fit_setting(start, rows, need, limit)


def test_a_chosen_setting_is_refused_with_its_numbers_not_changed():
    need = _model(32, 4)
    with pytest.raises(ValueError, match=r"block_t=128, range_t=32, num_stages=3 .* 32 query rows .* allows 232448"):
        fit_setting(Setting(128, 32, 3), 32, need, 232448, chosen=True)
    assert fit_setting(Setting(32, 1, 1), 32, need, 232448, chosen=True) == Setting(32, 1, 1)


# The case that raised on the H100 (varlen op, gpu profile, seed 0): 20 query rows per KV head, 24 programs.
RAISED = {"batch": 3, "kv_heads": 8, "group": 4, "head_dim": 128, "q_len": 5, "n_init": 1, "n_locals": [64, 287, 13],
          "mid_lens": [496, 1447, 1807], "periods": [521, 1490, 1839], "num_freqs": 82, "v_num_freqs": 192,
          "k_fraction": 0.99999, "v_fraction": 0.9906533255069645, "kept_align": 1, "score_offset": None,
          "magnitude": 1.0, "seed": 47128}


def _gpu_plan(monkeypatch, tuned: dict) -> tiles.TilesPlan:
    """A CPU plan with a GPU's choices and `tuned` as this GPU's table entry."""
    monkeypatch.setattr(tiles, "tuned_knobs", lambda *a, **k: dict(tuned))
    x = get_op("fourier_decode_attention_varlen").make_inputs(RAISED, torch.float32, torch.device("cpu"))
    k = ("k_mid_kept", "k_kept_idx", "k_comp_idx", "k_cos", "k_sin", "k_scale", "k_shift")
    lens = torch.stack([x["exact_lens"], x["mid_lens"], x["periods"]], 1).to(torch.int32).contiguous()
    return tiles.TilesPlan(x["q"], x["k_exact"], x["v_exact"], tuple(x[n] for n in k),
                           tuple(x["v" + n[1:]] for n in k), x["k_mid_kept"].shape[1], x["periods"].tolist(), None,
                           None, None, None, None, None, lens=lens, compiled=True)


def test_the_tuned_range_is_scaled_to_the_calls_rows(monkeypatch):
    # the H100's entry nearest this call: 128-token tiles in 32-tile ranges, 8 warps (measured at 4 rows)
    plan = _gpu_plan(monkeypatch, {"block_t": 128, "range_t": 32, "num_warps": 8, "exact_splits": 4})
    assert plan.block_r == 32 and plan.range_t == 4 and plan.block_t == 128  # 128 (row, tile) pairs, as tuned
    assert plan.sc.shape[1] == 32 * 4 * 128


def test_the_plan_relays_its_buffers_for_the_setting_that_fits(monkeypatch):
    plan = _gpu_plan(monkeypatch, {"block_t": 128, "range_t": 32, "num_warps": 8, "exact_splits": 4})
    built = []

    class Kernel:  # stands in for the fused pass: its "build" needs the modelled shared memory of the launch's keys
        def warmup(self, *args, grid, **kw):
            built.append((grid, kw["BLOCK_T"], kw["RANGE_T"], kw["num_stages"]))
            shared = 32 * kw["RANGE_T"] * kw["BLOCK_T"] * 4 * (kw["num_stages"] + 1)
            return type("Compiled", (), {"metadata": type("Meta", (), {"shared": shared})})()

    monkeypatch.setitem(tiles.KERNELS, "fused", Kernel())
    monkeypatch.setattr(tiles, "shared_memory_limit", lambda device: 100_000)
    plan.fit_shared_memory(chosen=False)
    # 128 x 4 x 3 stages: 262144 > limit; 2 stages 196608; 1 stage 131072; then range 2: 65536 fits
    assert [b[1:] for b in built] == [(128, 4, 3), (128, 4, 2), (128, 4, 1), (128, 2, 1)]
    assert (plan.block_t, plan.range_t, plan.num_stages) == (128, 2, 1)
    assert plan.sc.shape[1] == 32 * 2 * 128 and plan.n_ranges == -(-1807 // 256)
    assert built[-1][0] == (3 * 8, plan.n_ranges + plan.exact_splits)


def test_only_a_chosen_tile_setting_is_refused_and_a_chosen_fold_is_kept(monkeypatch):
    """A fold given alone keeps the tuned tile setting (which may still step down) and wins over the tuned fold."""
    monkeypatch.setattr(tiles, "tuned_knobs", lambda *a, **k: {"block_t": 128, "range_t": 32, "num_warps": 8,
                                                                "exact_splits": 4, "fold": True})
    x = get_op("fourier_decode_attention_varlen").make_inputs(RAISED, torch.float32, torch.device("cpu"))
    k = ("k_mid_kept", "k_kept_idx", "k_comp_idx", "k_cos", "k_sin", "k_scale", "k_shift")
    lens = torch.stack([x["exact_lens"], x["mid_lens"], x["periods"]], 1).to(torch.int32).contiguous()
    seen = []
    monkeypatch.setattr(tiles.TilesPlan, "fit_shared_memory", lambda self, chosen: seen.append(chosen))
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda t: True))  # as a GPU plan would run its fit
    for knobs, chosen in (({"fold": False}, False), ({"num_stages": 2}, True)):
        plan = tiles.TilesPlan(x["q"], x["k_exact"], x["v_exact"], tuple(x[n] for n in k),
                               tuple(x["v" + n[1:]] for n in k), x["k_mid_kept"].shape[1], x["periods"].tolist(),
                               None, None, None, knobs.get("block_t"), None, None, lens=lens, compiled=True,
                               num_stages=knobs.get("num_stages"), fold=knobs.get("fold"))
        assert seen[-1] is chosen
        if "fold" in knobs:  # the tuned setting (range shortened to the tuned pairs), the caller's fold
            assert (plan.block_t, plan.range_t, plan.fold) == (128, 4, False)
    assert seen == [False, True]
