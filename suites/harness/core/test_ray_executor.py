"""`--executor ray` on a local Ray with CPUs: every suite's sweep gives the records the local executor gives, a
failing shard is reported while the others are stored, and the CLI runs a sweep through Ray.

"The same records" means the same (cell, metric) -> value, with the same predictions and per-example results;
only when and where a record was made (time, device, versions) and wall-clock timings may differ.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.dllm.run import DLLMAccuracyConfig, run_dllm
from harness.executors import ExecutorConfig, Shard, execute
from harness.kv.run_niah import NiahConfig, run_niah
from harness.kv.run_tasks import TaskConfig, run_tasks
from harness.scheduling.run import SchedConfig, run_scheduling
from harness.store import ResultsStore
from reference.scheduling.policies import policy_names

pytestmark = pytest.mark.slow
RAY, LOCAL = ExecutorConfig("ray"), ExecutorConfig("local")
TIMINGS = {"compress_ms", "decode_ms_per_token", "decision_overhead_us"}  # wall clock: differ run to run
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (started by the first run that needs it), shut down at the end. Imported here,
    not at module level: `pytest -m gpu suites/` collects this file on GPU runners that lack Ray."""
    import ray

    yield
    ray.shutdown()


def comparable(root) -> dict:
    out = {}
    for r in ResultsStore(root).records():
        if r["metric"] in TIMINGS:
            continue
        extra = {k: v for k, v in r["extra"].items() if k not in ("decode_steps", "decision_us_per_iteration")}
        out[(r["suite"], r["cell"], r["metric"])] = (r["task"], r["method"], r["impl"], r["model"], r["value"],
                                                    json.dumps(extra, sort_keys=True))
    return out


def both(run, config, tmp_path, **kw) -> tuple[dict, dict]:
    """Run `config` with each executor into its own store; their comparable records."""
    for ex in (LOCAL, RAY):
        run(replace(config, results=str(tmp_path / ex.name)), progress=False, executor=ex, **kw)
    return comparable(tmp_path / "local"), comparable(tmp_path / "ray")


def test_niah_on_ray_gives_the_local_records(tiny_model_dir, tmp_path):
    config = NiahConfig(model=str(tiny_model_dir), methods=("full", "snapkv", "streaming_llm"), lengths=(256, 512),
                        depths=(0.0, 1.0))
    local, on_ray = both(run_niah, config, tmp_path)
    assert len(local) == 3 * 2 * 2 * 3 and on_ray == local
    timed = [r for r in ResultsStore(tmp_path / "ray").records() if r["metric"] == "decode_ms_per_token"]
    assert timed and all(r["value"] > 0 for r in timed)  # the latency metric travels too


def test_ruler_on_ray_gives_the_local_records(tiny_model_dir, tmp_path):
    from harness.kv import ruler

    config = TaskConfig(suite="ruler", model=str(tiny_model_dir), methods=("full", "streaming_llm"),
                        tasks=tuple(ruler.TASKS[:2]), lengths=(512,))
    local, on_ray = both(run_tasks, config, tmp_path)
    assert len(local) == 2 * 2 * 3 and on_ray == local


def test_dllm_on_ray_gives_the_local_records(tmp_path):
    """Two waves: vanilla first, so the others' agreement with vanilla is computed on Ray too."""
    config = DLLMAccuracyConfig(checkpoint=str(ROOT / "fixtures/dllm/tiny_dllm.pt"), methods=("vanilla", "sparse_dllm"),
                                keep_ratios=(0.5,), tasks=("passkey",), lengths=(256,), n=4)
    local, on_ray = both(run_dllm, config, tmp_path)
    assert len(local) == 2 * 4 and on_ray == local
    assert {k[2] for k in on_ray} == {"accuracy", "cache_bytes_peak", "tokens_equal_vanilla", "forwards"}


def test_scheduling_on_ray_gives_the_local_records(tmp_path):
    config = SchedConfig(workloads=("paper-like",), loads=(0.5, 0.9), n_requests=40, sweep=False, overhead_queued=50)
    local, on_ray = both(run_scheduling, config, tmp_path)
    assert len(local) > 0 and on_ray == local
    overhead = [r for r in ResultsStore(tmp_path / "ray").records() if r["metric"] == "decision_overhead_us"]
    assert sorted(r["method"] for r in overhead) == sorted(policy_names())  # timed on the workers too
    assert all(r["value"] > 0 for r in overhead)


def test_a_failing_shard_is_reported_and_the_others_are_stored(tmp_path):
    from harness.scheduling.run import measure, overhead_cells

    config = SchedConfig(workloads=("paper-like",), overhead_queued=20)
    good = overhead_cells(config)[0]
    bad = {**good, "method": "no-such-policy", "policy": "no-such-policy"}
    store = ResultsStore(tmp_path)
    with pytest.raises(RuntimeError, match="(?s)1 of 2 shards failed.*no-such-policy"):
        execute(measure, config, [Shard(("bad",), [bad]), Shard(("good",), [good])], store.append, RAY, progress=False)
    assert [r["method"] for r in store.records()] == [good["method"]]


def test_cli_sweeps_through_ray(tmp_path, capsys):
    argv = ["run", "--suite", "scheduling", "--workloads", "paper-like", "--loads", "0.6", "--n-requests", "30",
            "--no-sweep", "--policies", "fcfs,laps_sd", "--seeds", "1", "--results", str(tmp_path), "--no-leaderboard",
            "--no-progress", "--executor", "ray", "--cell-cpus", "1"]
    assert main(argv) == 0
    assert "ran 2 cells, skipped 0" in capsys.readouterr().out
    assert {r["method"] for r in ResultsStore(tmp_path).records()} == {"fcfs", "laps_sd"}
    assert main(argv) == 0 and "ran 0 cells, skipped 2" in capsys.readouterr().out  # resumable through Ray too


@pytest.mark.parametrize("argv,needle", [(["--cell-cpus", "0"], "cell_cpus"), (["--cell-gpus", "-1"], "cell_gpus"),
                                         (["--cell-cpus", "nan"], "cell"), (["--cell-gpus", "64"], "--cell-gpus")])
def test_cli_rejects_bad_executor_options(tmp_path, capsys, argv, needle):
    code = main(["run", "--suite", "scheduling", "--workloads", "paper-like", "--loads", "0.6", "--n-requests", "30",
                 "--no-sweep", "--results", str(tmp_path), "--no-leaderboard", "--no-progress", "--executor", "ray", *argv])
    assert code == 2 and needle in capsys.readouterr().err
    assert not ResultsStore(tmp_path).records()
