"""The cost model (Leviathan et al.'s tokens per step, LAPS-SD's run-time estimate, fitting), the trace format,
the latency metrics and the decision-overhead microbenchmark's plumbing."""
from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.scheduling.cost_model import SpecCostModel, exact_lstsq, expected_tokens
from reference.scheduling.metrics import percentile, summarize
from reference.scheduling.overhead import decision_overhead
from reference.scheduling.policies import make_policy, policy_names
from reference.scheduling.trace import check_trace, emitted, load_traces
from reference.scheduling.workload import WorkloadSpec, extend_acceptance, make_requests
from suites.strategies import acceptance_traces, cost_models, seeds

ROOT = Path(__file__).resolve().parents[2]


def test_expected_tokens_by_hand():
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 4) == pytest.approx((1 - 0.5 ** 5) / 0.5)  # 1.9375
    with pytest.raises(ValueError, match="acceptance"):
        expected_tokens(1.2, 4)


@settings(max_examples=20)
@given(a=st.floats(0.0, 0.999), g=st.integers(1, 8))
def test_expected_tokens_is_the_mean_of_the_geometric_acceptance(a, g):
    # tokens = 1 + number of accepted drafts, each accepted only if all before it were: sum_{k=0..g} a^k
    assert expected_tokens(a, g) == pytest.approx(sum(a ** k for k in range(g + 1)))


@settings(max_examples=15)
@given(seed=seeds(), one_batch=st.booleans())
def test_fit_recovers_known_coefficients(seed, one_batch):
    rng = random.Random(seed)
    true_d = (0.0 if one_batch else rng.uniform(1e-3, 1e-2), rng.uniform(1e-3, 1e-2), rng.uniform(1e-7, 1e-6))
    true_v = (0.0 if one_batch else rng.uniform(1e-3, 1e-2), rng.uniform(1e-3, 1e-2), rng.uniform(1e-7, 1e-6))
    samples = []
    for b in ([1] if one_batch else [1, 2, 4, 8]):
        for c in (64, 256, 1024, 4096):
            samples.append({"batch": b, "context": c, "draft_ms": 1e3 * (true_d[0] + true_d[1] * b + true_d[2] * b * c),
                            "verify_ms": 1e3 * (true_v[0] + true_v[1] * b + true_v[2] * b * c),
                            "prefill_ms": 1e3 * (0.002 + 3e-5 * c)})
    cost = SpecCostModel.fit(samples, 4)
    for b, c in ((1, 100), (3, 3000), (8, 20000)):
        want = sum(t[0] + t[1] * b + t[2] * c for t in (true_d, true_v))
        assert cost.step_time(b, c) == pytest.approx(want, rel=1e-6)
    assert cost.prefill_time(500) == pytest.approx(0.002 + 3e-5 * 500, rel=1e-6)


def test_fit_never_gives_negative_coefficients():
    # times that fall with batch size: the unconstrained fit would go negative, the cost model must not
    samples = [{"batch": b, "context": 100, "draft_ms": 10.0 / b, "verify_ms": 5.0, "prefill_ms": 1.0} for b in (1, 2, 4)]
    cost = SpecCostModel.fit(samples, 4)
    assert min(cost.draft + cost.verify + cost.prefill) >= 0
    assert cost.step_time(4, 400) > 0


@settings(max_examples=15)
@given(seed=seeds(), n=st.integers(3, 40), k=st.integers(1, 3))
def test_the_exact_least_squares_leaves_a_residual_orthogonal_to_every_column(seed, n, k):
    """`exact_lstsq` solves the normal equations in rationals: A^T (A x - y) is exactly 0 for noisy data, and a
    column that repeats an earlier one (rank deficiency) gets coefficient 0 while the fit stays optimal."""
    rng = random.Random(seed)
    rows = [[1.0] + [rng.uniform(1, 4096) * 10 ** rng.randint(-3, 3) for _ in range(k - 1)] for _ in range(n)]
    y = [rng.uniform(1e-3, 1.0) for _ in range(n)]
    for a in (rows, [r + [r[-1]] for r in rows]):  # the second repeats the last column
        x = exact_lstsq(a, y)
        resid = [sum((Fraction(v) * c for v, c in zip(r, x)), Fraction(0)) - Fraction(t) for r, t in zip(a, y)]
        for j in range(len(a[0])):
            assert sum((Fraction(r[j]) * e for r, e in zip(a, resid)), Fraction(0)) == 0
    assert x[-1] == 0


@settings(max_examples=10)
@given(seed=seeds())
def test_the_fit_does_not_depend_on_the_order_or_memory_of_its_samples(seed):
    """The committed CPU step times, shuffled, give the same coefficients to the last bit. LAPACK's lstsq did not:
    its sums follow the rows' order, the thread count and the buffers' alignment, and one draft term of this file
    sits where 12 significant digits round either way (9.08333333333e-07 or ...334e-07), which made a simulation's
    records differ between a Ray worker and the local run."""
    data = json.loads((ROOT / "fixtures/scheduling/step_times_cpu.json").read_text(encoding="utf-8"))
    shuffled = random.Random(seed).sample(data["samples"], len(data["samples"]))
    assert SpecCostModel.fit(shuffled, data["draft_len"]) == SpecCostModel.fit(data["samples"], data["draft_len"])


@settings(max_examples=15)
@given(data=st.data(), g=st.integers(1, 6))
def test_laps_run_time_estimate_is_the_paper_formula(data, g):
    cost = data.draw(cost_models(g))
    length, a, ctx = data.draw(st.floats(1, 1000)), data.draw(st.floats(0, 1)), data.draw(st.integers(1, 8000))
    t_ssm_g, t_llm = cost.draft_time(1, ctx), cost.verify_time(1, ctx)
    assert cost.run_time_estimate(length, a, ctx) == pytest.approx(length * (t_ssm_g + t_llm) / (g * a + 1))


def test_trace_checks_name_the_field():
    good = {"id": "a", "prompt_len": 5, "output_len": 7, "draft_len": 4, "accepted": [4, 1]}
    assert check_trace(good).acceptance_rate == pytest.approx(5 / 8)
    for bad, field in ((dict(good, accepted=[5, 1]), "accepted"), (dict(good, output_len=0), "output_len"),
                       (dict(good, output_len=20), "emit"), (dict(good, draft_ms=[1.0]), "draft_ms"),
                       ({k: v for k, v in good.items() if k != "draft_len"}, "draft_len")):
        with pytest.raises(ValueError, match=field):
            check_trace(bad)


def test_load_traces_skips_and_reports_malformed_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    good = {"id": "a", "prompt_len": 5, "output_len": 3, "draft_len": 2, "accepted": [2]}
    path.write_text("\n".join([json.dumps(good), "{not json", json.dumps(dict(good, accepted=[9])), ""]))
    with pytest.warns(UserWarning) as caught:
        traces = load_traces(path)
    assert [t.id for t in traces] == ["a"]
    assert any(":2:" in str(w.message) for w in caught) and any(":3:" in str(w.message) for w in caught)
    (tmp_path / "empty.jsonl").write_text("{bad\n")
    with pytest.raises(ValueError, match="no valid trace"), pytest.warns(UserWarning):
        load_traces(tmp_path / "empty.jsonl")


@settings(max_examples=20)
@given(traces=acceptance_traces(n=1), length=st.integers(1, 3000))
def test_extended_acceptance_emits_exactly_the_length(traces, length):
    acc = extend_acceptance(traces[0], length)
    assert sum(emitted(acc, length)) == length and len(emitted(acc, length)) == len(acc)
    n = min(len(acc), len(traces[0].accepted))
    assert acc[:n] == traces[0].accepted[:n]  # the real trace first, as recorded


def test_workload_rejects_bad_specs():
    traces = [check_trace({"id": "a", "prompt_len": 5, "output_len": 3, "draft_len": 2, "accepted": [2]})]
    for spec, field in ((WorkloadSpec("w", rate=0.0), "rate"), (WorkloadSpec("w", n_requests=0), "n_requests"),
                        (WorkloadSpec("w", lengths="nope"), "lengths"), (WorkloadSpec("w", predictor_error=-1), "predictor")):
        with pytest.raises(ValueError, match=field):
            make_requests(spec, traces)


def test_metrics_by_hand():
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99) == pytest.approx(4.96)
    m = summarize([0.0, 1.0], [0.5, 1.2], [2.0, 4.0], [10, 30])
    assert m["mean_latency_s"] == 2.5 and m["mean_ttft_s"] == pytest.approx(0.35)
    assert m["mean_norm_latency_s"] == pytest.approx((2 / 10 + 3 / 30) / 2)
    assert m["throughput_tok_s"] == pytest.approx(40 / 4.0)
    with pytest.raises(ValueError):
        summarize([0.0], [], [1.0], [1])


@pytest.mark.parametrize("name", policy_names())
def test_decision_overhead_is_measured(name):
    cost = SpecCostModel(4, (0.0, 1e-3, 1e-7), (1e-2, 1e-3, 1e-7), (1e-3, 1e-5))
    sec = decision_overhead(make_policy(name), cost, queued=200, iterations=50)
    assert math.isfinite(sec) and 0 < sec < 0.1


def test_fit_iterations_recovers_planted_coefficients():
    """Iteration times planted from known coefficients (plus the simulator's iteration formula) are fitted back."""
    rng = random.Random(0)
    a, b, c, p = 0.05, 0.01, 2e-5, 3e-3
    its = []
    for _ in range(200):
        batch, ctx, pre = rng.randint(1, 4), rng.randint(50, 2000), rng.choice([0, 0, 0, rng.randint(10, 300)])
        its.append({"batch": batch, "context": ctx, "prefill_tokens": pre, "seconds": a + b * batch + c * ctx + p * pre})
    m = SpecCostModel.fit_iterations(its, 4)
    assert m.verify == pytest.approx((a, b, c), rel=1e-6) and m.prefill == pytest.approx((0.0, p), abs=1e-9, rel=1e-6)
    assert m.step_time(3, 900) + m.prefill_time(100) == pytest.approx(a + 3 * b + 900 * c + 100 * p, rel=1e-6)
    # batch 1 only, a prefill's tokens equal to its context (a request's first iteration): still told apart
    one = [{"batch": 1, "context": n, "prefill_tokens": n if first else 0,
            "seconds": a + b + c * n + (0.2 + p * n if first else 0.0)}
           for n, first in ((rng.randint(30, 400), rng.random() < 0.1) for _ in range(300))]
    m = SpecCostModel.fit_iterations(one, 4)
    assert m.step_time(1, 200) == pytest.approx(a + b + c * 200, rel=1e-6)
    assert m.prefill_time(100) == pytest.approx(0.2 + p * 100, rel=1e-6)
    with pytest.raises(ValueError, match="seconds"):
        SpecCostModel.fit_iterations([{"batch": 1, "context": 1, "prefill_tokens": 0}], 4)
