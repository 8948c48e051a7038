"""Run conformance on each mutant of an implementation (harness/kernels/mutate.py), one at a time, each under a time limit.

The unmutated implementation is checked first, with a line tracer on its module: it must pass, and only mutants on
lines that run executed are kept (a line the profile never reaches, such as a GPU-only branch under the
interpreter, cannot be told apart by any input of that profile). Each mutant then runs in a forked child (the
parent has imported torch, Triton and the registry once): the mutated module is written to a temporary file,
imported under a name of its own with registration switched off (the registry keeps the reference and the real
implementations), and `conform` checks its entry function dtype by dtype, stopping at the first failure.

Verdicts: killed (conformance failed: the property is kept), survived (passed every case), crashed (the mutant
could not be imported, or the child died without a verdict) and timeout (no verdict within the limit). A
crash or timeout is a detection too: the score counts killed + crashed + timeout over the non-equivalent mutants
(harness/kernels/mutation_report.py).
"""
from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from harness.kernels.mutate import Mutant, entry_point, generate, sample

STATUSES = ("killed", "survived", "crashed", "timeout")


@dataclass
class MutantResult:
    mutant: Mutant
    status: str
    property: str | None = None  # the failing conformance property of a killed mutant
    detail: str = ""  # its message's first line, or the crash's last line
    seconds: float = 0.0


def run_checks(op: str, fn: Callable, profile: str, max_examples: int | None, device: str) -> tuple[bool, str, str]:
    """Conformance of `fn` dtype by dtype, stopping at the first failing one: (passed, property, first line)."""
    from harness.kernels.conformance import conform
    from harness.kernels.conformance_report import checked_dtypes

    for dtype in checked_dtypes(op, fn, device):
        report = conform(op, fn, profile, dtypes=(dtype,), max_examples=max_examples, device=device)
        if not report.passed:
            f = report.failures[0] if report.failures else None
            detail = (f.message if f else report.summary()).splitlines()[0][:300]
            return False, (f.property if f else "examples"), detail
    return True, "", ""


def traced_lines(path: str, run: Callable[[], object]) -> tuple[object, set[int]]:
    """Run `run()` with a line tracer on the file `path`: (its result, the line numbers of that file that ran)."""
    lines: set[int] = set()
    path = os.path.realpath(path)
    mine: dict[str, bool] = {}  # co_filename -> is it `path`: the tracer sees every call, so it must be cheap

    def local(frame, event, arg):
        if event == "line":
            lines.add(frame.f_lineno)
        return local

    def tracer(frame, event, arg):
        name = frame.f_code.co_filename
        hit = mine.get(name)
        if hit is None:
            hit = mine[name] = os.path.realpath(name) == path
        if hit:
            lines.add(frame.f_lineno)
            return local
        return None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = run()
    finally:
        sys.settrace(old)
    return result, lines


def load_mutant(mutant: Mutant, module_name: str, entry: str, directory: str) -> Callable:
    """Import the mutated module from a file in `directory` under a name of its own; registration is a no-op, so
    the registry's implementations and references stay the unmutated ones. Returns its `entry` attribute."""
    import reference.registry as registry

    # Same signatures as the real ones (a stub that rejects a keyword such as bench= makes every mutant "crash" at
    # import: a detection that inflates the score).
    registry.register_impl = lambda op, name, *, bench=True: (lambda fn: fn)
    registry.register_op = lambda spec: spec
    registry.register_baseline = lambda op, name, bench: bench
    package, _, base = module_name.rpartition(".")
    name = f"{package + '.' if package else ''}_mutant_{base}"
    path = os.path.join(directory, f"_mutant_{base}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(mutant.source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, entry)


def _child(write_fd: int, mutant: Mutant, op: str, module_name: str, entry: str, profile: str,
           max_examples: int | None, device: str) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    with tempfile.TemporaryDirectory(prefix="longctx-mutant-") as directory:
        try:
            fn = load_mutant(mutant, module_name, entry, directory)
        except BaseException as exc:  # noqa: BLE001 - whatever the mutant raises on import is its verdict
            verdict = {"status": "crashed", "detail": f"import: {type(exc).__name__}: {exc}"[:300]}
        else:
            try:
                passed, prop, detail = run_checks(op, fn, profile, max_examples, device)
                verdict = {"status": "survived"} if passed else {"status": "killed", "property": prop,
                                                                 "detail": detail}
            except BaseException as exc:  # noqa: BLE001 - a failure of the checks themselves
                tb = traceback.format_exc().strip().splitlines()
                verdict = {"status": "crashed", "detail": f"{type(exc).__name__}: {exc}; {tb[-1] if tb else ''}"[:300]}
    os.write(write_fd, json.dumps(verdict).encode())
    os.close(write_fd)


def run_mutant(mutant: Mutant, op: str, module_name: str, entry: str, profile: str, max_examples: int | None,
               timeout_s: float, device: str = "cpu") -> MutantResult:
    """One mutant in a forked child under `timeout_s` seconds of wall time."""
    start = time.perf_counter()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            os.close(read_fd)
            _child(write_fd, mutant, op, module_name, entry, profile, max_examples, device)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    data, deadline, timed_out = b"", start + timeout_s, False
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    os.close(read_fd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    if timed_out:
        return MutantResult(mutant, "timeout", detail=f"no verdict within {timeout_s:.0f} s", seconds=seconds)
    try:
        verdict = json.loads(data.decode())
    except (ValueError, UnicodeDecodeError):
        why = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        return MutantResult(mutant, "crashed", detail=f"the child died without a verdict ({why})", seconds=seconds)
    return MutantResult(mutant, verdict["status"], verdict.get("property"), verdict.get("detail", ""), seconds)


@dataclass
class Campaign:
    """What `mutate_impl` ran: the results, plus what the report needs to say about the sample."""

    op: str
    impl: str
    function: str  # module:qualname of the entry function
    path: str
    source: str
    results: list
    sites: int  # mutants of the reached code on lines the unmutated run executed
    unrun: int  # mutants left out: their line never ran under this profile
    baseline_s: float


def mutate_impl(op: str, fn: Callable, impl: str, profile: str = "ci", max_mutants: int | None = None,
                seed: int = 0, max_examples: int | None = None, timeout_s: float | None = None, device: str = "cpu",
                progress: Callable[[str], None] | None = None) -> Campaign:
    """Generate the mutants of `fn`'s module, sample `max_mutants` with `seed`, and run each; see the module doc.

    timeout_s: per mutant; default 3 x the unmutated run's time + 30 s. Raises ValueError when the unmutated
    implementation fails conformance (no mutant can then be judged).
    """
    path, source, entry = entry_point(fn)
    module_name = getattr(fn, "__module__", None) or "mutated"
    start = time.perf_counter()
    (passed, prop, detail), executed = traced_lines(path, lambda: run_checks(op, fn, profile, max_examples, device))
    baseline_s = time.perf_counter() - start
    if not passed:
        raise ValueError(f"{impl} fails conformance of op {op!r} unmutated ([{prop}] {detail}); fix it first")
    mutants, unrun = generate(source, entry, executed)
    chosen = sample(mutants, max_mutants, seed)
    limit = timeout_s if timeout_s is not None else 3 * baseline_s + 30
    if progress:
        progress(f"{impl}: unmutated run {baseline_s:.1f} s; {len(mutants)} mutants on executed lines "
                 f"({unrun} on lines that never ran left out), {len(chosen)} sampled (seed {seed}); "
                 f"limit {limit:.0f} s each")
    results = []
    for i, mutant in enumerate(chosen, 1):
        r = run_mutant(mutant, op, module_name, entry, profile, max_examples, limit, device)
        results.append(r)
        if progress:
            what = f" [{r.property}]" if r.property else (f" ({r.detail[:80]})" if r.status != "survived" else "")
            progress(f"  {i}/{len(chosen)} {r.status}{what} {r.seconds:.1f} s  line {mutant.line}: {mutant.key}")
    function = f"{module_name}:{getattr(fn, '__qualname__', entry)}"
    return Campaign(op, impl, function, path, source, results, len(mutants), unrun, baseline_s)
