"""Every registered implementation of every op against its reference (docs/conformance.md).

Parametrized from the registry: a new op or kernel is picked up without editing this file.
`pytest suites/conformance --impl my_pkg.my_mod:my_fn [--op attention] [--results DIR]` checks a user's function the
same way and stores its conformance report like `python -m harness conform`.
"""
from __future__ import annotations

import pytest
from hypothesis import settings

from harness.kernels.conformance import conform, default_device, default_dtypes
from harness.kernels.conformance_report import run_and_record
from reference.registry import all_ops, check_signature, implementations, load_callable

CASES = [
    pytest.param(op, name, dtype, id=f"{op}-{name}-{str(dtype).replace('torch.', '')}")
    for op, spec in sorted(all_ops().items())
    for name, fn in sorted(implementations(op).items())
    for dtype in default_dtypes(fn, default_device())
    if dtype in spec.dtypes
]


@pytest.mark.parametrize("op,impl_name,dtype", CASES)
def test_registered_implementation_conforms(op, impl_name, dtype, profile, device):
    report = conform(op, implementations(op)[impl_name], profile, dtypes=(dtype,), impl_name=impl_name, device=device)
    assert report.examples > 0, "hypothesis drew no input"
    assert report.passed, report.summary()


def test_every_op_has_an_implementation_besides_the_reference():
    missing = [op for op in all_ops() if not implementations(op)]
    assert not missing, f"ops without any registered implementation: {missing}"


def test_user_impl_conforms(user_impl, request, profile, device):
    """Opt-in mode for kernel authors: one test per --impl path; deselected when none is given (conftest.py).

    Writes the same conformance report as `python -m harness conform` into --results DIR when given.
    """
    assert user_impl is not None, "run with --impl package.module:function"
    fn = load_callable(user_impl)
    op_opt = request.config.getoption("--op")
    if op_opt is not None and op_opt not in all_ops():
        pytest.fail(f"--op {op_opt!r} is not a registered op; known: {sorted(all_ops())}")
    ops = [op_opt] if op_opt else [op for op in sorted(all_ops()) if _accepts(op, fn)]
    assert ops, f"{user_impl} accepts the arguments of no registered op; pass --op NAME"
    failures = []
    for op in ops:
        report, _, _ = run_and_record(op, fn, user_impl, profile=profile, device=device,
                                      max_examples=settings().max_examples, results=request.config.getoption("--results"))
        if report.passed:
            print(report.summary())  # shown with -s or -rP: the worst error against the allowed one
        else:
            failures.append(report.summary())
    assert not failures, "\n\n".join(failures)


def _accepts(op, fn) -> bool:
    try:
        check_signature(op, fn)
        return True
    except TypeError:
        return False
