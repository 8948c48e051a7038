"""ci/deep_conformance.py: the sweep covers every implementation but the reference, plus the float32-coefficient
wrappers; it stores each run's verdict, resumes past stored ones, and names a bad --ops or --impls."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.store import ResultsStore, make_record
from reference.jsonl import MalformedRowWarning
from reference.registry import all_ops, implementations

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("deep_conformance", ROOT / "ci" / "deep_conformance.py")
deep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(deep)


def test_every_implementation_but_the_reference_and_the_wrappers_are_planned():
    runs = deep.planned_runs(None, None, [3, 4])
    want = {(op, impl) for op in all_ops() for impl in implementations(op)} | {
        (op, impl) for op, impls in deep.EXTRA.items() for impl in impls}
    assert {(op, impl) for op, impl, _ in runs} == want and all(impl != "reference" for _, impl, _ in runs)
    assert len(runs) == 2 * len(want) and {seed for *_, seed in runs} == {3, 4}


def test_a_bad_op_or_implementation_is_named():
    with pytest.raises(SystemExit, match="--ops: unknown op 'atention'"):
        deep.planned_runs(["atention"], None, [1])
    with pytest.raises(SystemExit, match="--impls: tritn"):
        deep.planned_runs(["attention"], ["tritn"], [1])


def test_runs_store_verdicts_and_a_second_sweep_resumes(tmp_path, capsys):
    args = ["--ops", "attention", "--impls", "torch", "--seeds", "5", "--examples", "2", "--results", str(tmp_path)]
    assert deep.main(args) == 0
    first = capsys.readouterr().out
    assert "attention torch seed 5: PASS (" in first and "1 of 1 runs passed" in first
    assert deep.finished(tmp_path, "ci", 2) == {("attention", "torch", 5): True}
    assert deep.finished(tmp_path, "ci", 3) == {}  # another budget is another run
    with (tmp_path / "conformance.jsonl").open("a") as f:
        f.write('{"cut by a cra')  # a crash mid-line loses nothing already stored
    with pytest.warns(MalformedRowWarning, match="skipped"):
        assert deep.main(args) == 0
    assert "attention torch seed 5: PASS (stored)" in capsys.readouterr().out


def test_a_stored_failure_is_reported_and_fails_the_sweep(tmp_path, capsys):
    prov = {"device": "cpu", "versions": {}, "git_sha": "0" * 40}
    record = make_record("conformance", "attention", "torch", "torch", "-",
                         {"property": "all", "profile": "ci", "max_examples": 2}, "passed", 0.0, "bool",
                         extra={"draws": "seed 5"}, provenance=prov)
    ResultsStore(tmp_path).append([record])
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "attention.torch.seed5.log").write_text(
        "[tolerance] attention float32: output 0: max error 1 > allowed 0.1\n  replay: check_case('attention', ...)\n")
    args = ["--ops", "attention", "--impls", "torch", "--seeds", "5", "--examples", "2", "--results", str(tmp_path)]
    assert deep.main(args) == 1
    out = capsys.readouterr().out
    assert "FAIL: attention.torch.seed5" in out and "replay: check_case('attention', ...)" in out
