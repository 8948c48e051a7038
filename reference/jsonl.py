"""Reading JSONL files that people and other tools write: a malformed line is reported and skipped.

Shared by the loaders of LongBench rows (harness/kv/longbench.py) and acceptance traces (reference/scheduling/trace.py);
it lives in `reference` because `reference` never imports `harness`.

A line is malformed when it is not UTF-8, not JSON (NaN, Infinity and numbers beyond the float range included:
JSON has no such values, and a field that needs a finite number must never get one), nested too deeply to parse,
or when the caller's `check` rejects it (missing field, wrong type, negative length, ...). Each one is reported by
a warning naming `file:line` and the reason, then one summary warning counts them; everything valid before and
after it is returned, in file order. Blank lines are no rows and are skipped silently (JSONL writers often end
with one). A missing file raises FileNotFoundError; a file with no valid row raises ValueError (unless the caller
allows it): both name the path and the argument it came from.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


class MalformedRowWarning(UserWarning):
    """A row (line) of a user-provided file was skipped; the message says where and why."""


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the float range")
    return value


def parse_line(line: bytes):
    """The JSON value of one line (bytes, without its newline); ValueError says why it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # NaN / Infinity / 1e999, or an integer of more digits than Python converts
        raise ValueError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def read_json_object(path: str | Path, what: str) -> dict:
    """The JSON object a whole file holds (NaN / Infinity refused, like a line); ValueError names `what` and path."""
    path = Path(path)
    try:
        data = parse_line(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{what}: {str(path)!r} is {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what}: {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def read_jsonl(path: str | Path, check: Callable[[object], T], *, arg: str = "path", what: str = "row",
               limit: int | None = None, allow_empty: bool = False, stacklevel: int = 2,
               end: int | None = None) -> list[T]:
    """`check(obj)` of every valid line of the JSONL file `path`, in file order (at most `limit` of them); with
    `end`, only the lines that end within the file's first `end` bytes.

    check: returns the row to keep or raises ValueError / TypeError with the reason it is malformed.
    arg: the argument or option the path came from, named in errors (e.g. "--data-dir").
    Each skipped line gets a MalformedRowWarning "<path>:<line>: <reason>; <what> skipped", then one summary
    warning "<path>: skipped N malformed <what>s of M". Raises FileNotFoundError when `path` is not a file and
    ValueError when no line is valid (unless `allow_empty` or `limit` is 0).
    """
    path = Path(path)
    if not path.is_file():
        kind = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{arg}: {str(path)!r} {kind}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    out: list[T] = []
    bad = total = 0
    if limit == 0:
        return out
    pos = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            pos += len(raw)
            if end is not None and pos > end:
                break
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            total += 1
            try:
                row = check(parse_line(line))
            except (ValueError, TypeError) as exc:
                bad += 1
                warnings.warn(f"{path}:{lineno}: {exc}; {what} skipped", MalformedRowWarning, stacklevel=stacklevel)
                continue
            out.append(row)
            if limit is not None and len(out) >= limit:
                break
    if bad:
        warnings.warn(f"{path}: skipped {bad} malformed {what}{'s' if bad > 1 else ''} of {total}", MalformedRowWarning,
                      stacklevel=stacklevel)
    if not out and not allow_empty:
        reason = f"all {total} non-blank lines are malformed" if total else "it is empty"
        raise ValueError(f"{arg}: {str(path)!r} holds no valid {what} ({reason})")
    return out
