"""The low-rank kernel's GPU sweep (ci/tune_fourier_lowrank.py) and profiler (`--attrs`) set plan attributes by
name: every name the sweep lists is one the plan has, and a misspelt or removed one is refused instead of silently
timing the default under its name."""
from __future__ import annotations

import argparse
import os

import pytest
import torch

import ci.tune_fourier_lowrank as tune
from ci.tune_fourier_lowrank import (COMBINE_MIN_US, CONSTRUCTOR, QUICK_SHAPES, SHAPES, combined, parse_shapes,
                                  shaped_plan, timed_row)
from optimized.triton_fourier_lowrank import lowrank_plan
from reference.ops.fourier_cache import make_fourier_cache


@pytest.fixture(scope="module")
def cache():
    return make_fourier_cache(1, 4, 2, 16, 96, 12, k_fraction=0.5, v_fraction=0.5, n_init=2, n_local=8,
                              dtype=torch.float32, device="cpu", seed=int.from_bytes(os.urandom(4), "little"))


@pytest.mark.parametrize("shapes", SHAPES + QUICK_SHAPES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or
                         "default")
def test_every_listed_shape_sets_an_attribute_the_plan_has(cache, shapes):
    default = lowrank_plan(**cache)
    missing = [name for name in shapes if name not in CONSTRUCTOR and not hasattr(default, name)]
    assert not missing, f"the sweep lists attributes the low-rank plan lacks: {missing}"
    shaped_plan(shapes)(**cache)  # and the plan takes the values


@pytest.mark.parametrize("name", ["merged_planes", "vo_fuse"])
def test_a_name_the_plan_lacks_is_refused(cache, name):
    with pytest.raises(AttributeError, match=repr(name)):
        shaped_plan({name: True})(**cache)


def test_combined_takes_each_names_best_value_that_beat_the_slower_default():
    """`combined`: per name, the fastest value that beat the slower of the two default rows by more than
    COMBINE_MIN_US; a name that did not, or a run where one name alone did, gives no combination."""
    base = 50.0 + float(torch.rand(()))  # drawn times, so the rule is checked rather than one table
    row = lambda us, **shape: {"batch": 1, "context": 4096, "block_t": 64, **shape, "us": us}  # noqa: E731
    rows = [row(base), row(base - 0.2), row(base - 3, fold_block_n=32), row(base - 4, fold_block_n=64),
            row(base - 1, pdl=True), row(base - COMBINE_MIN_US / 2, merge_warps=8), row(base + 2, esplits=8),
            {"batch": 1, "context": 4096, "qp_warps": 2, "error": "OutOfResources"}]
    assert combined(rows) == {"fold_block_n": 64, "pdl": True}
    assert combined([r for r in rows if "pdl" not in r]) == {}  # one name alone: nothing to combine
    assert combined([r for r in rows if len(r) > 4]) == {}  # no default row timed


def test_shapes_on_the_command_line_are_a_json_list_of_objects(cache):
    shapes = parse_shapes('[{}, {"fold_precs": ["bf16", "bf16"], "out_warps": 8}]')
    assert shapes == [{}, {"fold_precs": ("bf16", "bf16"), "out_warps": 8}]
    assert shaped_plan(shapes[1])(**cache).fold_precs == ("bf16", "bf16")  # the list became the tuple a plan takes
    for bad in ('{"out_warps": 8}', "[{out_warps: 8}]", "[1]"):
        with pytest.raises(argparse.ArgumentTypeError, match="--shapes"):
            parse_shapes(bad)


def test_a_timed_row_records_the_time_or_the_error_of_its_plan(cache, monkeypatch, capsys):
    """`timed_row`: the time of the plan its shapes make, printed after its label; a plan that does not build is a
    row with the error, not a stopped sweep. (graph_ms needs CUDA: here a stand-in runs the plan on each set.)"""
    ms = float(torch.rand(())) + 0.5
    calls = []
    monkeypatch.setattr(tune, "graph_ms", lambda run, sets: calls.extend(run(x) for x in sets) or ms)
    row = timed_row("1x96 out_warps 8", {"batch": 1}, shaped_plan({"out_warps": 8}), {}, [cache, cache])
    assert row == {"batch": 1, "us": 1000 * ms} and len(calls) == 2
    assert capsys.readouterr().out == f"1x96 out_warps 8: {1000 * ms:.1f} us\n"
    row = timed_row("bad", {"batch": 1}, shaped_plan({"vo_fuse": True}), {}, [cache])
    assert "us" not in row and row["error"].startswith("AttributeError") and "vo_fuse" in row["error"]
    assert capsys.readouterr().out == ""
