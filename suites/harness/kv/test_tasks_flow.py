"""RULER and LongBench sweeps end to end on a tiny random LLaMA: records, resume, the boards, CLI errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.boards.leaderboard import build_leaderboard
from harness.cli import main
from harness.kv.run_tasks import TaskConfig, run_tasks
from harness.store import ResultsStore

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "longbench"
METHODS = ("full", "streaming_llm")


def test_ruler_sweep_records_resumes_and_boards(tiny_lm, tmp_path):
    from harness.kv import ruler

    tasks = tuple(ruler.TASKS[:2])
    config = TaskConfig(suite="ruler", methods=METHODS, tasks=tasks, lengths=(512,), results=str(tmp_path))
    summary = run_tasks(config, lm=tiny_lm, progress=False)
    assert summary["ran"] == len(tasks) * len(METHODS) and summary["skipped"] == 0
    records = ResultsStore(tmp_path).records("ruler")
    scores = [r for r in records if r["metric"] == "score"]
    assert {(r["task"], r["method"]) for r in scores} == {(t, m) for t in tasks for m in METHODS}
    assert all(0.0 <= r["value"] <= 1.0 and r["params"]["length"] == 512 for r in scores)
    full = {r["task"]: r["value"] for r in records if r["metric"] == "kv_bytes" and r["method"] == "full"}
    small = {r["task"]: r["value"] for r in records if r["metric"] == "kv_bytes" and r["method"] == "streaming_llm"}
    assert all(small[t] < full[t] for t in tasks)  # compression ratio 0.5 really holds fewer bytes
    again = run_tasks(config, lm=tiny_lm, progress=False)
    assert again["ran"] == 0 and again["skipped"] == summary["ran"]
    build_leaderboard(tmp_path, tmp_path / "board")
    text = (tmp_path / "board" / "kv.md").read_text()
    assert "RULER" in text and all(t in text for t in tasks)
    assert "RULER: " in (tmp_path / "board" / "README.md").read_text()  # its winner row on the headline


def test_longbench_sweep_on_the_fixtures(tiny_lm, tmp_path):
    from harness.kv import longbench

    tasks = tuple(sorted(p.stem for p in FIXTURES.glob("*.jsonl") if p.stem in longbench.TASKS))[:3]
    assert tasks, "fixtures/longbench holds no task file"
    config = TaskConfig(suite="longbench", methods=METHODS, tasks=tasks, data_dir=str(FIXTURES), limit=1,
                        max_length=600, results=str(tmp_path))
    summary = run_tasks(config, lm=tiny_lm, progress=False)
    assert summary["ran"] == len(tasks) * len(METHODS)
    scores = [r for r in ResultsStore(tmp_path).records("longbench") if r["metric"] == "score"]
    assert {r["task"] for r in scores} == set(tasks)
    assert all(0.0 <= r["value"] <= 1.0 and r["extra"]["group"] == longbench.TASKS[r["task"]].group for r in scores)
    assert all(r["extra"]["context_tokens"] <= 600 for r in scores)  # middle truncation held the limit
    build_leaderboard(tmp_path, tmp_path / "board")
    assert "## LongBench" in (tmp_path / "board" / "kv.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--suite", "ruler", "--tasks", "nope"], "nope"),
    (["--suite", "ruler", "--lengths", "100"], "lengths"),
    (["--suite", "longbench", "--tasks", "nope", "--data-dir", str(FIXTURES)], "nope"),
    (["--suite", "ruler", "--methods", "nope"], "nope"),
])
def test_cli_names_bad_arguments(tiny_model_dir, tmp_path, capsys, argv, message):
    rc = main(["run", *argv, "--model", str(tiny_model_dir), "--results", str(tmp_path), "--out", str(tmp_path / "b"),
               "--no-progress"])
    assert rc == 2 and message in capsys.readouterr().err
