"""The conformance rule itself: broken implementations are rejected for the property they break, honest
low-precision arithmetic is accepted, discrete outputs are compared as sets up to ties, failures replay."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from harness.kernels.conformance import (ATOL, PROPERTIES, check_case, check_index_sets, conform, default_dtypes,
                                        rule_tolerance)
from optimized.torch_attention import attention_torch
from reference import registry
from reference.ops.attention import attention, causal_mask

ROOT = Path(__file__).resolve().parents[2]


# --- broken attention implementations, one defect each -------------------------------------------------------

def wrong_scale(q, k, v, causal=True, scale=None):
    return attention_torch(q, k, v, causal, scale=1.3 * q.shape[-1] ** -0.5)


def last_rows_unwritten(q, k, v, causal=True, scale=None, out=None):
    res = attention_torch(q, k, v, causal, scale)
    keep = max(0, q.shape[2] - 3)
    out[:, :, :keep] = res[:, :, :keep]
    return out


def ignores_out(q, k, v, causal=True, scale=None, out=None):
    if out is not None:
        out.zero_()  # written, but not with the result
    return attention_torch(q, k, v, causal, scale)


def stores_past_out(q, k, v, causal=True, scale=None, out=None):
    # The right values, plus the classic store-mask bug (`d <= D` for `d < D`): one element past each row of out.
    out.copy_(attention_torch(q, k, v, causal, scale))
    wide = out.as_strided((*out.shape[:-1], out.shape[-1] + 1), out.stride(), out.storage_offset())
    wide[..., -1] = 0.0
    return out


def wrong_gqa_mapping(q, k, v, causal=True, scale=None):
    # Query head h reads KV head h % Hkv instead of h // group: right only when Hkv == 1 or group == 1.
    group = q.shape[1] // k.shape[1]
    return attention_torch(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), causal, scale)


def top_left_causal(q, k, v, causal=True, scale=None):
    # SDPA's is_causal aligns the mask top-left: wrong for a chunk appended to a cache (Lq < Lk).
    group = q.shape[1] // k.shape[1]
    k, v = k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1)
    return torch.nn.functional.scaled_dot_product_attention(q.float(), k, v, is_causal=causal, scale=scale).to(q.dtype)


def returns_nan(q, k, v, causal=True, scale=None):
    res = attention_torch(q, k, v, causal, scale).clone()
    res[..., -1, 0] = float("nan")
    return res


def mutates_input(q, k, v, causal=True, scale=None):
    res = attention_torch(q, k, v, causal, scale)
    k[..., 0, 0] += 1.0  # after computing: the result is right, the caller's k is not
    return res


def raises(q, k, v, causal=True, scale=None):
    raise RuntimeError("kernel launch failed")


def wrong_shape(q, k, v, causal=True, scale=None):
    return attention_torch(q, k, v, causal, scale)[:, :, :1]


def wrong_dtype(q, k, v, causal=True, scale=None):
    return attention_torch(q.double(), k.double(), v.double(), causal, scale)


def missing_arg(q, k, causal=True):
    return q


BROKEN = [
    (wrong_scale, "tolerance"), (last_rows_unwritten, "unwritten"), (ignores_out, "unwritten"),
    (stores_past_out, "wrote_outside"),
    (wrong_gqa_mapping, "tolerance"),
    (top_left_causal, "tolerance"), (returns_nan, "nan"), (mutates_input, "mutated_input"), (raises, "raises"),
    (wrong_shape, "shape"), (wrong_dtype, "dtype"), (missing_arg, "signature"),
]


@pytest.mark.parametrize("impl,prop", BROKEN, ids=[f.__name__ for f, _ in BROKEN])
def test_broken_attention_is_rejected_for_the_property_it_breaks(impl, prop):
    report = conform("attention", impl, dtypes=(torch.float32,), max_examples=25)
    assert not report.passed, f"{impl.__name__} passed conformance: {report.summary()}"
    failure = report.failures[0]
    assert failure.property == prop, failure.message
    assert "replay: check_case('attention', fn, {" in failure.message
    assert f"[{prop}]" in report.summary()


def test_tolerance_failure_counts_mismatches_and_shows_first_indices():
    report = conform("attention", wrong_scale, dtypes=(torch.float16,), max_examples=5)
    f = report.failures[0]
    assert f.property == "tolerance" and f.dtype == "float16"
    assert f.worst_error > f.allowed_error > ATOL[torch.float16]
    assert 0 < f.mismatches and 0 < len(f.first_indices) <= 5
    idx, got, want = f.first_indices[0]
    assert len(idx) == 4 and abs(got - want) > f.allowed_error
    assert f"{f.mismatches} of" in f.message


def test_failing_case_replays():
    report = conform("attention", wrong_gqa_mapping, dtypes=(torch.float32,), max_examples=25)
    case = report.failures[0].case
    again = check_case("attention", wrong_gqa_mapping, case, torch.float32)
    assert not again.passed and again.property == "tolerance"
    assert again.worst_error == report.failures[0].worst_error
    assert check_case("attention", attention_torch, case, torch.float32).passed


def test_shrinking_reports_a_small_failing_case(monkeypatch):
    # Without the op's explicit examples (one of which already is that small case) the draws must find the bug.
    spec = dataclasses.replace(registry.get_op("attention"), examples=())
    monkeypatch.setitem(registry.OPS, "attention", spec)
    report = conform("attention", wrong_gqa_mapping, dtypes=(torch.float32,), max_examples=25, shrink=True)
    case = report.failures[0].case
    assert report.failures[0].property == "tolerance"
    assert case["batch"] == 1 and case["kv_heads"] == 2 and case["group"] == 2, case


def test_report_records_name_every_property():
    bad = conform("attention", last_rows_unwritten, dtypes=(torch.float32,), max_examples=3).to_records()
    assert [r["property"] for r in bad] == list(PROPERTIES)
    unwritten = next(r for r in bad if r["property"] == "unwritten")
    assert not unwritten["passed"] and unwritten["failing_case"]["seed"] >= 0
    assert all(r["passed"] for r in bad if r["property"] != "unwritten")
    good = conform("attention", "torch", dtypes=(torch.float32,), max_examples=3)
    assert good.passed and good.impl == "torch" and good.examples >= 3
    assert all(r["passed"] and r["failing_case"] is None for r in good.to_records())
    json.dumps(good.to_records())  # the results store takes these as they are


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="profile"):
        conform("attention", attention_torch, profile="huge")
    with pytest.raises(ValueError, match="max_examples"):
        conform("attention", attention_torch, max_examples=0)
    with pytest.raises(ValueError, match="dtypes"):
        conform("attention", attention_torch, dtypes=(torch.int32,))
    with pytest.raises(TypeError, match="impl_fn"):
        conform("attention", 3)
    with pytest.raises(KeyError, match="no implementation"):
        conform("attention", "no_such_kernel")
    with pytest.raises(ValueError, match="dtype"):
        check_case("attention", attention_torch, {}, "float16")


def test_triton_kernels_skip_bf16_only_off_the_gpu(monkeypatch):
    # The interpreter trap (docs/design.md, "Test tiers"): bf16 tl.dot is wrong under TRITON_INTERPRET=1, so no bf16 for Triton on CPU.
    mod = types.ModuleType("fake_user_kernels")
    mod.triton = types.ModuleType("triton")
    exec("def kernel(q, k, v, causal=True, scale=None):\n    return q", mod.__dict__)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    assert default_dtypes(mod.kernel, "cpu") == (torch.float32, torch.float16)
    assert torch.bfloat16 in default_dtypes(mod.kernel, "cuda")
    assert torch.bfloat16 in default_dtypes(attention_torch, "cpu")


# --- honest low-precision arithmetic passes -----------------------------------------------------------------

def flash_style(q, k, v, causal=True, scale=None, out=None):
    """An honest low-precision kernel: FlashAttention-2 (Dao, 2023, alg. 1) over blocks of 32 keys, with q k^T and
    p v in the input dtype and the running max, sum and accumulator in float32. Its rounding differs from the
    baseline's (blocked online softmax vs one softmax), so passing is not a tautology."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    lq, lk = q.shape[2], k.shape[2]
    visible = causal_mask(lq, lk) if causal else torch.ones(lq, lk, dtype=torch.bool)
    m = torch.full((*q.shape[:3], 1), float("-inf"))
    denom = torch.zeros(*q.shape[:3], 1)
    acc = torch.zeros(*q.shape[:3], v.shape[-1])
    for s in range(0, lk, 32):
        kb, vb = k[:, :, s:s + 32], v[:, :, s:s + 32]
        sc = (q @ kb.transpose(-1, -2)).float() * scale
        sc = sc.masked_fill(~visible[:, s:s + 32], float("-inf"))
        m_new = torch.maximum(m, sc.amax(-1, keepdim=True))
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # rows with nothing visible yet
        p = torch.exp(sc - m_safe)
        alpha = torch.exp(m - m_safe)
        denom = denom * alpha + p.sum(-1, keepdim=True)
        acc = acc * alpha + (p.to(q.dtype) @ vb).float()
        m = m_new
    res = (acc / denom).to(q.dtype)
    return res if out is None else out.copy_(res)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_honest_low_precision_kernel_passes(dtype):
    report = conform("attention", flash_style, dtypes=(dtype,), max_examples=10)
    assert report.passed, report.summary()
    assert 0 < report.worst_error <= report.allowed_error


@given(st.integers(0, 2**31 - 1))
def test_honest_kernel_differs_from_the_baseline(seed):
    case = {"batch": 1, "kv_heads": 2, "group": 2, "q_len": 20, "k_len": 100, "head_dim": 32, "causal": True,
            "scale": None, "seed": seed}
    spec = registry.get_op("attention")
    inputs = spec.make_inputs(case, torch.float16, "cpu")
    assert not torch.equal(flash_style(**inputs), attention(**inputs))
    assert check_case("attention", flash_style, case, torch.float16).passed


@given(st.floats(128.0, 1e5), st.integers(0, 2**31 - 1))
def test_the_floor_is_one_unit_at_the_outputs_scale(top, seed):
    """A baseline that lands on the oracle's nearest float32 value leaves the floor alone to judge: one unit in the
    last place of the largest element passes, eight fail (at magnitudes where a unit outweighs atol)."""
    g = torch.Generator().manual_seed(seed)
    oracle = (torch.rand(16, generator=g, dtype=torch.float64) * 2 - 1) * top
    oracle[int(torch.randint(16, (1,), generator=g))] = top
    baseline = oracle.float().double()  # the oracle rounded: the best a float32 result can be
    allowed, base_err, floor = rule_tolerance(baseline, oracle, torch.float32)
    ulp = torch.finfo(torch.float32).eps * top
    assert base_err <= ulp / 2 and floor == pytest.approx(ATOL[torch.float32] + ulp)
    assert float((baseline - oracle).abs().max()) + ulp / 2 <= allowed  # half a unit more than rounding: passes
    assert 8 * ulp > allowed  # eight units off at the largest element: fails


@pytest.mark.parametrize("op,case", [
    ("fourier_compress", {"batch": 1, "channels": 1, "length": 142, "period": 142, "num_freqs": 2,
                          "magnitude": 1000.0, "seed": 54087013}),
    ("fourier_stream_update", {"batch": 1, "channels": 16, "tokens": 25, "start": 25, "period": 58, "num_freqs": 8,
                               "magnitude": 1000.0, "seed": 25}),
], ids=["compress", "stream_update"])
def test_kernels_a_unit_off_at_magnitude_1000_conform(op, case):
    """Two float32 cases drawn at 150 examples (seed 11) where the Triton kernel is within one unit of the oracle's
    largest element but the baseline happened to round closer: they failed the rule while its floor was atol
    alone."""
    res = check_case(op, registry.get_impl(op, "triton"), case, torch.float32)
    assert res.passed, res.message
    assert res.worst_error > 10 * ATOL[torch.float32]  # many atols off: the floor's magnitude term is what passes it


# --- discrete outputs: index sets up to ties ----------------------------------------------------------------

def test_index_sets_accept_reordering_and_ties():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(3, 20, generator=g, dtype=torch.float64) + 0.1
    top = torch.topk(scores, 5).indices
    assert check_index_sets(top, scores, 5) == (True, "")
    assert check_index_sets(top.flip(-1), scores, 5)[0]  # order does not matter
    outside = next(i for i in range(20) if i not in top[0].tolist())
    tied = scores.clone()
    tied[0, outside] = tied[0, top[0, -1]]  # an exact tie with the k-th score: either index is a top-k
    alt = top.clone()
    alt[0, -1] = outside
    assert check_index_sets(alt, tied, 5)[0]
    near = scores.clone()
    near[0, outside] = near[0, top[0, -1]] - 1e-4  # a near-tie: accepted within atol, rejected without
    assert check_index_sets(alt, near, 5, atol=1e-3)[0]
    assert not check_index_sets(alt, near, 5)[0]


def test_a_tie_at_the_kth_place_does_not_excuse_dropping_a_larger_score():
    """With a tied k-th score (common under max-pooled saliency), a set of tied indices that leaves out a strictly
    larger score is not a top-k: every index above the k-th by more than the tolerance must be chosen."""
    scores = torch.tensor([[5.0, 3.0, 3.0, 3.0, 1.0]], dtype=torch.float64)
    assert check_index_sets(torch.tensor([[0, 2]]), scores, 2)[0]  # the tie broken either way
    assert check_index_sets(torch.tensor([[3, 0]]), scores, 2)[0]
    ok, msg = check_index_sets(torch.tensor([[1, 2]]), scores, 2)  # both tied, the 5.0 dropped
    assert not ok and "index 0" in msg and "not chosen" in msg
    assert check_index_sets(torch.tensor([[1, 2]]), scores, 2, atol=2.5)[0]  # within a (huge) tolerance: a near-tie


def test_index_sets_reject_wrong_repeated_and_out_of_range_indices():
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(2, 3, 30, generator=g) + 0.1
    top = torch.topk(scores, 4).indices
    wrong = top.clone()
    wrong[1, 2, 0] = torch.argmin(scores[1, 2])
    ok, msg = check_index_sets(wrong, scores, 4)
    assert not ok and "row 5" in msg  # rows are flattened: (1, 2) is row 5
    dup = top.clone()
    dup[0, 0, 1] = dup[0, 0, 0]
    assert not check_index_sets(dup, scores, 4)[0]
    oor = top.clone()
    oor[0, 1, 0] = 30
    assert "out of range" in check_index_sets(oor, scores, 4)[1]
    assert not check_index_sets(top.float(), scores, 4)[0]
    assert not check_index_sets(top[..., :3], scores, 4)[0]
    with pytest.raises(ValueError, match="k must"):
        check_index_sets(top, scores, 0)


def _topk_reference(x, k):
    """A small op with a discrete output, for testing the rule: (softmax(x) [R, N], its top-k indices [R, k])."""
    p = torch.softmax(x, dim=-1)
    return p, torch.topk(p, k, dim=-1).indices


def _topk_cases(profile):
    return st.fixed_dictionaries({"rows": st.integers(1, 4), "n": st.integers(8, 50), "k": st.integers(1, 8),
                                  "seed": st.integers(0, 2**31 - 1)})


def _topk_inputs(case, dtype, device):
    g = torch.Generator().manual_seed(case["seed"])
    return {"x": torch.randn(case["rows"], case["n"], generator=g).to(device=device, dtype=dtype), "k": case["k"]}


def topk_float32(x, k):
    p = torch.softmax(x.float(), dim=-1)
    return p.to(x.dtype), torch.topk(p, k, dim=-1).indices.flip(-1)


def topk_picks_bottom(x, k):
    p = torch.softmax(x.float(), dim=-1)
    return p.to(x.dtype), torch.topk(p, k, dim=-1, largest=False).indices


@pytest.fixture
def topk_op(monkeypatch):
    spec = registry.OpSpec("test_topk", _topk_reference, _topk_cases, _topk_inputs, float_inputs=("x",),
                           discrete_outputs=(1,))
    monkeypatch.setitem(registry.OPS, spec.name, spec)  # removed again after the test
    monkeypatch.setitem(registry.IMPLS, spec.name, {})
    return spec.name


def test_discrete_outputs_compared_as_sets(topk_op):
    ok = conform(topk_op, topk_float32, dtypes=(torch.float32, torch.float16), max_examples=10)
    assert ok.passed, ok.summary()
    bad = conform(topk_op, topk_picks_bottom, dtypes=(torch.float32,), max_examples=10)
    assert not bad.passed and bad.failures[0].property == "discrete", bad.summary()


# --- the opt-in --impl mode of the conformance suite --------------------------------------------------------

def test_pytest_impl_option_checks_a_user_function(tmp_path):
    cmd = [sys.executable, "-m", "pytest", "suites/conformance/test_conformance.py::test_user_impl_conforms",
           "-q", "-p", "no:cacheprovider", "--op", "attention", "--results", str(tmp_path),
           "--impl", "optimized.torch_attention:attention_torch", "--impl", "suites.conformance.test_rule:wrong_scale"]
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]
    assert "1 failed, 1 passed" in text, text[-3000:]
    assert "[tolerance] attention" in text
    assert "replay: check_case('attention', get_impl('attention', 'suites.conformance.test_rule:wrong_scale')" in text
    records = [json.loads(line) for line in (tmp_path / "conformance.jsonl").read_text().splitlines()]
    verdict = {r["impl"]: r["value"] for r in records if r["params"]["property"] == "all" and r["metric"] == "passed"}
    assert verdict == {"optimized.torch_attention:attention_torch": 1.0, "suites.conformance.test_rule:wrong_scale": 0.0}
