"""Decoding options and method parameters of `run --suite dllm` (harness/dllm/run.py): they reach the loop and the
cache, and they are part of each record's key params (and the decoding options of its protocol), so records under
other settings never pool with the defaults'. On the committed fixture, short prompts."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.store import ResultsStore
from suites.methods.dllm_fixture import FIXTURE

RUN = ["run", "--suite", "dllm", "--checkpoint", str(FIXTURE), "--tasks", "copy", "--lengths", "96", "--n", "2",
       "--no-leaderboard", "--no-progress"]

pytestmark = pytest.mark.usefixtures("one_thread_module")


def test_gen_and_param_options_reach_the_run_and_its_records(tmp_path, capsys):
    rc = main([*RUN, "--methods", "vanilla,fast_dllm_prefix", "--gen", "threshold=1e-9",
               "--param", "fast_dllm_prefix.extra_forward=true", "--results", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    records = ResultsStore(tmp_path).records("dllm")
    forwards = {r["method"]: r["value"] for r in records if r["metric"] == "forwards"}
    # gen_len 16, block 8: a threshold every candidate meets completes each block at its first forward.
    assert forwards == {"vanilla": 2.0, "fast_dllm_prefix": 4.0}
    for r in records:
        assert r["params"]["gen"] == {"threshold": 1e-9} and r["protocol"]["decoding"] == {"threshold": 1e-9}
    fast = next(r for r in records if r["method"] == "fast_dllm_prefix" and r["metric"] == "tokens_equal_vanilla")
    assert fast["params"]["extra_forward"] is True and fast["value"] == 100.0

    rc = main([*RUN, "--methods", "vanilla", "--results", str(tmp_path)])  # the defaults: new cells, no gen key
    assert rc == 0 and "ran 1 cells" in capsys.readouterr().out
    plain = [r for r in ResultsStore(tmp_path).records("dllm") if "gen" not in r["params"]]
    assert plain and all("decoding" not in r["protocol"] for r in plain)


@pytest.mark.parametrize("argv, needle", [
    (["--gen", "loop=dream"], "--gen"),
    (["--gen", "temperature=-1"], "temperature"),
    (["--gen", "threshold"], "--gen"),
    (["--param", "fast_dllm_prefix.extra_forward=3"], "extra_forward"),
    (["--param", "dllm_cache.rule=paper"], "rule"),
    (["--methods", "vanilla", "--param", "dllm_cache.rule=legacy"], "--param"),
])
def test_bad_options_are_named(argv, needle, tmp_path, capsys):
    try:
        rc = main([*RUN, "--results", str(tmp_path), *argv])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc != 0
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "dllm.jsonl").exists()
