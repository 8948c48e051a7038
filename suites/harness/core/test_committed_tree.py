"""Nothing a user runs overwrites what the repository commits: a run into another store builds its board there,
`train-dllm` never replaces an existing checkpoint unasked, `conform` stores a report only into a named store.
Each command runs as a user would (a subprocess from the repository root) and `git status` must not change."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "fixtures" / "dllm" / "tiny_dllm.pt"


def _status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def _harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture
def tree_unchanged():
    before = _status()
    yield
    assert _status() == before, "the command changed the committed tree"


def test_run_into_another_store_builds_its_board_there(tiny_model_dir, tmp_path, tree_unchanged):
    results = tmp_path / "my_results"
    proc = _harness("run", "--model", str(tiny_model_dir), "--methods", "full", "--lengths", "160", "--depths", "0",
                    "--results", str(results), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (results / "niah.jsonl").is_file() and (results / "leaderboard" / "README.md").is_file()
    assert f"wrote {results / 'leaderboard'}" in proc.stdout


def test_train_dllm_refuses_to_overwrite_and_writes_a_new_file(tmp_path, tree_unchanged):
    digest = hashlib.sha256(FIXTURE.read_bytes()).hexdigest()
    proc = _harness("train-dllm", "--out", str(FIXTURE), "--size", "cpu", "--max-steps", "1")
    assert proc.returncode == 2 and "--force" in proc.stderr and str(FIXTURE) in proc.stderr, proc.stderr
    assert hashlib.sha256(FIXTURE.read_bytes()).hexdigest() == digest

    proc = _harness("train-dllm", "--size", "cpu", "--max-steps", "2", "--eval-lengths", "256", "--eval-n", "1",
                    "--device", "cpu", cwd=tmp_path)  # no --out: a new file under ./runs/
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = sorted((tmp_path / "runs" / "train-dllm").glob("tiny_dllm-*.pt"))
    assert len(made) == 1 and f"saved {Path('runs') / 'train-dllm' / made[0].name}" in proc.stdout


def test_conform_stores_nothing_unless_asked(tmp_path, tree_unchanged):
    demo = ("conform", "--op", "attention", "--impl", "fixtures.kernels.triton_tail_unwritten:attention",
            "--device", "cpu", "--max-examples", "2")
    proc = _harness(*demo)  # the README's broken-kernel demo
    assert proc.returncode == 1 and "[unwritten]" in proc.stdout and "records to" not in proc.stdout, proc.stdout
    proc = _harness(*demo, "--results", str(tmp_path))
    assert proc.returncode == 1 and (tmp_path / "conformance.jsonl").is_file()


def test_main_job_on_a_fresh_clone_leaves_the_tree_clean(tree_unchanged):
    """The README's main job: every cell is committed, so it rebuilds the committed board from the committed store,
    which must come out byte for byte as committed (the board is stamped with its newest record, not the clock)."""
    proc = _harness("run", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran 0 cells" in proc.stdout and "wrote leaderboard/README.md" in proc.stdout, proc.stdout
