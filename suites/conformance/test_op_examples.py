"""The explicit examples of every op (OpSpec.examples) and how `conform` draws: examples are valid cases checked
first, and the same seed (or the derandomized ci draw) gives the same verdict on every run."""
from __future__ import annotations

import hashlib
import importlib
import inspect

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from harness.kernels.conformance import conform, draws
from reference.registry import all_ops, get_op

OPS = sorted(all_ops())


def _drawn_case(op: str) -> dict:
    got: list[dict] = []

    @settings(max_examples=1, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(get_op(op).cases("ci"))
    def draw(case):
        got.append(case)

    draw()
    return got[0]


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_valid_explicit_examples(op):
    spec = get_op(op)
    assert len(spec.examples) >= 2, f"{op}: give at least two boundary examples"
    keys = set(_drawn_case(op))
    for case in spec.examples:
        assert set(case) == keys, f"{op}: example {case} has keys {sorted(case)}, a drawn case {sorted(keys)}"
        inputs = spec.make_inputs(case, torch.float64, torch.device("cpu"))
        out = spec.reference(**inputs)  # raises on an invalid case
        outs = out if isinstance(out, tuple) else (out,)
        assert all(torch.isfinite(o.double()).all() for o in outs if o.is_floating_point()), f"{op}: {case}"


def test_first_failing_example_is_reported_and_nothing_is_drawn():
    ref = get_op("attention").reference
    calls = []

    def right_only_on_single_key(q, k, v, causal=True, scale=None):
        calls.append(k.shape[2])
        out = ref(q, k, v, causal, scale)
        return out if k.shape[2] == 1 else out + 1.0

    report = conform("attention", right_only_on_single_key, dtypes=(torch.float32,), max_examples=5)
    examples = get_op("attention").examples
    assert report.failures[0].case == examples[0] and report.examples == 1 and len(calls) == 1


@pytest.mark.parametrize("seed", [None, 7])
def test_same_seed_same_verdict(seed):
    a = conform("decode_attention", "reference", dtypes=(torch.float32,), max_examples=4, seed=seed)
    b = conform("decode_attention", "reference", dtypes=(torch.float32,), max_examples=4, seed=seed)
    assert a.passed and b.passed and a.examples == b.examples
    assert (a.worst_error, a.allowed_error) == (b.worst_error, b.allowed_error)  # the same cases were drawn
    assert a.draws == draws("ci", seed) and a.draws in a.summary()


def _shapes_checked(seed) -> list:
    ref = get_op("attention").reference
    shapes = []

    def recording(q, k, v, causal=True, scale=None):
        shapes.append((tuple(q.shape), tuple(k.shape), bool(causal), scale))
        return ref(q, k, v, causal, scale)

    assert conform("attention", recording, dtypes=(torch.float32,), max_examples=3, seed=seed).passed
    return shapes


def test_seeds_fix_the_draws():
    n = len(get_op("attention").examples)
    first, again, other = _shapes_checked(1), _shapes_checked(1), _shapes_checked(2)
    assert first == again and len(first) == n + 3
    assert first[:n] == other[:n] and first[n:] != other[n:]  # the same examples first, then other draws


def test_seed_must_be_a_non_negative_int():
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            conform("attention", "torch", max_examples=1, seed=bad)
    assert draws("gpu", None) == "random" and draws("ci", None) == "derandomized" and draws("gpu", 3) == "seed 3"


def _inputs_drawn(op: str) -> list[str]:
    ref = get_op(op).reference
    seen = []

    def recording(**kwargs):
        h = hashlib.sha1()
        for name in sorted(kwargs):
            v = kwargs[name]
            h.update(v.contiguous().numpy().tobytes() if isinstance(v, torch.Tensor) else repr(v).encode())
        seen.append(h.hexdigest())
        return ref(**kwargs)

    recording.__signature__ = inspect.signature(ref)
    assert conform(op, recording, dtypes=(torch.float32,), max_examples=10).passed
    return seen


def test_draws_do_not_depend_on_what_the_process_imported(tmp_path, monkeypatch):
    """Hypothesis now and then draws a literal mined from every local module imported so far; conform draws without
    that pool (source_constants_off), so importing a module full of new literals changes no derandomized case."""
    from hypothesis.internal.conjecture import providers

    mined = providers._get_local_constants
    op = "fourier_decode_attention"  # draws two floats in [0, 1] per case: a mined float replaces one in seven
    before = _inputs_drawn(op)
    literals = ", ".join(f"{i / 1009:.6f}" for i in range(1, 400))
    (tmp_path / "literals_for_draws.py").write_text(f"FRACTIONS = ({literals})\nSIZES = {tuple(range(5, 300, 7))}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("literals_for_draws")
    assert _inputs_drawn(op) == before
    assert providers._get_local_constants is mined  # put back after each draw: other hypothesis users keep it
