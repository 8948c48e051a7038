"""LAPS-SD against Algorithm 1 (arXiv 2505.17074): perceptible requests stay ordered with each other whatever queue
they had reached (no priority inversion), line 13 re-predicts the length, the acceptance rate orders requests of
equal length; srpt_len_late is the length-only ablation."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.scheduling.cost_model import SpecCostModel
from reference.scheduling.policies import make_policy
from reference.scheduling.predictor import repredict_remaining
from reference.scheduling.simulator import ServerConfig, simulate
from reference.scheduling.trace import emitted
from reference.scheduling.workload import Request

STEP = 0.01
COST = SpecCostModel(4, (0.0, 0.0, 0.0), (STEP, 0.0, 0.0), (0.0, 0.0))  # every step 10 ms, no prefill
ONE = ServerConfig(max_batch=1)


def _request(rid, arrival, output_len, accepted, predicted=None, late_z=0.0):
    acc = tuple(accepted)[:len(emitted(accepted, output_len))]
    return Request(rid, arrival, 10, output_len, acc, predicted or output_len, "t", late_z)


def _finish_order(requests, policy):
    res = simulate(requests, policy, COST, ONE)
    return [s.rid for s in sorted(res.states, key=lambda s: s.finish)], res


@pytest.mark.parametrize("placement", ["bottom", "demote"])
def test_perceptible_requests_in_different_queues_run_shortest_remaining_first(placement):
    """Queues of 1, 2, 4, 8 steps. Request 0 (600 tokens) turns perceptible at its 2nd step, in level 1; request 1
    (80 tokens) alternates its acceptance, so it is demoted to level 3 before it turns perceptible (step 12, 44
    tokens to go). A policy that stops ordering perceptible requests (an earlier version froze them in their
    level) runs all of request 0 first; LAPS-SD must run the shorter remaining one first."""
    long = _request(0, 0.0, 600, [2] * 300)
    short = _request(1, 0.005, 80, [0, 4] * 5 + [2] * 40)
    policy = make_policy("laps_sd", levels=4, base_quantum=STEP, min_steps=2, window=1, tol=0.0, late_error=0.0,
                         perceptible_queue=placement)
    order, res = _finish_order([long, short], policy)
    assert [s.memo["perceptible_at"] for s in res.states] == [2, 12]
    assert order == [1, 0]
    if placement == "bottom":  # request 0 ran its 2 steps, then waited in the bottom queue for all of request 1
        assert res.states[1].finish == pytest.approx(STEP * (2 + len(short.accepted)))


def test_line_13_repredicts_the_length_at_the_perceptible_moment():
    """Arrival predictions inverted against the truth: without line 13 LAPS-SD trusts them (the long one first),
    with it (an exact late predictor) the short one goes first once both are perceptible."""
    a = _request(0, 0.0, 300, [2] * 150, predicted=30)
    b = _request(1, 0.0, 60, [2] * 30, predicted=600)
    kw = dict(levels=1, min_steps=2, window=1, tol=0.0)
    order, res = _finish_order([a, b], make_policy("laps_sd", late_error=0.0, **kw))
    assert order == [1, 0] and res.states[0].memo["predicted_total"] == 300
    order, res = _finish_order([a, b], make_policy("laps_sd", late_error=None, **kw))
    assert order == [0, 1] and "predicted_total" not in res.states[0].memo


def test_acceptance_orders_equal_lengths_but_not_for_the_length_only_ablation():
    """About equal lengths; request 0 accepts nothing, request 1 everything (5x faster): LAPS-SD's estimate
    T = L (g T_ssm + T_llm) / (g A + 1) runs request 1 first; srpt_len_late, blind to acceptance, keeps arrival order."""
    slow = _request(0, 0.0, 200, [0] * 200)
    fast = _request(1, 0.001, 210, [4] * 42)  # after 2 steps each: 200 tokens to go against 198
    order, _ = _finish_order([slow, fast], make_policy("laps_sd", levels=1, min_steps=2, window=1, late_error=0.0))
    assert order == [1, 0]
    order, _ = _finish_order([slow, fast], make_policy("srpt_len_late", repredict_after=2, late_error=0.0))
    assert order == [0, 1]


def test_srpt_len_late_uses_the_repredicted_length():
    a = _request(0, 0.0, 300, [2] * 150, predicted=30)
    b = _request(1, 0.0, 60, [2] * 30, predicted=600)
    assert _finish_order([a, b], make_policy("srpt_len_late", repredict_after=2, late_error=0.0))[0] == [1, 0]
    assert _finish_order([a, b], make_policy("sjf_predicted"))[0] == [0, 1]


@given(length=st.integers(2, 5000), frac=st.floats(0.0, 0.99), z=st.floats(-4, 4), sigma=st.floats(0.0, 2.0))
def test_late_prediction_error_shrinks_with_the_generated_fraction(length, frac, z, sigma):
    req = _request(0, 0.0, length, [0] * length, late_z=z)
    n = int(frac * length)
    left = length - n
    got = repredict_remaining(req, n, sigma)
    assert math.log(got / left) == pytest.approx(sigma * (1 - n / length) * z, abs=1e-9)
    if n + 1 < length:
        assert abs(math.log(repredict_remaining(req, n + 1, sigma) / (left - 1))) <= abs(math.log(got / left)) + 1e-12
    assert repredict_remaining(req, length, sigma) == 0.0


def test_default_late_error_matches_the_papers_estimation_error():
    """sigma 0.1 at the start of decoding: median |error| about 6.7% (the paper reports 6.84% overall)."""
    rng = random.Random(0)
    errs = sorted(abs(math.exp(0.1 * rng.gauss(0, 1)) - 1) for _ in range(20001))
    assert 0.060 < errs[10000] < 0.075


@pytest.mark.parametrize("kw, match", [(dict(perceptible_queue="top"), "perceptible_queue"),
                                       (dict(late_error=-1.0), "late_error"), (dict(accept_window=0), "accept_window")])
def test_bad_laps_parameters_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        make_policy("laps_sd", **kw)


def test_bad_srpt_len_late_parameters_are_named():
    with pytest.raises(ValueError, match="repredict_after"):
        make_policy("srpt_len_late", repredict_after=-1)
    with pytest.raises(ValueError, match="late_error"):
        make_policy("srpt_len_late", late_error=float("nan"))
