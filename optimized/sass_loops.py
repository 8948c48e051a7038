"""Static instruction counts of a compiled kernel's loops, each tied to the Python `for` it came from.

A kernel bound by instruction issue (not bytes, not FLOPs) runs in about (warp instructions executed) / (SMs x
instructions issued per cycle x clock). The executed count of a loop is its static count in the SASS times its trip
count, so `loop_counts` gives what an offline build (optimized/sm90_build.py) can say about speed before a GPU
visit: nvdisasm (carried in Triton's wheel) disassembles the cubin with line info, every backward branch closes a
loop, and the loop is attributed to the innermost `for` of the kernel's source that holds most of its instructions
(loops that live in library code, such as libdevice's slow trigonometric path, have none and are left out).
"""
from __future__ import annotations

import ast
import collections
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import triton

NVDISASM = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
_LINE = re.compile(r'\s*//## File "([^"]+)", line (\d+)')
_LABEL = re.compile(r"\.(L_x_\d+):")
_INSTR = re.compile(r"\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;")
_BRANCH = re.compile(r"BRA\s+(?:`\()?\.?(L_x_\d+)")
_OPCODE = re.compile(r"(?:@!?U?P\w+\s+)?([A-Z0-9_]+)")


@dataclass
class Loop:
    """One SASS loop: the `for` it belongs to (file name, line), its static instruction count, opcodes."""
    file: str
    line: int
    instructions: int
    opcodes: collections.Counter = field(default_factory=collections.Counter)


def disassemble(kernel) -> str:
    """nvdisasm's listing of a compiled kernel's cubin, with source line comments."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        return subprocess.run([str(NVDISASM), "-c", "-g", f.name], capture_output=True, text=True,
                              check=True).stdout


@lru_cache(maxsize=32)
def _for_ranges(path: str) -> tuple[tuple[int, int], ...]:
    tree = ast.parse(Path(path).read_text())
    return tuple((n.lineno, n.end_lineno) for n in ast.walk(tree) if isinstance(n, ast.For))


def _innermost_for(path: str, line: int) -> int | None:
    inside = [r for r in _for_ranges(path) if r[0] <= line <= r[1]]
    return max(inside)[0] if inside else None


def instructions(listing: str) -> list[tuple[str, tuple[str, int] | None, list[str]]]:
    """(instruction text, (file, line) or None, labels just before it), in address order."""
    out, src, labels = [], None, []
    for row in listing.splitlines():
        if m := _LINE.match(row):
            src = (m.group(1), int(m.group(2)))
        elif m := _LABEL.match(row):
            labels.append(m.group(1))
        elif m := _INSTR.match(row):
            out.append((m.group(2), src, labels))
            labels = []
    return out


def loop_counts(listing: str, sources: dict[str, str]) -> list[Loop]:
    """Every loop of the listing whose instructions come from `for` loops of `sources` ({file name: path}). Files
    are matched by name: Triton's cache keys a kernel by its source text, so a cached cubin may carry the path of
    another checkout of the same file."""
    ins = instructions(listing)
    where = {label: i for i, (_, _, labels) in enumerate(ins) for label in labels}
    loops = []
    for end, (text, _, _) in enumerate(ins):
        m = _BRANCH.search(text)
        if not m or where.get(m.group(1), end + 1) > end:
            continue
        body = ins[where[m.group(1)]:end + 1]
        owners = collections.Counter()
        for _, src, _ in body:
            path = sources.get(Path(src[0]).name) if src else None
            if path is not None:
                line = _innermost_for(path, src[1])
                if line is not None:
                    owners[(path, line)] += 1
        if not owners:
            continue
        (path, line), _ = owners.most_common(1)[0]
        ops = collections.Counter(_OPCODE.match(t).group(1) for t, _, _ in body)
        loops.append(Loop(Path(path).name, line, len(body), ops))
    return loops
