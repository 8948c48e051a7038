"""ci/racecheck_verdict.py: which racecheck reports the GPU tier's sanitize step lets pass (replicated-lane writes of
one instruction) and which fail it (a read against a write, two instructions, anything it cannot account for)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("racecheck_verdict", ROOT / "ci" / "racecheck_verdict.py")
verdict = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("racecheck_verdict", verdict)  # its dataclass looks its module up there
_spec.loader.exec_module(verdict)

P = "========= "


def race(kind_a, at_a, kind_b, at_b, n=3, level="Error"):
    return (f"{P}{level}: Race reported between {kind_a} access at {at_a} in k.py:10\n"
            f"{P}    and {kind_b} access at {at_b} in k.py:12 [{n} hazards]\n{P}\n")


def summary(n):
    return f"{P}RACECHECK SUMMARY: {n} hazards displayed ({n} errors, 0 warnings)\n"


SAME_WRITE = race("Write", "_k+0x4ed0", "Write", "_k+0x4ed0")
CASES = {
    "clean": ("kernel / triton {}: ok\n" + f"{P}RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\n", 0),
    "replicated writes": ("ok\n" + SAME_WRITE + race("Write", "_j+0x10", "Write", "_j+0x10", 1) + summary(2), 0),
    "read vs write": (SAME_WRITE + race("Read", "_k+0x100", "Write", "_k+0x80") + summary(2), 1),
    "write vs write, two instructions": (race("Write", "_k+0x100", "Write", "_k+0x80") + summary(1), 1),
    "a warning-level read race": (race("Write", "_k+0x1", "Read", "_k+0x2", level="Warning") + summary(1), 1),
    "more hazards counted than shown": (SAME_WRITE + summary(5), 1),
    "a hazard line in another format": (f"{P}Error: Potential WAW hazard detected at __shared__ 0x404 in block (0,0,0)\n", 1),
    "a report cut after its first line": (f"{P}Error: Race reported between Write access at _k+0x1 in k.py:3\n", 1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_verdict_exit_code(name, tmp_path, capsys):
    log, expected = CASES[name]
    path = tmp_path / "racecheck.log"
    path.write_text(log, encoding="utf-8")
    assert verdict.main([str(path)]) == expected, capsys.readouterr().out


def test_parse_reads_both_sides_and_the_count():
    hazards, problems = verdict.parse(race("Read", "_k+0x100", "Write", "_k+0x80", n=21))
    assert problems == []
    (h,) = hazards
    assert h.first == ("Read", "_k+0x100", "k.py:10") and h.second == ("Write", "_k+0x80", "k.py:12")
    assert h.count == 21 and not h.tolerated and "RACE" in h.describe()


def test_usage_without_a_log():
    assert verdict.main([]) == 2
