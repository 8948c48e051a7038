"""Shared pytest configuration: hypothesis profiles, the repo root on sys.path, the conformance suite's options.

Profiles (docs/testing.md): `ci` (default; few examples, derandomized, no deadline: CPU and the Triton interpreter),
`dev` (more), `gpu` (many, for `pytest -m gpu` on a GPU runner). Choose with HYPOTHESIS_PROFILE=<name>.
Options: `--impl package.module:function` (repeatable) checks a user's kernel in suites/conformance,
`--op NAME` says which op it implements, `--profile ci|gpu` picks the input shapes (default: `gpu` under the
gpu hypothesis profile, else `ci`), `--results DIR` is where its conformance report is stored (default: nowhere).
Under the Triton interpreter, int32 overflow checks raise with LONGCTX_OVERFLOW_CHECKS=1 and are skipped otherwise.
With `--impl`, only the user's conformance test runs (suites/conformance/conftest.py deselects the rest).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The same outcome on any host. One intra-op thread unless told otherwise: values that depend on summation order
# then do not depend on the core count, Ray workers (one CPU each) compute like this process, and a loaded machine
# is not oversubscribed; subprocesses inherit it. Triton kernels run through the interpreter where no GPU can
# compile them: set before any kernel module is imported, so `pytest suites/` needs no TRITON_INTERPRET=1 on a CPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402  (after OMP_NUM_THREADS)

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.kernels.conformance_report import PROFILE_EXAMPLES  # noqa: E402  (after the root is on sys.path)
from harness.kernels.interpreter import overflow_checks_wanted, set_overflow_checks  # noqa: E402

if os.environ.get("TRITON_INTERPRET") == "1":
    # The interpreter computes int32 overflow checks and drops them (no debug): ~40% of its time for nothing
    # (harness/kernels/interpreter.py). LONGCTX_OVERFLOW_CHECKS=1 makes them raise instead.
    set_overflow_checks(overflow_checks_wanted())

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# ci is derandomized and keeps no example database: every run draws the same cases (seeded from each test's own
# code), so whether a submission lands never depends on a draw. dev and gpu draw afresh to find what ci misses.
# the sizes are `harness conform`'s defaults too (PROFILE_EXAMPLES): ci 8 (10 until 2026-12-06; the CPU suite's time is
# mostly these draws run through the Triton interpreter, and it came within 10% of CI's 10-minute bound)
settings.register_profile("ci", max_examples=PROFILE_EXAMPLES["ci"], derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=PROFILE_EXAMPLES["dev"], **_COMMON)
settings.register_profile("gpu", max_examples=PROFILE_EXAMPLES["gpu"], **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    group = parser.getgroup("longctx-bench conformance")
    group.addoption("--impl", action="append", default=[], metavar="PKG.MOD:FN",
                    help="check a user's function against an op's reference (repeatable)")
    group.addoption("--op", default=None, metavar="NAME",
                    help="the op that --impl implements (default: every op whose arguments it accepts)")
    group.addoption("--profile", default=None, choices=("ci", "dev", "gpu"),
                    help="conformance input shapes: ci (small) or gpu (LLaMA-3-8B heads, long Lk)")
    group.addoption("--results", default=None, metavar="DIR",
                    help="results store that --impl writes its conformance report to (DIR/conformance.jsonl; "
                    "default: none, the report is printed only)")


def pytest_configure(config):
    # A user's module given by --impl usually lives in the directory pytest was started from.
    if config.getoption("--impl") and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    # The users of the embedded model first, in their order: pytest-xdist's `worksteal` scheduler (pyproject's addopts)
    # starts each worker on a block of consecutive tests, so they mostly run in one worker, which loads the model
    # once (`embedded_lm`; a second worker that steals one reads the de-quantized copy on disk in under a second).
    # Nothing else moves; a test's outcome never depends on the order.
    items.sort(key=lambda item: "embedded_lm" not in item.fixturenames)


@pytest.fixture(scope="module")
def one_thread_module():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread_module")`): small dLLM
    shapes gain little from a second thread, and on a busy 2-core machine its hand-offs triple the time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def embedded_lm():
    """The embedded model, `load_model("smollm2")`, once per process (the first load on a machine de-quantizes its
    GGUF file, ~20 s on a CPU, and stores a copy that later loads read in under a second: harness/lm/gguf_cache.py),
    kept in `harness.worker_cache` under the key the sweeps use, so the real serving loop run in-process
    (harness/scheduling/serve_real.py) takes the same model. Users leave it as loaded: a module that switches its
    attention implementation puts the loaded one back (suites/accuracy/test_niah_smoke.py)."""
    from harness.lm.model import load_model
    from harness.worker_cache import cached

    return cached(("model", "smollm2"), lambda: load_model("smollm2"))
