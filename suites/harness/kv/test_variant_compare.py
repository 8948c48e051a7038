"""A method variant against its default on the same cells: pairing, intervals and the sign test."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.kv.variant_compare import compare, markdown, parse_variant
from harness.stats import sign_test, wilson


def _rec(length, depth, value, variant=None, metric="exact_match", other=None, task="passkey"):
    mp = {"window": None, **(variant or {}), **(other or {})}
    return {"suite": "niah", "method": "fourier", "metric": metric, "value": value, "task": task,
            "params": {"length": length, "depth": depth, "method_params": mp}}


def test_cells_pair_by_everything_but_the_variant():
    rng = random.Random(7)
    base_vals = {(n, d): rng.random() < 0.7 for n in (1024, 2048) for d in (0.0, 0.5, 1.0)}
    records = []
    for (n, d), ok in base_vals.items():
        records.append(_rec(n, d, float(ok)))
        records.append(_rec(n, d, float(ok if d else not ok), {"period": "smooth"}))  # differs at depth 0 only
        records.append(_rec(n, d, 0.0, {"period": "pow2"}))  # another variant: never paired with smooth
        records.append(_rec(n, d, 1.0, other={"fractions": "per_layer"}))  # another default-less variant
    rows = compare(records, "niah", "fourier", {"period": "smooth"})
    assert [r.group for r in rows] == ["1024", "2048", "all"] and rows[-1].n == 6
    flips = [base_vals[(n, 0.0)] for n in (1024, 2048)]
    assert rows[-1].wins == sum(not f for f in flips) and rows[-1].losses == sum(flips)
    assert rows[-1].base == pytest.approx(sum(base_vals.values()) / 6)
    assert "period=smooth" in markdown(rows, {"period": "smooth"})


def test_tasks_with_the_same_parameters_are_different_cells():
    # RULER: every task runs at the same (length, trial); each task's score pairs with its own.
    records = [_rec(1024, 0.0, v, task=t, metric="score") for t, v in (("a", 0.2), ("b", 0.9))]
    records += [_rec(1024, 0.0, v, {"period": "smooth"}, task=t, metric="score") for t, v in (("a", 0.4), ("b", 0.7))]
    (row, total) = compare(records, "niah", "fourier", {"period": "smooth"})
    assert total.n == 2 and (total.wins, total.losses) == (1, 1)
    assert total.base == pytest.approx(0.55) and total.variant == pytest.approx(0.55)


def test_no_shared_cell_is_a_clear_error():
    with pytest.raises(ValueError, match="no cell"):
        compare([_rec(1024, 0.0, 1.0)], "niah", "fourier", {"period": "smooth"})
    with pytest.raises(ValueError, match="key=value"):
        parse_variant("period")


@given(wins=st.integers(0, 40), losses=st.integers(0, 40))
def test_sign_test_is_the_exact_binomial_tail(wins, losses):
    n, k = wins + losses, min(wins, losses)
    want = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    assert sign_test(wins, losses) == pytest.approx(want) and sign_test(losses, wins) == pytest.approx(want)


@given(n=st.integers(1, 500), data=st.data())
def test_wilson_interval_contains_the_fraction_and_stays_in_unit_range(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0 and hi - lo < 1.0


def test_compare_subcommand_prints_the_table_and_refuses_a_bad_variant(tmp_path, capsys):
    from harness.cli import main
    from harness.store import ResultsStore

    store = ResultsStore(tmp_path / "r")
    recs = [_rec(1024, d, 1.0) for d in (0.0, 1.0)] + [_rec(1024, d, float(d > 0), {"period": "smooth"}) for d in (0.0, 1.0)]
    for r in recs:
        r.update(cell=f"c{id(r)}", time="2026-12-05T00:00:00Z", unit="fraction", model="m", impl="reference",
                 device="cpu", seed=0, protocol={}, extra={}, versions={}, git_sha="x")
    store.append(recs)
    assert main(["compare", "--results", str(tmp_path / "r"), "--suite", "niah", "--method", "fourier",
                 "--variant", "period=smooth"]) == 0
    out = capsys.readouterr().out
    assert "| all | 2 | 100% [34, 100] | 50% [9, 91] | 0+ / 1- | 1 |" in out
    with pytest.raises(SystemExit):
        main(["compare", "--suite", "niah", "--method", "fourier", "--variant", "period"])
