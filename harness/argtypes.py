"""argparse types for the harness commands: each rejects a malformed value with a message argparse prints as
`error: argument --x: ...` (exit code 2), before anything is loaded or run.

They check what a value is (an integer, a finite number, a non-empty list, a device this machine has, an existing
directory); the range a run needs (lengths >= 64 for NIAH, a compression ratio below 1, ...) is checked by the
config's `validate()`, which the library API shares. Commands without a config (bench, train-dllm, leaderboard,
calibrate-sd) pass `minimum` / `maximum` here instead.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

Error = argparse.ArgumentTypeError


def _bounds(value, minimum, maximum, text: str):
    if minimum is not None and value < minimum:
        raise Error(f"must be >= {minimum}, got {text!r}")
    if maximum is not None and value > maximum:
        raise Error(f"must be <= {maximum}, got {text!r}")
    return value


def _int(text: str, minimum=None, maximum=None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise Error(f"{text!r} is not an integer") from None
    return _bounds(value, minimum, maximum, text)


def _float(text: str, minimum=None, maximum=None, above=None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Error(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise Error(f"must be a finite number, got {text!r}")
    if above is not None and not value > above:
        raise Error(f"must be > {above}, got {text!r}")
    return _bounds(value, minimum, maximum, text)


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An int (no "1.5", no "nan"), optionally within [minimum, maximum]."""
    def parse(text: str) -> int:
        return _int(text, minimum, maximum)

    parse.__name__ = "integer"
    return parse


def number(minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> Callable[[str], float]:
    """A finite float (never NaN or inf), optionally within [minimum, maximum] and strictly above `above`."""
    def parse(text: str) -> float:
        return _float(text, minimum, maximum, above)

    parse.__name__ = "number"
    return parse


def _list_of(item: Callable[[str], object], noun: str, kind: str) -> Callable[[str], tuple]:
    """Comma-separated `item`s, at least one; an error names the bad item and, for longer lists, the list."""
    def parse(text: str) -> tuple:
        items = [x for x in text.split(",") if x.strip()]
        if not items:
            raise Error(f"empty list {text!r}; give comma-separated {noun}")
        try:
            return tuple(item(x) for x in items)
        except Error as exc:
            raise Error(f"{exc} (in the list {text!r})" if len(items) > 1 else str(exc)) from None

    parse.__name__ = kind
    return parse


def int_list(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], tuple[int, ...]]:
    """Comma-separated integers, at least one: "1024,2048" -> (1024, 2048)."""
    return _list_of(lambda x: _int(x, minimum, maximum), "integers", "int_list")


def float_list(minimum: float | None = None, maximum: float | None = None) -> Callable[[str], tuple[float, ...]]:
    """Comma-separated finite numbers, at least one."""
    return _list_of(lambda x: _float(x, minimum, maximum), "numbers", "float_list")


def name_list(choices=None) -> Callable[[str], tuple[str, ...]]:
    """Comma-separated names, at least one, each among `choices` when given."""
    def parse(text: str) -> tuple[str, ...]:
        out = tuple(x.strip() for x in text.split(",") if x.strip())
        if not out:
            raise Error(f"empty list {text!r}; give comma-separated names")
        unknown = [x for x in out if choices is not None and x not in choices]
        if unknown:
            raise Error(f"unknown {unknown}; choose from {sorted(choices)}")
        return out

    parse.__name__ = "name_list"
    return parse


def text(what: str = "value") -> Callable[[str], str]:
    """A non-blank string."""
    def parse(value: str) -> str:
        if not value.strip():
            raise Error(f"empty {what}")
        return value

    parse.__name__ = "text"
    return parse


def device_problem(name: str) -> str | None:
    """Why torch cannot run on device `name` here ("cpu", "cuda", "cuda:N", ...), or None when it can."""
    if name == "cpu":
        return None
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        return f"{name!r} is not a torch device (use cpu, cuda or cuda:N)"
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        return f"{name!r}: only cpu and cuda devices are supported"
    if not torch.cuda.is_available():
        return f"{name!r}: CUDA is not available on this machine (torch {torch.__version__})"
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"{name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def device(value: str) -> str:
    """A device torch can run on here: cpu, cuda or cuda:N with N below the device count."""
    problem = device_problem(value.strip())
    if problem:
        raise Error(problem)
    return value.strip()


def existing_dir(value: str) -> str:
    """A directory that exists."""
    if not value.strip():
        raise Error("empty path")
    if not Path(value).is_dir():
        raise Error(f"{value!r} is not a directory" if Path(value).exists() else f"{value!r} does not exist")
    return value


def output_file(value: str) -> str:
    """A file to write: not empty, not an existing directory, its parent not a file."""
    if not value.strip():
        raise Error("empty path")
    path = Path(value)
    if path.is_dir():
        raise Error(f"{value!r} is a directory; give a file name")
    if any(p.exists() and not p.is_dir() for p in path.parents):
        raise Error(f"{value!r}: a parent of it is a file, not a directory")
    return value


def dir_problem(value: str) -> str | None:
    """Why `value` cannot be a directory to write into (created if missing), or None when it can."""
    if not value.strip():
        return "empty path"
    path = Path(value)
    if path.exists() and not path.is_dir():
        return f"{value!r} is a file, not a directory"
    if any(p.exists() and not p.is_dir() for p in path.parents):
        return f"{value!r}: a parent of it is a file, not a directory"
    return None


def output_dir(value: str) -> str:
    """A directory to write into (created if missing): not empty, not an existing file, no parent a file."""
    problem = dir_problem(value)
    if problem:
        raise Error(problem)
    return value


def run_main(parser: argparse.ArgumentParser, problem: Callable, command: Callable, argv=None) -> int:
    """A job module's `main`: parse argv, report `problem(args)` (a message or None) as a usage error (exit 2,
    before anything runs), then return `command(args)`."""
    args = parser.parse_args(argv)
    if (bad := problem(args)) is not None:
        parser.error(bad)
    return command(args)
