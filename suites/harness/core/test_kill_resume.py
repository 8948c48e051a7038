"""A sweep killed (SIGKILL) at several points keeps every cell that finished, whole, and resuming it ends with the
records an uninterrupted run writes. What a store holds is its committed bytes: a kill inside an append can leave
torn bytes after an unfinished append's start (Linux returns from a write between pages on SIGKILL), which readers
and the next writer cut off (harness/store.py).

The sweeps run as real subprocesses of `python -m harness run`; the kill comes after the store holds a given number
of lines or after a random delay, i.e. at arbitrary places: during model loading, inside a cell, between cells.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store import ResultsStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
SCHED = ["run", "--suite", "scheduling", "--n-requests", "60", "--loads", "0.5,0.9", "--no-sweep", "--no-leaderboard",
         "--no-progress", "--workloads", "paper-like,sharegpt", "--seeds", "0,1"]  # ~40 cells: kill points, not a sweep
SCHED_METRICS = 7  # records per simulated cell
TIMINGS = {"decision_overhead_us", "compress_ms", "decode_ms_per_token"}


def _start(argv: list[str], results: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "harness", *argv, "--results", str(results)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _committed(path: Path) -> bytes:
    """The store file's committed bytes: read as the store's readers read it (`reading`: no append is half-written
    meanwhile), cut at a crashed append's start."""
    if not path.exists():
        return b""
    with ResultsStore(path.parent).reading(path.name[:-len(".jsonl")]) as end:
        data = path.read_bytes()
    return data if end is None else data[:end]


def _lines(path: Path) -> int:
    return _committed(path).count(b"\n")


def _kill_when(proc: subprocess.Popen, store: Path, lines: int | None, delay: float | None, limit: float = 240) -> bool:
    """SIGKILL `proc` once `store` has `lines` committed lines, or after `delay` s; False if it finished first."""
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < limit:
        if (lines is not None and _lines(store) >= lines) or (delay is not None and time.monotonic() - start >= delay):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()  # finished (a no-op) or past `limit`: never leave it running
    proc.wait()
    return False


def _assert_whole(results: Path, suite: str, metrics_per_cell: dict[str, int]) -> int:
    """Every stored line parses, and every stored cell has all of its metrics; returns the number of cells."""
    text = _committed(results / f"{suite}.jsonl").decode("utf-8")
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]  # a torn line would raise here
    by_cell: dict[str, set] = {}
    for r in lines:
        by_cell.setdefault(r["cell"], set()).add(r["metric"])
    for cell, metrics in by_cell.items():
        task = next(r["task"] for r in lines if r["cell"] == cell)
        expected = metrics_per_cell.get(task, metrics_per_cell["*"])
        assert len(metrics) == expected, f"cell {cell} ({task}) is partial: {sorted(metrics)}"
    return len(by_cell)


def _comparable(results: Path) -> dict:
    """(cell, metric) -> [value, *per-request latencies]: compared to 1e-9 (numpy's sums may differ in the last
    bits between processes: SIMD paths depend on array alignment)."""
    return {(r["cell"], r["metric"]): [r["value"], *(r["extra"].get("latencies") or [])]
            for r in ResultsStore(results).records() if r["metric"] not in TIMINGS}


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, values in want.items():
        assert got[key] == pytest.approx(values, rel=1e-9, abs=2e-5), key  # latencies are stored rounded to 1e-5


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _start(SCHED, out)
    assert proc.wait(300) == 0, proc.stderr.read().decode()
    return out


def test_killed_sweep_keeps_finished_cells_and_resumes_to_the_same_records(uninterrupted, tmp_path):
    """Three kills in a row, each run resuming what the kills before left: after the run's first cell, at half the
    records, at a random time. Every kill keeps whole cells and the last resume ends with the uninterrupted run's
    records, each cell once: the work of one sweep, not of one sweep per kill point (as the NIAH test below)."""
    total = _lines(uninterrupted / "scheduling.jsonl")
    store = tmp_path / "scheduling.jsonl"
    for point in ("first-cell", "half", "random-time"):
        rng = random.Random(point)  # a reproducible delay; where the run stands at that moment is the machine's
        lines = {"first-cell": 1, "half": total // 2}.get(point)
        delay = rng.uniform(0.5, 5.0) if lines is None else None
        print(f"kill point {point}: after {lines} lines or {delay} s")  # shown when the test fails
        before = _assert_whole(tmp_path, "scheduling", {"decision-overhead": 1, "*": SCHED_METRICS})
        killed = _kill_when(_start(SCHED, tmp_path), store, lines, delay)
        kept = _assert_whole(tmp_path, "scheduling", {"decision-overhead": 1, "*": SCHED_METRICS})
        if lines is not None:
            assert killed and kept > before, f"{point}: the kill came before any cell of the run finished"
    resumed = _start(SCHED, tmp_path)
    assert resumed.wait(300) == 0, resumed.stderr.read().decode()
    assert ResultsStore(tmp_path).committed_end("scheduling") is None  # a finished run leaves no unfinished append
    _assert_whole(tmp_path, "scheduling", {"decision-overhead": 1, "*": SCHED_METRICS})
    _assert_same(_comparable(tmp_path), _comparable(uninterrupted))
    # resuming measured only what was missing: each cell once
    assert _lines(store) == total


def test_killed_niah_sweep_resumes_to_the_same_records(tiny_model_dir, tmp_path):
    argv = ["run", "--suite", "niah", "--model", str(tiny_model_dir), "--methods", "full,snapkv,streaming_llm",
            "--lengths", "256,512", "--depths", "0,1", "--no-leaderboard", "--no-progress"]
    reference = tmp_path / "reference"
    assert _start(argv, reference).wait(300) == 0
    total = _lines(reference / "niah.jsonl")
    per_cell = 5  # exact_match, kv_bytes, kv_bytes_full, compress_ms, decode_ms_per_token
    for lines in (per_cell, total // 2):  # right after the first cell; mid-sweep
        killed = _kill_when(_start(argv, tmp_path / "run"), tmp_path / "run" / "niah.jsonl", lines, None)
        assert killed
        _assert_whole(tmp_path / "run", "niah", {"*": per_cell})
    assert _start(argv, tmp_path / "run").wait(300) == 0
    assert ResultsStore(tmp_path / "run").committed_end("niah") is None
    _assert_whole(tmp_path / "run", "niah", {"*": per_cell})
    _assert_same(_comparable(tmp_path / "run"), _comparable(reference))
    assert _lines(tmp_path / "run" / "niah.jsonl") == total
