"""Acceptance traces (format in reference/scheduling/__init__.py): load, validate, replay.

A trace is one real request decoded speculatively: how many draft tokens the target accepted at each
verification step. Replaying it tells the simulator how many tokens each step of that request emits.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Trace:
    id: str
    source: str
    prompt_len: int
    output_len: int
    draft_len: int
    accepted: tuple[int, ...]
    draft_ms: tuple[float, ...] = ()
    verify_ms: tuple[float, ...] = ()

    @property
    def acceptance_rate(self) -> float:
        """Mean accepted / draft_len over the trace's steps."""
        return sum(self.accepted) / (self.draft_len * len(self.accepted)) if self.accepted else 0.0


def emitted(accepted: tuple[int, ...] | list[int], output_len: int) -> list[int]:
    """Tokens each step emits: accepted + 1, the last step cut at output_len."""
    out, left = [], output_len
    for a in accepted:
        if left <= 0:
            break
        out.append(min(a + 1, left))
        left -= out[-1]
    return out


def check_trace(row: dict) -> Trace:
    """A validated Trace from one JSONL object; ValueError names the bad field."""
    if not isinstance(row, dict):
        raise ValueError(f"a trace line must be a JSON object, got {type(row).__name__}")
    for key in ("id", "prompt_len", "output_len", "draft_len", "accepted"):
        if key not in row:
            raise ValueError(f"trace is missing field {key!r}")
    for key in ("prompt_len", "output_len", "draft_len"):
        v = row[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "prompt_len" else 1):
            raise ValueError(f"trace field {key!r} must be a positive integer, got {v!r}")
    g, acc = row["draft_len"], row["accepted"]
    if not isinstance(acc, list) or not acc or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a <= g
                                                   for a in acc):
        raise ValueError(f"trace field 'accepted' must be a non-empty list of integers in [0, draft_len={g}]")
    if sum(emitted(acc, row["output_len"])) != row["output_len"] or len(emitted(acc, row["output_len"])) != len(acc):
        raise ValueError(f"trace {row['id']!r}: its steps emit {sum(a + 1 for a in acc)} tokens for output_len "
                         f"{row['output_len']} (every step emits accepted + 1, only the last is cut)")
    times = {}
    for key in ("draft_ms", "verify_ms"):
        t = row.get(key, [])
        if t and (not isinstance(t, list) or len(t) != len(acc) or any(not isinstance(x, (int, float)) or x < 0 for x in t)):
            raise ValueError(f"trace field {key!r} must list one non-negative time per step ({len(acc)})")
        times[key] = tuple(float(x) for x in t)
    return Trace(str(row["id"]), str(row.get("source", "")), row["prompt_len"], row["output_len"], g, tuple(acc),
                 times["draft_ms"], times["verify_ms"])


def load_traces(path: str | Path) -> list[Trace]:
    """Every valid trace of a JSONL file; a malformed line is reported (warning with its line number) and skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file {str(path)!r} does not exist")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(check_trace(json.loads(line)))
        except (json.JSONDecodeError, ValueError) as exc:
            warnings.warn(f"{path}:{n}: skipped malformed trace ({exc})", stacklevel=2)
    if not out:
        raise ValueError(f"trace file {str(path)!r} holds no valid trace")
    return out
