"""The results store: one JSON object per measurement, appended atomically to `<root>/<suite>.jsonl`.

Every call to `append` writes all its lines with one `os.write` on a file opened with O_APPEND, under an
exclusive `flock`, then fsyncs, so concurrent writers (other runs, other hosts on a shared filesystem) never
interleave lines. One write is not all-or-nothing: Linux returns from a write to a regular file between pages when
the process gets SIGKILL, so a killed run can leave the first lines of a cell and a torn one. Each append therefore
records where it starts in `<suite>.jsonl.pending` before writing and removes that file once its lines are on disk:
readers take only the bytes before a pending append's start, and the next writer cuts a crashed append off before
its own. Readers hold a shared `flock` while they read (`reading`), so no append is half-written under them and a
marker they see is a crashed append's. A crash thus leaves either the whole cell or none of it. Readers also skip
(and report) a malformed line, such as a torn tail from before this journal, so nothing finished before it is lost.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.provenance import device_info, device_kind, git_sha, now_iso, versions
from reference.jsonl import read_jsonl

REQUIRED = ("suite", "task", "method", "impl", "model", "params", "metric", "value", "unit", "cell",
            "device", "versions", "git_sha", "seed", "time")


# Performance records: their values depend on the hardware, so the kind of device they were measured on
# (`device_kind` of the record's `device` field) is part of their cell key. A bench on a second kind of GPU then
# measures every cell again instead of skipping the cells another device recorded, while a rerun on the same kind
# still skips them, and boards keep both devices' records (`newest_records` is per cell). {suite: its tasks keyed
# by device, None for every task}. Every other record (NIAH, RULER, LongBench, dLLM accuracy, conformance, the
# simulated scheduling workloads) measures something device-independent by design and is keyed without a device.
KEYED_BY_DEVICE: dict[str, frozenset[str] | None] = {
    "kernels_bench": None,  # decode-attention latency, bandwidth (harness/kernels/bench.py)
    "dllm_throughput": None,  # dLLM tokens/s, peak memory, time per phase (harness/dllm/bench.py)
    # the real serving loop's wall-clock latencies and its simulated twin, whose cost model is fitted to that
    # loop's own step times (harness/scheduling/serve_real.py); each policy's timed decision overhead (harness/scheduling/run.py)
    "scheduling": frozenset({"real-cpu", "decision-overhead"}),
}


def keyed_by_device(suite: str, task: str) -> bool:
    """Whether records of this suite and task are performance records, whose cell key names the device kind."""
    if suite not in KEYED_BY_DEVICE:
        return False
    tasks = KEYED_BY_DEVICE[suite]
    return tasks is None or task in tasks


def cell_key(suite: str, task: str, method: str, impl: str, model: str, params: dict, device: str | None = None) -> str:
    """Stable identity of a measured cell: what was measured, not when; and for a performance record
    (`keyed_by_device`), the kind of device it was measured on.

    device: the record's `device` field (`device_info`) or its `device_kind`; required for a performance record,
    ignored otherwise (so callers may always pass it). Keys without a device are those of the canonical JSON of
    [suite, task, method, impl, model, params]; a performance record's list ends with {"device": its kind}.
    """
    canon = [suite, task, method, impl, model, params]
    if keyed_by_device(suite, task):
        if device is None:
            raise ValueError(f"the cell key of a {suite}/{task} record names its device (a performance record): "
                             "pass device= (the record's `device` field)")
        canon.append({"device": device_kind(device)})
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def key_device(record: dict) -> str | None:
    """The device kind a record's cell key names, None for a record keyed without a device (boards use it to keep
    two devices' measurements of one cell apart)."""
    return device_kind(record["device"]) if keyed_by_device(record["suite"], record["task"]) else None


def make_record(suite: str, task: str, method: str, impl: str, model: str, params: dict, metric: str,
                value: float, unit: str, *, seed: int = 0, protocol: dict | None = None, device: str = "cpu",
                extra: dict | None = None, provenance: dict | None = None) -> dict:
    """One validated record of the store's schema; `cell` is `cell_key` of what was measured (and, for a
    performance record, of the provenance's device).

    provenance: {"device", "versions", "git_sha"} computed once per run (git and /proc are not free); when
    None it is computed here from `device`. `time` is always now.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    prov = provenance if provenance is not None else {
        "device": device_info(device), "versions": versions(), "git_sha": git_sha()}
    for key in ("device", "versions", "git_sha"):
        if key not in prov:
            raise ValueError(f"provenance is missing field {key!r}")
    record = {"suite": suite, "task": task, "method": method, "impl": impl, "model": model, "params": params,
              "metric": metric, "value": value, "unit": unit,
              "cell": cell_key(suite, task, method, impl, model, params, device=prov["device"]),
              "protocol": dict(protocol or {}), "device": prov["device"], "versions": prov["versions"],
              "git_sha": prov["git_sha"], "seed": seed, "time": now_iso(), "extra": dict(extra or {})}
    validate(record)
    return record


def newest_records(records: list[dict], suite: str) -> list[dict]:
    """The records of `suite`, only the newest (by `time`) of each (cell, metric); of equal times the later-stored."""
    newest: dict[tuple, dict] = {}
    for r in sorted((r for r in records if r["suite"] == suite), key=lambda r: r["time"]):  # stable
        newest[(r["cell"], r["metric"])] = r
    return list(newest.values())


def validate(record: dict) -> None:
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, got {type(record).__name__}")
    for key in REQUIRED:
        if key not in record:
            raise ValueError(f"record is missing field {key!r}")
    value = record["value"]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"record field 'value' must be a finite number, got {value!r}")
    for key in ("suite", "metric", "cell"):
        if not isinstance(record[key], str) or not record[key]:
            raise ValueError(f"record field {key!r} must be a non-empty string")
    if "/" in record["suite"] or record["suite"].startswith("."):
        raise ValueError(f"record field 'suite' must be a plain name, got {record['suite']!r}")


def _checked(record) -> dict:
    validate(record)
    return record


class ResultsStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, suite: str) -> Path:
        return self.root / f"{suite}.jsonl"

    def pending_path(self, suite: str) -> Path:
        """Where an append in progress (or cut short by a crash) records the byte offset it starts at."""
        return self.root / f"{suite}.jsonl.pending"

    def committed_end(self, suite: str) -> int | None:
        """The byte offset where `suite`'s committed lines end: the start of an append that has not finished (in
        progress, or cut short by a crash; `pending_path`), else None (the whole file)."""
        try:
            return int(self.pending_path(suite).read_text(encoding="ascii"))
        except (FileNotFoundError, ValueError):  # none, or a marker whose own write was cut: no data followed it
            return None

    @contextmanager
    def reading(self, suite: str) -> Iterator[int | None]:
        """Hold `suite`'s file against appends while the block reads it (a shared `flock`; `append` takes it
        exclusively), and give where its committed lines end (`committed_end`). The file must exist."""
        fd = os.open(self.path(suite), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield self.committed_end(suite)
        finally:
            os.close(fd)

    def append(self, records: list[dict]) -> None:
        """Append records atomically (all lines of one suite in one write)."""
        if not records:
            return
        by_suite: dict[str, list[str]] = {}
        for r in records:
            validate(r)
            by_suite.setdefault(r["suite"], []).append(json.dumps(r, sort_keys=True, allow_nan=False))
        self.root.mkdir(parents=True, exist_ok=True)
        for suite, lines in by_suite.items():
            data = ("\n".join(lines) + "\n").encode()
            fd = os.open(self.path(suite), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                # O_APPEND alone keeps local writers apart; the lock also serializes writers on network
                # filesystems (NFS emulates flock with byte-range locks) and the torn-line check below.
                fcntl.flock(fd, fcntl.LOCK_EX)
                crashed = self.committed_end(suite)  # under the lock, a marker is a crashed append's: cut it off
                if crashed is not None:
                    os.ftruncate(fd, crashed)
                # An older crash may have left a torn last line: start on a fresh line so this record stays whole.
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                self._write_marker(suite, size)
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to {self.path(suite)}: {written} of {len(data)} bytes")
                os.fsync(fd)
                os.unlink(self.pending_path(suite))
            finally:
                os.close(fd)

    def _write_marker(self, suite: str, offset: int) -> None:
        """Record, durably, that an append starts at `offset` (`pending_path`)."""
        fd = os.open(self.pending_path(suite), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, str(offset).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self, suite: str | None = None) -> list[dict]:
        """Every valid record of `suite` (or of all suites); a malformed line (torn, NaN, not UTF-8, failing
        `validate`) is reported with its file:line and skipped."""
        files = [self.path(suite)] if suite else sorted(self.root.glob("*.jsonl"))
        out: list[dict] = []
        for f in files:
            if f.exists():
                with self.reading(f.name[:-len(".jsonl")]) as end:
                    out += read_jsonl(f, _checked, arg="results", what="record", allow_empty=True, stacklevel=3,
                                      end=end)
        return out

    def done_cells(self, suite: str) -> set[str]:
        return {r["cell"] for r in self.records(suite)}
