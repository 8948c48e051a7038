"""Every registered implementation of every op against its reference (DESIGN.md, "Conformance rule").

`pytest suites/conformance --impl my_pkg.my_mod:my_fn [--op attention]` checks a user's function the same way.
"""
from __future__ import annotations

import os

import pytest
import torch

from harness.conformance import conform, default_dtypes
from reference.registry import all_ops, check_signature, implementations, load_callable

CASES = [(op, name) for op in sorted(all_ops()) for name in sorted(implementations(op))]


def _profile(config) -> str:
    return config.getoption("--profile") or ("gpu" if os.environ.get("HYPOTHESIS_PROFILE") == "gpu" else "ci")


@pytest.mark.parametrize("op,impl_name", CASES, ids=[f"{o}-{i}" for o, i in CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_registered_implementation_conforms(op, impl_name, dtype, request):
    if dtype not in default_dtypes(impl_name):
        pytest.fail(f"{dtype} is not checked for {impl_name}")
    report = conform(op, implementations(op)[impl_name], impl_name, profile=_profile(request.config), dtypes=(dtype,))
    assert report.examples > 0, "hypothesis drew no input"
    assert report.passed, report.summary()


def test_every_op_has_an_implementation_besides_the_reference():
    missing = [op for op in all_ops() if not implementations(op)]
    assert not missing, f"ops without any registered implementation: {missing}"


def test_user_impl_conforms(request):
    """Opt-in mode for kernel authors: runs only when --impl is given."""
    paths = request.config.getoption("--impl")
    if not paths:
        pytest.skip("no --impl given (this test checks a user's kernel: pytest suites/conformance --impl pkg.mod:fn)")
    op_opt = request.config.getoption("--op")
    for path in paths:
        fn = load_callable(path)
        ops = [op_opt] if op_opt else [op for op in all_ops() if _accepts(op, fn)]
        assert ops, f"{path} accepts the arguments of no registered op; pass --op NAME"
        for op in ops:
            report = conform(op, fn, path, profile=_profile(request.config))
            assert report.passed, report.summary()


def _accepts(op, fn) -> bool:
    try:
        check_signature(op, fn)
        return True
    except TypeError:
        return False
