"""Acceptance traces (format in reference/scheduling/__init__.py): load, validate, replay.

A trace is one real request decoded speculatively: how many draft tokens the target accepted at each
verification step. Replaying it tells the simulator how many tokens each step of that request emits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from reference.jsonl import read_jsonl


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


MAX_TOKENS = 2**31 - 1  # a bound on every length field: beyond it a trace is corrupt, not long


def _int_field(row: dict, key: str, low: int) -> int:
    v = row[key]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= MAX_TOKENS:
        raise ValueError(f"trace field {key!r} must be an integer in [{low}, {MAX_TOKENS}], got {v!r:.40}")
    return v


def _times(row: dict, key: str, steps: int) -> tuple[float, ...]:
    t = row.get(key)
    if t is None or t == []:
        return ()
    if (not isinstance(t, list) or len(t) != steps
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0 for x in t)):
        raise ValueError(f"trace field {key!r} must list one finite, non-negative time per step ({steps})")
    return tuple(float(x) for x in t)


def check_trace(row: dict) -> Trace:
    """A validated Trace from one JSONL object; ValueError names the bad field."""
    if not isinstance(row, dict):
        raise ValueError(f"a trace line must be a JSON object, got {type(row).__name__}")
    for key in ("id", "prompt_len", "output_len", "draft_len", "accepted"):
        if key not in row:
            raise ValueError(f"trace is missing field {key!r}")
    rid, source = row["id"], row.get("source", "")
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"trace field 'id' must be a non-empty string, got {rid!r:.40}")
    if not isinstance(source, str):
        raise ValueError(f"trace field 'source' must be a string, got {source!r:.40}")
    prompt_len, output_len, g = (_int_field(row, "prompt_len", 0), _int_field(row, "output_len", 1),
                                 _int_field(row, "draft_len", 1))
    acc = row["accepted"]
    if not isinstance(acc, list) or not acc or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a <= g
                                                   for a in acc):
        raise ValueError(f"trace field 'accepted' must be a non-empty list of integers in [0, draft_len={g}]")
    steps = emitted(acc, output_len)
    if sum(steps) != output_len or len(steps) != len(acc):
        raise ValueError(f"trace {rid!r}: its steps emit {sum(a + 1 for a in acc)} tokens for output_len "
                         f"{output_len} (every step emits accepted + 1, only the last is cut)")
    return Trace(rid, source, prompt_len, output_len, g, tuple(acc), _times(row, "draft_ms", len(acc)),
                 _times(row, "verify_ms", len(acc)))


def load_traces(path: str | Path) -> list[Trace]:
    """Every valid trace of a JSONL file, in file order (reference/jsonl.py: a malformed line, i.e. not UTF-8, not
    JSON, or failing `check_trace`, is reported by a warning with its line number and skipped). FileNotFoundError
    for a missing file, ValueError for a file with no valid trace."""
    return read_jsonl(path, check_trace, arg="trace file", what="trace", stacklevel=3)
