"""The conformance rule rejects broken implementations, each for the property it breaks, and accepts honest noise."""
from __future__ import annotations

import pytest
import torch

from harness.conformance import check_case, check_index_sets, conform
from optimized.torch_attention import attention_torch
from reference.ops.attention import attention


def wrong_scale(q, k, v, causal=True, scale=None):
    return attention_torch(q, k, v, causal, scale=1.3 * q.shape[-1] ** -0.5)


def last_rows_unwritten(q, k, v, causal=True, scale=None, out=None):
    res = attention_torch(q, k, v, causal, scale)
    out[:, :, : max(0, q.shape[2] - 3)] = res[:, :, : max(0, q.shape[2] - 3)]
    return out


def wrong_gqa_mapping(q, k, v, causal=True, scale=None):
    # Interleaves heads (h % Hkv) instead of grouping them (h // group): right only when Hkv == 1 or group == 1.
    group = q.shape[1] // k.shape[1]
    k2, v2 = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    return attention(q.float(), k2.float(), v2.float(), causal, scale).to(q.dtype)


def returns_nan(q, k, v, causal=True, scale=None):
    res = attention_torch(q, k, v, causal, scale).clone()
    res[..., 0, 0] = float("nan")
    return res


def mutates_input(q, k, v, causal=True, scale=None):
    res = attention_torch(q, k, v, causal, scale)
    k.mul_(1.0001)
    return res


def raises(q, k, v, causal=True, scale=None):
    raise RuntimeError("kernel launch failed")


def wrong_shape(q, k, v, causal=True, scale=None):
    return attention_torch(q, k, v, causal, scale)[:, :, :1]


def ignores_causal(q, k, v, causal=True, scale=None):
    return attention_torch(q, k, v, False, scale)


def missing_arg(q, k, causal=True):
    return q


def fp16_noisy(q, k, v, causal=True, scale=None):
    """Honest fp16 arithmetic (no upcast): must pass the factor-2 + atol rule."""
    return attention(q, k, v, causal, scale)


@pytest.mark.parametrize(
    "impl,prop",
    [(wrong_scale, "tolerance"), (last_rows_unwritten, "unwritten"), (wrong_gqa_mapping, "tolerance"),
     (returns_nan, "nan"), (mutates_input, "mutated_input"), (raises, "raises"), (wrong_shape, "shape"),
     (ignores_causal, "tolerance"), (missing_arg, "signature")],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_broken_attention_is_rejected_for_the_property_it_breaks(impl, prop):
    report = conform("attention", impl, impl.__name__, dtypes=(torch.float32,), max_examples=25)
    assert not report.passed, f"{impl.__name__} passed conformance"
    failure = report.failures[0]
    assert failure.property == prop, failure.message
    assert "replay: check_case('attention'" in failure.message


def test_failing_case_replays():
    report = conform("attention", wrong_scale, "wrong_scale", dtypes=(torch.float32,), max_examples=10)
    case = report.failures[0].case
    again = check_case("attention", wrong_scale, case, torch.float32)
    assert not again.passed and again.property == "tolerance"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_honest_low_precision_arithmetic_passes(dtype):
    report = conform("attention", fp16_noisy, "fp16_noisy", dtypes=(dtype,), max_examples=10)
    assert report.passed, report.summary()
    assert report.worst_error > 0  # the check compared something real


def test_index_sets_accept_ties_and_reject_wrong_indices():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(3, 20, generator=g, dtype=torch.float64)
    top = torch.topk(scores, 5).indices
    assert check_index_sets(top, scores, 5)[0]
    assert check_index_sets(top.flip(-1), scores, 5)[0]  # order does not matter
    tied = scores.clone()
    tied[0, top[0, 4]] = tied[0, 7] = tied[0, top[0, 4]]  # a tie at the k-th score: either index is right
    alt = top.clone()
    if 7 not in top[0].tolist():
        alt[0, 4] = 7
        assert check_index_sets(alt, tied, 5)[0]
    wrong = top.clone()
    wrong[1, 0] = torch.argmin(scores[1])
    ok, msg = check_index_sets(wrong, scores, 5)
    assert not ok and "row 1" in msg
    dup = top.clone()
    dup[2, 1] = dup[2, 0]
    assert not check_index_sets(dup, scores, 5)[0]
