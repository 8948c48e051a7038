"""Knob settings (reference.registry.conformance_knobs): conformance runs the explicit examples again under each
setting an implementation declares, so a configuration that is wrong only when tuned, or an entry point that hands
a knob to the wrong parameter, is rejected and its replay line names the knobs."""
from __future__ import annotations

import pytest
import torch

from harness.kernels.conformance import check_case, conform
from optimized.torch_attention import attention_torch
from reference.ops.attention import attention
from reference.registry import conformance_knobs, get_op


def _tiled(q, k, v, causal=True, scale=None, block=64, split=64):
    """Right for the default block, wrong (a rescaled output) when block is 16: a bug of a tuned configuration.
    Checks its knobs as a kernel's launcher does: block a power of two >= 16, split >= 1."""
    if block < 16 or block & (block - 1) or split < 1:
        raise ValueError(f"block must be a power of two >= 16 and split >= 1, got {block!r}, {split!r}")
    out = attention_torch(q, k, v, causal, scale)
    return out * 1.01 if block == 16 else out


def test_a_setting_that_breaks_the_kernel_is_rejected_and_replayable():
    fn = conformance_knobs({"block": 16})(lambda q, k, v, causal=True, scale=None, block=64: _tiled(
        q, k, v, causal, scale, block))
    report = conform("attention", fn, max_examples=1, dtypes=(torch.float32,))
    assert not report.passed
    (failure,) = report.failures
    assert failure.property == "tolerance" and failure.knobs == {"block": 16}
    assert "knobs={'block': 16}" in failure.replay()


def test_the_same_kernel_without_the_setting_passes():
    fn = lambda q, k, v, causal=True, scale=None, block=64: _tiled(q, k, v, causal, scale, block)  # noqa: E731
    assert conform("attention", fn, max_examples=1, dtypes=(torch.float32,)).passed


def test_a_knob_handed_to_the_wrong_parameter_is_caught():
    def swapped(q, k, v, causal=True, scale=None, block=64, split=64):
        # the mutant class "argument swap" of an entry point; the defaults are equal, so only a setting shows it
        return _tiled(q, k, v, causal, scale, split, block)

    fn = conformance_knobs({"block": 32, "split": 2})(swapped)
    report = conform("attention", fn, max_examples=1, dtypes=(torch.float32,))
    assert not report.passed and report.failures[0].knobs == {"block": 32, "split": 2}
    assert report.failures[0].property == "raises" and "block must be" in report.failures[0].detail


def test_every_setting_runs_on_every_example():
    calls = []

    @conformance_knobs({"block": 32}, {"block": 128})
    def fn(q, k, v, causal=True, scale=None, block=64):
        calls.append(block)
        return attention_torch(q, k, v, causal, scale)

    report = conform("attention", fn, max_examples=1, dtypes=(torch.float32,))
    n = len(get_op("attention").examples)
    assert report.passed and calls[:3 * n] == [64] * n + [32] * n + [128] * n


def test_check_case_passes_knobs_as_keywords():
    case = get_op("attention").examples[0]
    seen = {}

    def fn(q, k, v, causal=True, scale=None, block=64):
        seen["block"] = block
        return attention(q, k, v, causal, scale)

    assert check_case("attention", fn, case, torch.float32, knobs={"block": 8}).passed and seen == {"block": 8}


@pytest.mark.parametrize("settings, message", [
    (({},), "non-empty dict"),
    (([("block", 16)],), "non-empty dict"),
    (({"blcok": 16},), "takes no parameter"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(TypeError, match=message):
        conformance_knobs(*settings)(lambda q, k, v, causal=True, scale=None, block=64: None)
