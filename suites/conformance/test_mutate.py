"""`python -m harness mutate`: mutant generation (each operator class, one change per mutant, validation code and
unreached code left alone, seeded sampling), the runner's verdicts (killed, survived, crashed, timeout) and the
report on a toy implementation whose only survivors are its planted equivalent mutants, the CLI and the board."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.kernels import toy_attention_mutants as toy
from harness.kernels.board import kernels_conformance_board
from harness.kernels.mutate import OPERATORS, Mutant, entry_point, generate, sample
from harness.kernels.mutation_report import format_report, load_reasons, summarize, to_records
from harness.kernels.mutation_run import mutate_impl, run_mutant
from reference.registry import get_impl

ROOT = Path(__file__).resolve().parents[2]
TOY = "fixtures.kernels.toy_attention_mutants:attention"

SOURCE = '''
import math
import triton.language as tl

LIMIT = 4


def helper(x, n):
    return x[:n] * 2.5


def unreached(x):
    return x + 1


def entry(x, y, n):
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    check_int("n", n, 0)
    total = 0
    for i in range(1, n):
        total = total + helper(x, LIMIT) - y // 3
    z = tl.load(x + i, mask=(i < n) & (i >= 0), other=0.0)
    w = tl.exp(z) if total == LIMIT else float("-inf")
    return tl.where(w > 0, w, total), not y, math.inf
'''


def _lines_of(mutants, source):
    return {source.splitlines()[m.line - 1].strip() for m in mutants}


def test_every_operator_class_is_generated_once_per_site():
    mutants, unrun = generate(SOURCE, "entry")
    assert unrun == 0 and {m.operator for m in mutants} == set(OPERATORS)
    assert len({m.key for m in mutants}) == len(mutants) and len({m.source for m in mutants}) == len(mutants)
    for m in mutants:
        compile(m.source, "<mutant>", "exec")
        changed = [line for line in m.diff(SOURCE).splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        assert len(changed) == 2, m.diff(SOURCE)  # one line out, one line in
    keys = {m.key for m in mutants}
    for key in ("entry:comparison:i < n -> i <= n", "entry:mask:tl.load(...): drop mask=(i < n) & (i >= 0)",
                "entry:fill:0.0 -> 1.0", "entry:fill:float('-inf') -> 0.0", "entry:exp-scale:tl.exp(z) -> tl.exp2(z)",
                "entry:range:range(1, n) -> range(1, n - 1)", "entry:range:range(1, n) -> range(1 + 1, n)",
                "entry:swap:helper(...): x <-> LIMIT", "helper:constant:2.5 -> 5.0", "<module>:constant:4 -> 5"):
        assert key in keys, sorted(keys)


def test_validation_and_unreached_code_are_left_alone():
    mutants, _ = generate(SOURCE, "entry")
    lines = _lines_of(mutants, SOURCE)
    assert not any("raise" in line or "check_int" in line or "if n < 0" in line for line in lines), lines
    assert "return x + 1" not in lines and "return x[:n] * 2.5" in lines  # reached by name only
    with pytest.raises(ValueError, match="not a top-level function"):
        generate(SOURCE, "missing")


def test_lines_that_never_ran_are_left_out():
    everything, _ = generate(SOURCE, "entry")
    ran = {i + 1 for i, line in enumerate(SOURCE.splitlines()) if "helper(x, LIMIT)" in line or "def " in line}
    kept, unrun = generate(SOURCE, "entry", executed=ran)
    assert kept and unrun and len(kept) + unrun == len(everything)
    assert _lines_of(kept, SOURCE) <= {"total = total + helper(x, LIMIT) - y // 3", "return x[:n] * 2.5", "LIMIT = 4"}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_sampling_is_seeded_and_keeps_source_order(seed):
    mutants, _ = generate(SOURCE, "entry")
    a, b = sample(mutants, 5, seed), sample(mutants, 5, seed)
    assert a == b and len(a) == 5 and [m.line for m in a] == sorted(m.line for m in a)
    assert sample(mutants, 5, seed) != sample(mutants, 5, seed + 100) or len(mutants) <= 5
    assert sample(mutants, None, seed) == mutants


@pytest.mark.parametrize("op,impl", [("decode_attention", "triton"), ("sparse_dllm_saliency", "triton"),
                                     ("attention", "torch")])
def test_mutants_of_our_kernels_compile_and_name_their_function(op, impl):
    path, source, entry = entry_point(get_impl(op, impl))
    mutants, _ = generate(source, entry)
    assert mutants and all(m.key.startswith(f"{m.function}:{m.operator}:") for m in mutants)
    assert entry in {m.function for m in mutants}


def _toy_mutant(source: str) -> Mutant:
    return Mutant("attention:constant:x", "constant", "attention", 1, "x", "y", source)


def test_runner_verdicts_crashed_and_timeout():
    crashed = run_mutant(_toy_mutant("raise RuntimeError('boom at import')\n"), "attention", toy.__name__,
                         "attention", "ci", 1, timeout_s=60)
    assert crashed.status == "crashed" and "boom at import" in crashed.detail
    hang = run_mutant(_toy_mutant("import time\ntime.sleep(600)\n"), "attention", toy.__name__, "attention", "ci", 1,
                      timeout_s=2)
    assert hang.status == "timeout" and hang.seconds < 30


def test_mutants_of_modules_that_register_with_hooks_import():
    """A mutant is imported with registration stubbed out; the stubs take the real decorators' keywords (bench=):
    otherwise every mutant of such a module "crashes" at import, a detection, and the score reads 100%."""
    for op, impl in (("fourier_decode_attention", "triton"), ("decode_attention", "triton")):
        path, source, entry = entry_point(get_impl(op, impl))
        assert "bench=" in source
        fn = get_impl(op, impl)
        r = run_mutant(_toy_mutant(source + "\nraise RuntimeError('imported to the end')\n"), op, fn.__module__,
                       entry, "ci", 1, timeout_s=120)
        assert r.status == "crashed" and "imported to the end" in r.detail, (impl, r.detail)


@pytest.fixture(scope="module")
def toy_campaign():
    return mutate_impl("attention", toy.attention, TOY, max_mutants=None, max_examples=2)


def test_toy_only_its_planted_equivalents_survive(toy_campaign, tmp_path):
    c = toy_campaign
    survivors = [r.mutant for r in c.results if r.status == "survived"]
    spare = [m for m in (r.mutant for r in c.results) if toy.SPARE_LINE in c.source.splitlines()[m.line - 1]]
    assert spare and survivors == spare, [m.key for m in survivors]
    killed = [r for r in c.results if r.status == "killed"]
    assert len(killed) + len(spare) == len(c.results) and all(r.property for r in killed)
    assert c.function == f"{toy.__name__}:attention" and c.unrun == 0

    unexplained = summarize(c, {})
    assert unexplained["survived"] == len(spare) and unexplained["score"] < 1
    assert {s["verdict"] for s in unexplained["survivors"]} == {"unexplained"}
    reasons_file = tmp_path / "reasons.json"
    reasons_file.write_text(json.dumps({f"attention/{TOY}": {m.key: {"verdict": "equivalent", "reason": "never read"}
                                                             for m in spare}}))
    s = summarize(c, load_reasons(str(reasons_file)))
    assert s["score"] == 1.0 and s["equivalent"] == len(spare) and s["killed"] == len(killed)
    text = format_report(c, s)
    assert "score 100.0%" in text and "reason: never read" in text and f"-    {toy.SPARE_LINE}" in text


def test_toy_report_reaches_the_board(toy_campaign):
    s = summarize(toy_campaign, {})
    records = to_records(toy_campaign, s, {"profile": "ci", "max_mutants": 0, "seed": 0, "max_examples": 2})
    assert {r["metric"] for r in records} == {"score", "mutants", "killed", "survived", "crashed", "timeout",
                                              "equivalent"}
    assert len({r["extra"]["run"] for r in records}) == 1
    board = kernels_conformance_board(records)
    detected = s["killed"] + s["crashed"] + s["timeout"]
    assert "Conformance strength" in board.markdown
    assert f"{100 * s['score']:.1f}% ({detected}/{s['mutants']})" in board.markdown


def test_reasons_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "reasons.json"
    bad.write_text(json.dumps({"attention/x": {"k": {"verdict": "maybe", "reason": "r"}}}))
    with pytest.raises(ValueError, match="reasons.json.*verdict"):
        load_reasons(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="reasons.json"):
        load_reasons(str(bad))
    assert load_reasons(str(tmp_path / "absent.json")) == {}


def _cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness", "mutate", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_reports_and_stores(tmp_path):
    proc = _cli("--impl", TOY, "--max-mutants", "4", "--seed", "3", "--max-examples", "1", "--results", str(tmp_path),
                "--reasons", str(tmp_path / "none.json"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "mutation attention / " in proc.stdout and "score" in proc.stdout
    records = [json.loads(line) for line in (tmp_path / "mutation.jsonl").read_text().splitlines()]
    by = {r["metric"]: r["value"] for r in records}
    assert by["mutants"] == 4 and by["killed"] + by["survived"] + by["crashed"] + by["timeout"] == 4


@pytest.mark.parametrize("args,words", [
    (["--impl", "triton"], ["registered name", "--op"]),
    (["--impl", "fixtures.kernels.no_such_module:attention"], ["cannot import module"]),
    (["--impl", "triton", "--op", "no_such_op"], ["not a registered op"]),
    (["--impl", "fixtures.kernels.wrong_gqa_heads:attention", "--max-mutants", "0"], ["--max-mutants"]),
], ids=["registered-without-op", "unimportable", "unknown-op", "zero-mutants"])
def test_cli_exit_2_names_what_is_wrong(args, words, cli_main):
    # in this process: refused before anything runs (test_cli_reports_and_stores runs the real subprocess)
    code, err = cli_main("mutate", *args)
    assert code == 2, err
    assert all(w in err for w in words), err


def test_rescore_applies_reasons_written_after_the_run(toy_campaign, tmp_path):
    from harness.kernels.mutation_report import rescore
    from harness.store import ResultsStore

    s = summarize(toy_campaign, {})
    store = ResultsStore(tmp_path)
    store.append(to_records(toy_campaign, s, {"profile": "ci", "max_mutants": 0, "seed": 0, "max_examples": 2}))
    keys = [sv["key"] for sv in s["survivors"]]
    reasons = {f"attention/{TOY}": {k: {"verdict": "equivalent", "reason": "never read"} for k in keys}}
    updated = rescore(store.records("mutation"), reasons)
    assert {r["metric"]: r["value"] for r in updated} == {"score": 1.0, "equivalent": float(len(keys))}
    store.append(updated)
    assert rescore(store.records("mutation"), reasons) == []  # nothing changes a second time
    board = kernels_conformance_board(store.records())
    assert f"100.0% ({s['mutants'] - len(keys)}/{s['mutants'] - len(keys)})" in board.markdown
