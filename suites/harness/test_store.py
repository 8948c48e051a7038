"""The results store: atomic appends, resume keys, torn lines, concurrent writers, validation."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from harness.store import ResultsStore, cell_key


def record(i: int, cell: str | None = None, **kw) -> dict:
    r = {"suite": "niah", "task": "passkey", "method": "full", "impl": "reference", "model": "m",
         "params": {"i": i}, "metric": "exact_match", "value": 1.0, "unit": "fraction",
         "cell": cell or f"c{i}", "device": "cpu", "versions": {}, "git_sha": "x", "seed": 0, "time": "t"}
    r.update(kw)
    return r


def test_cell_key_is_stable_and_ignores_dict_order():
    a = cell_key("niah", "passkey", "snapkv", "reference", "m", {"a": 1, "b": {"x": 2, "y": 3}})
    b = cell_key("niah", "passkey", "snapkv", "reference", "m", {"b": {"y": 3, "x": 2}, "a": 1})
    assert a == b and len(a) == 40
    assert a != cell_key("niah", "passkey", "snapkv", "reference", "m", {"a": 1, "b": {"x": 2, "y": 4}})


def test_append_then_done_cells(tmp_path):
    store = ResultsStore(tmp_path)
    store.append([record(0), record(0, metric="kv_bytes", value=10.0, unit="bytes"), record(1)])
    assert store.done_cells("niah") == {"c0", "c1"}
    assert len(store.records("niah")) == 3
    assert store.records("other") == []


def test_torn_last_line_is_skipped_and_later_appends_survive(tmp_path):
    store = ResultsStore(tmp_path)
    store.append([record(0)])
    with open(store.path("niah"), "a") as f:
        f.write(json.dumps(record(1))[:40])  # a crash in the middle of a write
    with pytest.warns(UserWarning, match=r"niah\.jsonl:2"):
        assert {r["cell"] for r in store.records()} == {"c0"}
    store.append([record(2)])
    with pytest.warns(UserWarning):
        assert store.done_cells("niah") == {"c0", "c2"}


def _writer(root: str, proc: int) -> None:
    store = ResultsStore(root)
    for i in range(50):
        store.append([record(proc * 1000 + i, params={"blob": "x" * 2000, "i": i})])


def test_concurrent_writers_never_interleave(tmp_path):
    procs = [mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), p)) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    # A writer that reads the tail while another is mid-write may start on a fresh line: blank lines are harmless.
    lines = [x for x in ResultsStore(tmp_path).path("niah").read_text().splitlines() if x.strip()]
    assert len(lines) == 200
    assert len({json.loads(line)["cell"] for line in lines}) == 200


@pytest.mark.parametrize("field,value,needle", [("value", float("nan"), "value"), ("value", "1", "value"),
                                                ("suite", "../x", "suite"), ("metric", "", "metric")])
def test_invalid_records_name_the_field(tmp_path, field, value, needle):
    with pytest.raises(ValueError, match=needle):
        ResultsStore(tmp_path).append([record(0, **{field: value})])


def test_missing_field_is_named(tmp_path):
    r = record(0)
    del r["git_sha"]
    with pytest.raises(ValueError, match="git_sha"):
        ResultsStore(tmp_path).append([r])
