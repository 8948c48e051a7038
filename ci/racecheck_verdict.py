"""Sort the hazards of a `compute-sanitizer --tool racecheck` log into tolerated and failing (ci/gpu.sh, "sanitize").

A Triton kernel never addresses shared memory itself: the compiler stages reductions, layout conversions, gathers
and dot operands there. So a hazard racecheck reports is in the compiler's lowering of our kernel, and one pattern
of it is known: where a tensor's layout replicates an element over several lanes (the result of a reduction, or a
slice of a wider tile), every lane holding it stores it to the same shared-memory slot with the same instruction.
racecheck reports that as a write-write race (triton-lang/triton#7264: the lanes of a butterfly reduction can hold
values that differ in the last bits, so which one lands is unspecified; each is a correctly rounded order of the
same sum). Seen on an H100 in `tl.sum` and `tl.gather` lowerings (docs/conformance.md).

Verdict per reported pair: **tolerated** when both accesses are writes by the same instruction (same kernel and
offset); **failing** otherwise (a read against a write is a missing barrier: a real race), and so is any hazard line
this cannot parse, or a summary that counts more hazards than the log shows (raise --print-limit).

Usage: python ci/racecheck_verdict.py LOG  (exit 0: nothing failing; 1: something failing, listed)
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass

_FIRST = re.compile(r"(Error|Warning): Race reported between (Read|Write) access at (\S+) in (\S+)")
_SECOND = re.compile(r"and (Read|Write) access at (\S+) in (\S+) \[(\d+) hazards?\]")
_SUMMARY = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed")


@dataclass(frozen=True)
class Hazard:
    """One reported pair: access kinds, instruction (kernel+offset) and source line of each side, and the count."""

    first: tuple[str, str, str]
    second: tuple[str, str, str]
    count: int

    @property
    def tolerated(self) -> bool:
        return self.first[0] == self.second[0] == "Write" and self.first[1] == self.second[1]

    def describe(self) -> str:
        kind = "replicated-lane write (tolerated)" if self.tolerated else "RACE"
        return (f"{kind}: {self.first[0]} at {self.first[1]} ({self.first[2]}) vs {self.second[0]} at "
                f"{self.second[1]} ({self.second[2]}), {self.count} hazards")


def parse(log: str) -> tuple[list[Hazard], list[str]]:
    """(hazards, problems): every reported pair, and what could not be accounted for."""
    lines = [line.split("=========", 1)[-1].strip() for line in log.splitlines()]
    hazards, problems, displayed = [], [], 0
    for i, line in enumerate(lines):
        if m := _SUMMARY.search(line):
            displayed += int(m.group(1))
            continue
        first = _FIRST.search(line)
        if first is None:
            if "hazard" in line.lower() and not _SECOND.search(line):
                problems.append(f"unparsed hazard line: {line}")
            continue
        second = _SECOND.search(lines[i + 1]) if i + 1 < len(lines) else None
        if second is None:
            problems.append(f"a race report without its second access: {line}")
            continue
        hazards.append(Hazard(first.group(2, 3, 4), second.group(1, 2, 3), int(second.group(4))))
    if displayed > len(hazards):
        problems.append(f"the summary counts {displayed} hazards displayed, the log shows {len(hazards)}")
    return hazards, problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1])
        return 2
    with open(args[0], encoding="utf-8", errors="replace") as f:
        hazards, problems = parse(f.read())
    for h in hazards:
        print("racecheck:", h.describe())
    for p in problems:
        print("racecheck: FAILING:", p)
    failing = [h for h in hazards if not h.tolerated]
    print(f"racecheck verdict: {len(hazards) - len(failing)} tolerated, {len(failing)} failing, "
          f"{len(problems)} unaccounted")
    return 1 if failing or problems else 0


if __name__ == "__main__":
    sys.exit(main())
