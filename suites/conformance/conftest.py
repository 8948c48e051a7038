"""Fixtures of the conformance suite: the input profile and device conformance runs with, one test per --impl."""
from __future__ import annotations

import os

import pytest

from harness.kernels.conformance import default_device


@pytest.fixture
def profile(request) -> str:
    """--profile if given; else `gpu` shapes under HYPOTHESIS_PROFILE=gpu, `ci` shapes otherwise."""
    return request.config.getoption("--profile") or ("gpu" if os.environ.get("HYPOTHESIS_PROFILE") == "gpu" else "ci")


@pytest.fixture
def cli_main(capsys):
    """`python -m harness ARGS` as `harness.cli.main` (all that `python -m harness` runs) in this process, returning
    (exit code, stderr): for calls refused before anything is checked, without a new interpreter importing torch,
    Triton and transformers for each."""
    from harness.cli import main

    def run(*args: str) -> tuple[int, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def device() -> str:
    return default_device()


def pytest_generate_tests(metafunc):
    # One test per `--impl` path (an opt-in mode for kernel authors).
    if "user_impl" in metafunc.fixturenames:
        paths = metafunc.config.getoption("--impl") or [None]
        metafunc.parametrize("user_impl", paths, ids=[p or "no-impl" for p in paths])


def pytest_collection_modifyitems(config, items):
    # With --impl a kernel author asked about their function alone: every other test is deselected. Without it the
    # user-kernel test has nothing to check: deselect it rather than report a skip.
    if config.getoption("--impl"):
        drop = [item for item in items if item.originalname != "test_user_impl_conforms"]
    else:
        drop = [item for item in items if item.name == "test_user_impl_conforms[no-impl]"]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]
