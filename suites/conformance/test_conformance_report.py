"""The conformance report a submitted kernel leaves in the store (harness/kernels/conformance_report.py): its records,
the same cells from the CLI and from pytest, the speed measurement (with a stand-in timer on the CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from harness.kernels.conformance import PROPERTIES, CaseResult, Report
from harness.kernels.conformance_report import (
    conformance_records,
    measure_speed,
    parse_dtypes,
    representative_case,
    run_and_record,
)
from harness.store import ResultsStore
from optimized.torch_attention import attention_torch
from reference.registry import get_op

ROOT = Path(__file__).resolve().parents[2]
GQA = "fixtures.kernels.wrong_gqa_heads:attention"


def _gqa():
    from fixtures.kernels.wrong_gqa_heads import attention

    return attention


def test_records_one_per_property_plus_the_verdict(tmp_path):
    report, speed, records = run_and_record("attention", _gqa(), GQA, max_examples=6, dtypes=(torch.float32,),
                                            results=str(tmp_path))
    assert not report.passed and speed is None  # CPU: no timing
    assert ResultsStore(tmp_path).records("conformance") == records
    assert {(r["suite"], r["task"], r["method"], r["impl"], r["model"]) for r in records} == {
        ("conformance", "attention", GQA, GQA, "-")}
    assert len({r["extra"]["run"] for r in records}) == 1
    by = {(r["params"]["property"], r["metric"]): r for r in records}
    assert {p for p, m in by if m == "passed"} == {*PROPERTIES, "all"}
    assert by[("all", "passed")]["value"] == 0.0 and by[("all", "examples")]["value"] == report.examples
    assert by[("all", "passed")]["extra"]["failed_properties"] == ["tolerance"]
    tol = by[("tolerance", "passed")]
    assert tol["value"] == 0.0 and tol["extra"]["failing_dtype"] == "float32"
    assert tol["extra"]["worst_error"] > tol["extra"]["allowed_error"] > 0
    assert tol["extra"]["replay"] == f"check_case('attention', get_impl('attention', {GQA!r}), {tol['extra']['failing_case']!r}, torch.float32)"
    assert by[("nan", "passed")]["value"] == 1.0 and by[("nan", "passed")]["extra"]["failing_case"] is None
    assert tol["params"] == {"property": "tolerance", "profile": "ci", "device": "cpu", "dtypes": ["float32"], "max_examples": 6}


def test_cli_and_pytest_write_the_same_cells(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYPOTHESIS_PROFILE": "ci"}
    impl = "optimized.torch_attention:attention_torch"
    cli = subprocess.run([sys.executable, "-m", "harness", "conform", "--op", "attention", "--impl", impl,
                          "--device", "cpu", "--results", str(tmp_path / "cli")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    py = subprocess.run([sys.executable, "-m", "pytest", "suites/conformance/test_conformance.py::test_user_impl_conforms",
                         "-q", "-p", "no:cacheprovider", "--op", "attention", "--impl", impl,
                         "--results", str(tmp_path / "py")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert py.returncode == 0, py.stdout[-3000:] + py.stderr[-3000:]

    def cells(path):
        recs = ResultsStore(path).records("conformance")
        # Hypothesis draws different inputs in each run: the measured errors differ, what was measured does not.
        return sorted((r["cell"], r["metric"], r["unit"], json.dumps(r["params"], sort_keys=True),
                       json.dumps(r["protocol"], sort_keys=True), r["device"]) for r in recs
                      if r["metric"] not in ("worst_error", "allowed_error"))

    assert cells(tmp_path / "cli") == cells(tmp_path / "py")
    assert len(cells(tmp_path / "cli")) == len(PROPERTIES) + 2


def test_speed_with_a_stand_in_timer(monkeypatch):
    """The CUDA path's arithmetic on the CPU: a fake harness.gpu_timing gives 2 ms (kernel), 5 ms (reference)."""
    calls = []

    def bench_ms(fn, warmup=25, rep=100):
        fn()
        calls.append(fn)
        return 2.0 if len(calls) == 1 else 5.0

    fake = types.SimpleNamespace(bench_ms=bench_ms, copy_bandwidth_gbs=lambda device: 50.0)
    monkeypatch.setitem(sys.modules, "harness.gpu_timing", fake)
    case = {"batch": 1, "kv_heads": 2, "group": 2, "q_len": 3, "k_len": 70, "head_dim": 16, "causal": True,
            "scale": None, "seed": 7}
    speed = measure_speed("attention", attention_torch, "cpu", torch.float32, case=case)
    assert len(calls) == 2 and speed["check"].passed
    nbytes = 4 * (1 * 4 * 3 * 16 + 2 * (1 * 2 * 70 * 16) + 1 * 4 * 3 * 16)  # q, k, v, out in float32
    assert speed["bytes"] == nbytes and speed["speedup"] == pytest.approx(2.5)
    assert speed["bandwidth_gbs"] == pytest.approx(nbytes / 2e-3 / 1e9)
    assert speed["roofline_fraction"] == pytest.approx(nbytes / 2e-3 / 1e9 / 50.0)

    report = Report("attention", "x:y", "ci", dtypes=["float32"], examples=3, worst_error=1e-6, allowed_error=1e-5)
    recs = conformance_records(report, "cuda", 3, speed)
    got = {r["metric"]: (r["value"], r["unit"]) for r in recs if r["params"]["property"] == "speed"}
    assert got["speedup"] == (pytest.approx(2.5), "x") and got["impl_ms"] == (2.0, "ms")
    assert got["roofline_fraction"][1] == "fraction" and len(got) == 7
    assert all(r["params"]["device"] == "cuda" for r in recs)

    calls.clear()
    wrong = measure_speed("attention", _gqa(), "cpu", torch.float32, case=case)
    assert not wrong["check"].passed and wrong["check"].property == "tolerance"
    assert "impl_ms" not in wrong and not calls  # wrong on the timed input: never timed


def test_representative_case_is_a_deterministic_gpu_case():
    a, b = representative_case("attention"), representative_case("attention")
    assert a == b
    assert (a["kv_heads"], a["group"], a["head_dim"]) == (8, 4, 128)  # LLaMA-3-8B heads: the gpu profile
    spec = get_op("attention")
    assert spec.make_inputs(a, torch.float16, torch.device("meta"))["k"].shape == (a["batch"], 8, a["k_len"], 128)


def test_representative_case_sizes_on_the_cpu_when_meta_tensors_cannot_build_the_inputs(monkeypatch):
    """An input builder that reads values (the varlen Fourier op's lengths) fails on meta tensors in some torch
    versions ("Cannot copy out of meta tensor; no data!" on the GPU image's torch 2.11, after a passing run): the
    case is then sized on the CPU, and the largest case is still the one chosen."""
    import harness.kernels.conformance_report as report_mod

    spec = get_op("fourier_decode_attention_varlen")
    real = spec.make_inputs

    def builder(case, dtype, device):
        if device.type == "meta":
            raise RuntimeError("Cannot copy out of meta tensor; no data!")
        return real(case, dtype, device)

    monkeypatch.setattr(report_mod, "get_op", lambda op: types.SimpleNamespace(cases=spec.cases, make_inputs=builder))
    case = representative_case("fourier_decode_attention_varlen", candidates=3)
    monkeypatch.undo()
    assert case == representative_case("fourier_decode_attention_varlen", candidates=3)  # same choice as on meta


def test_errors_that_are_not_finite_are_stored_as_text(tmp_path):
    bad = CaseResult(False, property="tolerance", detail="overflow", worst_error=float("inf"), allowed_error=1e-3,
                     case={"seed": 1}, dtype="float16", op="attention")
    report = Report("attention", "x:y", "ci", dtypes=["float16"], examples=1, failures=[bad])
    recs = conformance_records(report, "cpu", 1)
    ResultsStore(tmp_path).append(recs)  # the store writes strict JSON: inf would be refused
    tol = next(r for r in ResultsStore(tmp_path).records() if r["params"]["property"] == "tolerance")
    assert tol["extra"]["worst_error"] == "inf" and tol["value"] == 0.0


def test_parse_dtypes_names_the_bad_one():
    assert parse_dtypes("float32, float16") == (torch.float32, torch.float16)
    with pytest.raises(ValueError, match="float8"):
        parse_dtypes("float32,float8")


def test_cuda_branch_stores_the_verdict_before_timing(monkeypatch, tmp_path):
    """run_and_record's GPU branch on the CPU (stand-in timer): the timed input is checked, the verdict is stored
    first, a timer that crashes leaves the verdict and no speed, a working one appends speed records to the run."""
    import harness.kernels.conformance_report as cr

    monkeypatch.setattr(cr, "device_kind", lambda device: "cuda")

    def broken_timer(fn, warmup=25, rep=100):
        raise RuntimeError("timer broke")

    monkeypatch.setitem(sys.modules, "harness.gpu_timing", types.SimpleNamespace(
        bench_ms=broken_timer, copy_bandwidth_gbs=lambda device: 50.0))
    report, speed, records = run_and_record("attention", attention_torch, "t:a", max_examples=2,
                                            dtypes=(torch.float32,), results=str(tmp_path))
    assert report.passed and speed == {"error": "RuntimeError: timer broke"}
    stored = ResultsStore(tmp_path).records("conformance")
    assert stored == records and not any(r["params"]["property"] == "speed" for r in stored)

    monkeypatch.setitem(sys.modules, "harness.gpu_timing", types.SimpleNamespace(
        bench_ms=lambda fn, warmup=25, rep=100: 1.0, copy_bandwidth_gbs=lambda device: 50.0))
    report, speed, records = run_and_record("attention", attention_torch, "t:a", max_examples=2,
                                            dtypes=(torch.float32,), results=str(tmp_path))
    timing = [r for r in records if r["params"]["property"] == "speed"]
    assert speed["speedup"] == 1.0 and speed["case"] == representative_case("attention")
    assert len(timing) == 7 and {r["extra"]["run"] for r in records} == {records[0]["extra"]["run"]}
    assert len(ResultsStore(tmp_path).records("conformance")) == len(stored) + len(records)

    def wrong_on_gpu_shapes(q, k, v, causal=True, scale=None):
        # Right on every ci shape (at most 12 query heads), wrong on the timed LLaMA-3-8B case (32 query heads).
        return (_gqa() if q.shape[1] > 12 else attention_torch)(q, k, v, causal=causal, scale=scale)

    report, speed, records = run_and_record("attention", wrong_on_gpu_shapes, "t:gqa", max_examples=2,
                                            dtypes=(torch.float32,), results=None)
    verdict = next(r for r in records if r["params"]["property"] == "all" and r["metric"] == "passed")
    assert verdict["value"] == 0.0 and speed is None
    assert [f.case for f in report.failures] == [representative_case("attention")]  # the drawn cases passed
