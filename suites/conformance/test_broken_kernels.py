"""Conformance rejects each deliberately broken kernel of fixtures/kernels for the property it breaks, through
`conform(...)` and through `python -m harness conform` (exit 1, the property named, a report in the store); the
CLI exits 2 on a function it cannot import or call (checked through `harness.cli.main` in this process: the
`cli_main` fixture) and 0 on a good one.

The Triton fixtures run in-process only where Triton can run them (TRITON_INTERPRET=1 or a GPU); the CLI
subprocesses set the interpreter themselves on the CPU.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.kernels.conformance import check_case, conform, default_device
from reference.registry import get_op

ROOT = Path(__file__).resolve().parents[2]
TRITON_RUNS = os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()

# (op, impl path, the property that must fail, Triton kernel?)
BROKEN = [
    ("attention", "fixtures.kernels.triton_exp2_scale:attention", "tolerance", True),
    ("attention", "fixtures.kernels.triton_tail_unwritten:attention", "unwritten", True),
    ("attention", "fixtures.kernels.wrong_gqa_heads:attention", "tolerance", False),
    ("fourier_reconstruct", "fixtures.kernels.fourier_sin_cos_swapped:reconstruct", "tolerance", False),
    # the tie hole: a top-k that drops the row's maximum for a position tied at the k-th score
    ("sparse_dllm_saliency", "fixtures.kernels.topk_drops_max_on_tie:saliency", "discrete", False),
]
IDS = [path.split(".")[-1].split(":")[0] for _, path, _, _ in BROKEN]


def _load(path: str):
    module, fn = path.split(":")
    return getattr(importlib.import_module(module), fn)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness", "conform", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _records(results: Path) -> list[dict]:
    path = results / "conformance.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("op,path,prop,triton", BROKEN, ids=IDS)
def test_conform_rejects_broken_kernel(op, path, prop, triton):
    if triton and not TRITON_RUNS:
        pytest.skip("Triton kernel: needs TRITON_INTERPRET=1 or a GPU (the CLI test covers it in a subprocess)")
    report = conform(op, _load(path), dtypes=(torch.float32, torch.float16), max_examples=8, impl_name=path,
                     device=default_device())
    assert not report.passed, f"{path} passed conformance: {report.summary()}"
    assert [f.property for f in report.failures] == [prop, prop], report.summary()
    assert f"[{prop}]" in report.summary() and "replay: check_case(" in report.summary()


def test_fixed_triton_kernels_pass():
    """Control: the same kernels called without their bug conform, so the rejections above are the bugs'."""
    if not TRITON_RUNS:
        pytest.skip("Triton kernels: need TRITON_INTERPRET=1 or a GPU")
    import triton

    from fixtures.kernels import triton_exp2_scale as exp2, triton_tail_unwritten as tail

    def fixed_exp2(q, k, v, causal=True, scale=None):
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        return exp2.launch(q, k, v, causal, qk_scale=scale * exp2.LOG2E)

    def fixed_tail(q, k, v, causal=True, scale=None, out=None):
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        out = torch.empty_like(q) if out is None else out
        return tail.launch(q, k, v, causal, scale, out, n_row_blocks=triton.cdiv(q.shape[2], tail.BLOCK_M))

    explicit = len(get_op("attention").examples)
    for fn in (fixed_exp2, fixed_tail):
        report = conform("attention", fn, dtypes=(torch.float32, torch.float16), max_examples=6, device=default_device())
        assert report.passed and report.examples == 2 * (explicit + 6), report.summary()


@pytest.mark.parametrize("op,path,prop,triton", BROKEN, ids=IDS)
def test_rejected_under_every_seed(op, path, prop, triton):
    """Whatever the draws, each broken kernel is rejected for its property: an explicit example of its op exposes
    the bug (checked directly here, so the rejection does not rest on a draw), and five seeds all reject it."""
    if triton and not TRITON_RUNS:
        pytest.skip("Triton kernel: needs TRITON_INTERPRET=1 or a GPU")
    fn = _load(path)
    exposing = [c for c in get_op(op).examples if not check_case(op, fn, c, torch.float32, default_device()).passed]
    assert exposing, f"no explicit example of {op!r} exposes {path}"
    for seed in (None, 0, 1, 2, 3):
        report = conform(op, fn, dtypes=(torch.float32,), max_examples=3, seed=seed, device=default_device())
        assert [f.property for f in report.failures] == [prop], f"seed {seed}: {report.summary()}"
        assert report.failures[0].case == exposing[0] and report.draws in ("derandomized", f"seed {seed}")


@pytest.mark.parametrize("op,path,prop,triton", BROKEN, ids=IDS)
def test_cli_rejects_broken_kernel_and_stores_the_report(op, path, prop, triton, tmp_path):
    proc = _cli("--op", op, "--impl", path, "--max-examples", "5", "--device", "cpu", "--results", str(tmp_path))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]
    assert f"[{prop}] {op}" in text and "replay: check_case(" in text, text[-3000:]
    records = _records(tmp_path)
    verdict = [r for r in records if r["params"]["property"] == "all" and r["metric"] == "passed"]
    assert len(verdict) == 1 and verdict[0]["value"] == 0.0 and verdict[0]["impl"] == path
    failed = {r["params"]["property"]: r for r in records if r["metric"] == "passed" and r["value"] == 0.0}
    assert prop in failed and failed[prop]["extra"]["failing_case"], failed.keys()
    assert failed[prop]["extra"]["replay"].startswith(f"check_case({op!r}, get_impl({op!r}, {path!r})")


def test_cli_passes_a_good_impl(tmp_path):
    proc = _cli("--op", "attention", "--impl", "optimized.torch_attention:attention_torch", "--max-examples", "4",
                "--device", "cpu", "--results", str(tmp_path))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert f"PASS on {3 * (len(get_op('attention').examples) + 4)} examples" in proc.stdout  # 3 dtypes
    records = _records(tmp_path)
    passed = {r["params"]["property"]: r["value"] for r in records if r["metric"] == "passed"}
    assert passed["all"] == 1.0 and all(passed.values()), passed


@pytest.mark.parametrize("impl,words", [
    ("fixtures.kernels.no_such_module:attention", ["cannot import module", "no_such_module"]),
    ("fixtures.kernels.wrong_gqa_heads:no_such_fn", ["has no callable", "no_such_fn"]),
    ("fixtures.kernels.fourier_sin_cos_swapped:reconstruct", ["does not accept the arguments", "missing ['q', 'k', 'v'"]),
    ("not-a-path", ["package.module:function"]),
], ids=["unimportable", "no-function", "wrong-signature", "malformed"])
def test_cli_exit_2_names_what_is_wrong(impl, words, tmp_path, cli_main):
    code, err = cli_main("conform", "--op", "attention", "--impl", impl, "--device", "cpu", "--results", str(tmp_path))
    assert code == 2, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "conformance.jsonl").exists()


def test_cli_exit_2_on_unknown_op(tmp_path, cli_main):
    code, err = cli_main("conform", "--op", "no_such_op", "--impl", "optimized.torch_attention:attention_torch",
                         "--results", str(tmp_path))
    assert code == 2 and "--op 'no_such_op' is not a registered op" in err, err
