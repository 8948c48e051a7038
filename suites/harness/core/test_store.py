"""The results store: atomic appends, resume keys, torn lines, concurrent writers, validation."""
from __future__ import annotations

import json
import multiprocessing as mp
import re
import shutil
import subprocess
import threading
import warnings

import pytest

from harness.provenance import device_info, git_sha, versions
from harness.store import ResultsStore, cell_key, make_record


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
    with pytest.warns(UserWarning, match=r"niah\.jsonl:2"), pytest.warns(UserWarning, match="skipped 1 malformed record of 2"):
        assert {r["cell"] for r in store.records()} == {"c0"}
    store.append([record(2)])
    with pytest.warns(UserWarning):
        assert store.done_cells("niah") == {"c0", "c2"}


def test_an_append_cut_short_is_neither_read_nor_kept(tmp_path):
    """A kill inside an append (a write returns between pages on SIGKILL) leaves its marker, some whole lines of the
    cell and a torn one: readers see only what came before it, without a warning, and the next append cuts it off,
    so the cell counts as not done and a resume measures it again."""
    store = ResultsStore(tmp_path)
    store.append([record(0)])
    assert store.committed_end("niah") is None  # a finished append leaves no marker
    size = store.path("niah").stat().st_size
    store.pending_path("niah").write_text(str(size))  # what `append` records before its write
    cut = [json.dumps(record(1, metric=m, value=1.0, unit="fraction")) for m in ("exact_match", "kv_bytes")]
    with open(store.path("niah"), "a") as f:
        f.write(cut[0] + "\n" + cut[1][:30])  # the cell's first line whole, its second torn
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unfinished append is not read at all, so nothing is reported
        assert store.done_cells("niah") == {"c0"}
    store.append([record(2)])
    assert store.committed_end("niah") is None
    lines = [json.loads(x) for x in store.path("niah").read_text().splitlines()]  # every line whole again
    assert [r["cell"] for r in lines] == ["c0", "c2"]


def test_an_append_waits_while_a_reader_holds_the_file(tmp_path):
    """`reading` holds the suite's file against appends (a shared flock against their exclusive one), so a reader
    never sees half an append; the append goes ahead once the reader is done."""
    store = ResultsStore(tmp_path)
    store.append([record(0)])
    before = store.path("niah").read_bytes()
    writer = threading.Thread(target=store.append, args=([record(1)],))
    with store.reading("niah") as end:
        assert end is None
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and store.path("niah").read_bytes() == before  # blocked on the reader's lock
    writer.join(30)
    assert not writer.is_alive() and store.done_cells("niah") == {"c0", "c1"}


def _writer(root: str, proc: int) -> None:
    store = ResultsStore(root)
    for i in range(50):  # one append = one cell of three records, as the runners write them
        store.append([record(proc * 1000 + i, params={"blob": "x" * 2000, "i": i, "part": part}) for part in range(3)])


def test_concurrent_writers_never_interleave(tmp_path):
    """Several processes append to one store at once (what several runs sharing a store do): every line parses
    and the three lines of each append stay together."""
    procs = [mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), p)) for p in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)  # a hang guard, not a speed bound: a slow disk under load takes what it takes
        alive = p.is_alive()
        if alive:
            p.kill()
        assert not alive and p.exitcode == 0
    lines = [json.loads(x) for x in ResultsStore(tmp_path).path("niah").read_text().splitlines()]
    assert len(lines) == 6 * 50 * 3
    cells = [r["cell"] for r in lines]
    assert len(set(cells)) == 6 * 50
    for start in range(0, len(lines), 3):  # appends are whole and never interleaved
        assert len(set(cells[start:start + 3])) == 1 and [r["params"]["part"] for r in lines[start:start + 3]] == [0, 1, 2]


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


def test_make_record_fills_provenance_and_cell(tmp_path):
    params = {"compression_ratio": 0.5, "length": 1024, "depth": 0.25, "trial": 1}
    r = make_record("niah", "passkey", "snapkv", "reference", "m", params, "exact_match", 0.0, "fraction",
                    seed=3, protocol={"dtype": "float32"}, extra={"prediction": "12"})
    assert r["cell"] == cell_key("niah", "passkey", "snapkv", "reference", "m", dict(reversed(params.items())))
    assert r["device"].startswith("cpu:") and r["versions"]["torch"] and r["versions"]["python"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["time"])
    assert r["seed"] == 3 and r["protocol"] == {"dtype": "float32"} and r["extra"] == {"prediction": "12"}
    ResultsStore(tmp_path).append([r])
    assert ResultsStore(tmp_path).records("niah") == [r]
    prov = {"device": "cpu: x", "versions": versions(), "git_sha": "abc"}
    with pytest.raises(ValueError, match="value"):
        make_record("niah", "passkey", "full", "reference", "m", params, "exact_match", float("inf"), "fraction",
                    provenance=prov)
    with pytest.raises(ValueError, match="git_sha"):
        make_record("niah", "passkey", "full", "reference", "m", params, "exact_match", 1.0, "fraction",
                    provenance={"device": "cpu", "versions": {}})
    with pytest.raises(TypeError, match="params"):
        make_record("niah", "passkey", "full", "reference", "m", [1], "exact_match", 1.0, "fraction", provenance=prov)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_sha_unknown_outside_git_and_dirty_when_code_changed(tmp_path, monkeypatch):
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):  # an exported repository would answer for tmp_path
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # nor may a repository above it
    assert git_sha(tmp_path) == "unknown"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(git + ["add", "f.txt"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "x"], cwd=tmp_path, check=True)
    clean = git_sha(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", clean)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "niah.jsonl").write_text("{}\n")
    subprocess.run(git + ["add", "results"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "r"], cwd=tmp_path, check=True)
    clean = git_sha(tmp_path)
    (tmp_path / "results" / "niah.jsonl").write_text("{}\n{}\n")
    assert git_sha(tmp_path) == clean  # appended measurements are not a code change
    (tmp_path / "f.txt").write_text("b")
    assert git_sha(tmp_path) == clean + "-dirty"


def test_device_info_names_the_cpu():
    assert device_info("cpu").startswith("cpu: ") and "threads" in device_info("cpu")


def test_git_sha_can_be_given_for_a_copied_tree(monkeypatch):
    monkeypatch.setenv("LONGCTX_GIT_SHA", "abc123+uncommitted")
    assert git_sha() == "abc123+uncommitted"
