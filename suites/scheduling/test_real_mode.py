"""The real serving loop on the embedded model: it decodes exactly what the traces recorded, finishes every request,
and stores a real and a simulated record of the same cell."""
from __future__ import annotations

import pytest

from harness.scheduling.run import SUITE
from harness.scheduling.serve_real import TASK, RealConfig, run_real
from harness.store import ResultsStore

# The real loop takes the embedded model from the worker cache, where `embedded_lm` (suites/conftest.py) put it: one
# load for this module and the model's other users.
pytestmark = pytest.mark.usefixtures("embedded_lm")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("real")
    config = RealConfig(policies=("fcfs", "laps_sd"), rates=(20.0,), n_requests=3, max_output=40, seed=3,
                        results=str(results))
    summary = run_real(config, progress=False)
    return config, summary, ResultsStore(results).records(SUITE)


def test_real_loop_replays_the_traces_and_stores_both_impls(real_run):
    config, summary, records = real_run
    assert summary["ran"] == 2
    for policy in config.policies:
        mine = [r for r in records if r["method"] == policy and r["task"] == TASK]
        real = {r["metric"]: r for r in mine if r["impl"] == "real"}
        sim = {r["metric"]: r for r in mine if r["impl"] == "sim"}
        assert set(real) == set(sim) and "mean_latency_s" in real
        assert real["mean_latency_s"]["params"] == sim["mean_latency_s"]["params"]
        assert real["mean_latency_s"]["protocol"] == sim["mean_latency_s"]["protocol"]
        # greedy decoding is deterministic: the loop saw exactly the recorded acceptance and lengths
        assert real["mean_latency_s"]["extra"]["steps_off_trace"] == 0
        assert real["mean_latency_s"]["extra"]["length_mismatches"] == 0
        lat = real["mean_latency_s"]["extra"]["latencies"]
        assert len(lat) == config.n_requests and all(x > 0 for x in lat)
        assert real["mean_ttft_s"]["value"] <= real["mean_latency_s"]["value"]


def test_rerun_skips_the_real_cells(real_run):
    config, _, records = real_run
    again = run_real(config, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 2
    assert len(ResultsStore(config.results).records(SUITE)) == len(records)


def test_batched_real_loop_serves_every_request_and_matches_its_simulator_cell(tmp_path):
    """max_batch 3: one padded target pass per iteration; still exactly the recorded acceptance, and the simulated
    twin of the cell runs with the same batch cap."""
    config = RealConfig(policies=("sjf_predicted",), rates=(50.0,), n_requests=4, max_output=40, seed=5, max_batch=3,
                        results=str(tmp_path))
    assert run_real(config, progress=False)["ran"] == 1
    recs = {(r["impl"], r["metric"]): r for r in ResultsStore(tmp_path).records(SUITE)}
    real, sim = recs[("real", "mean_latency_s")], recs[("sim", "mean_latency_s")]
    assert real["params"]["max_batch"] == sim["params"]["max_batch"] == 3
    assert "continuous batching" in real["protocol"]["server"]
    assert real["extra"]["steps_off_trace"] == 0 and real["extra"]["length_mismatches"] == 0
    assert len(real["extra"]["latencies"]) == 4 and real["extra"]["n_iterations"] >= 1
    assert sum(sim["extra"]["cost_coefficients"]["step"]) > 0  # the simulator's cost: fitted to the loop's iterations


def test_bad_real_config_is_named():
    with pytest.raises(ValueError, match="policies"):
        RealConfig(policies=("lifo",)).validate()
    with pytest.raises(ValueError, match="n_requests"):
        RealConfig(n_requests=0).validate()
    with pytest.raises(ValueError, match="max-batch"):
        RealConfig(max_batch=0).validate()
