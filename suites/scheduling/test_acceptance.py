"""Parametric acceptance scenarios (reference/scheduling/acceptance.py): speculative sampling's accepted-token law,
the drift over the first steps, exact lengths, and their workloads."""
from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.scheduling.acceptance import SCENARIOS, AcceptanceScenario, accepted_tokens, request_acceptance
from reference.scheduling.cost_model import expected_tokens
from reference.scheduling.trace import emitted
from reference.scheduling.workload import WorkloadSpec, make_requests
from suites.strategies import acceptance_traces, seeds


@pytest.mark.parametrize("alpha, g", [(0.3, 4), (0.7, 4), (0.9, 8), (0.0, 3), (1.0, 5)])
def test_tokens_per_step_follow_speculative_sampling(alpha, g):
    """E[accepted + 1] = (1 - alpha^(g+1)) / (1 - alpha) (Leviathan et al., eq. 1), 20,000 draws, fixed seed."""
    rng = random.Random(0)
    draws = [accepted_tokens(rng, alpha, g) for _ in range(20000)]
    assert all(0 <= k <= g for k in draws)
    assert statistics.mean(k + 1 for k in draws) == pytest.approx(expected_tokens(alpha, g), rel=0.02)


@settings(max_examples=30)
@given(weights=st.lists(st.tuples(st.floats(0.1, 5), st.floats(0.2, 20), st.floats(0.2, 20)), min_size=1, max_size=3),
       drift=st.floats(0.0, 20.0), length=st.integers(1, 3000), g=st.integers(1, 8), seed=seeds())
def test_a_request_emits_exactly_its_length(weights, drift, length, g, seed):
    sc = AcceptanceScenario("h", tuple(weights), drift_steps=drift)
    sc.validate()
    acc = request_acceptance(random.Random(seed), sc, length, g)
    assert all(0 <= a <= g for a in acc)
    assert sum(emitted(acc, length)) == length and len(emitted(acc, length)) == len(acc)


def test_acceptance_drifts_from_its_start_then_settles():
    """Start rates ~ Beta(1, 30) (near 0), settled rates ~ Beta(30, 1) (near 1): the first step accepts little, the
    tenth almost everything, over 2,000 requests."""
    sc = AcceptanceScenario("h", ((1.0, 30.0, 1.0),), start=(1.0, 30.0), drift_steps=2.0)
    rng = random.Random(1)
    runs = [request_acceptance(rng, sc, 200, 4) for _ in range(2000)]
    first, tenth = statistics.mean(a[0] for a in runs), statistics.mean(a[9] for a in runs)
    assert first < 0.6 and tenth > 3.0
    flat = AcceptanceScenario("h", ((1.0, 30.0, 1.0),), start=(1.0, 30.0), drift_steps=0.0)
    assert statistics.mean(request_acceptance(rng, flat, 200, 4)[0] for _ in range(2000)) > 3.0


@settings(max_examples=10)
@given(traces=acceptance_traces(n=3), seed=seeds(), name=st.sampled_from(sorted(SCENARIOS)))
def test_scenario_workloads_are_functions_of_their_seed(traces, seed, name):
    spec = WorkloadSpec("h", "sharegpt", 20, 2.0, 0.5, seed, name, 4)
    reqs = make_requests(spec, traces)
    assert reqs == make_requests(spec, traces)
    assert all(r.trace_id == name and sum(emitted(r.accepted, r.output_len)) == r.output_len for r in reqs)
    # the arrival stream (arrivals, lengths, predictions) is the one of the traces' acceptance with the same seed
    same = make_requests(WorkloadSpec("h", "sharegpt", 20, 2.0, 0.5, seed), traces)
    assert [(r.arrival, r.output_len, r.predicted_len, r.late_z) for r in reqs] == \
        [(r.arrival, r.output_len, r.predicted_len, r.late_z) for r in same]


@pytest.mark.parametrize("kw, match", [(dict(acceptance="nope"), "acceptance"),
                                       (dict(acceptance="draft-model", lengths="traces"), "acceptance"),
                                       (dict(acceptance="draft-model", draft_len=0), "draft_len")])
def test_bad_acceptance_settings_are_named(kw, match):
    spec = WorkloadSpec(**{"name": "h", "lengths": "sharegpt", **kw})
    with pytest.raises(ValueError, match=match):
        spec.validate()


def test_bad_scenario_is_named():
    with pytest.raises(ValueError, match="mixture"):
        AcceptanceScenario("h", ((1.0, 0.0, 1.0),)).validate()
    with pytest.raises(ValueError, match="drift_steps"):
        AcceptanceScenario("h", ((1.0, 1.0, 1.0),), drift_steps=-1).validate()
