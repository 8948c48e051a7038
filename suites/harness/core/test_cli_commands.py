"""One CLI: every job is a subcommand of `python -m harness` registered the same way (harness/cli.py COMMANDS), and
the module entry points (`python -m harness.dllm.train`, `python -m harness.scheduling.calibrate_sd`) take exactly the
options of their subcommand."""
from __future__ import annotations

import json

import pytest

from harness.cli import COMMANDS, build_parser, main
from harness.dllm import train as train_dllm
from harness.scheduling import calibrate_sd

JOBS = {"run", "leaderboard", "methods", "ops", "conform", "bench", "train-dllm", "calibrate-sd", "compare", "mutate"}


def _options(parser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def test_every_job_is_a_subcommand():
    assert set(COMMANDS) == JOBS
    parser = build_parser(with_suites=False)
    assert set(parser.get_default("commands")) == JOBS
    for name in JOBS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0, name
    with pytest.raises(SystemExit) as exc:  # the top level lists every subcommand's help line (a bare % breaks it)
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0


@pytest.mark.parametrize("name, alias", [("train-dllm", train_dllm.build_parser),
                                         ("calibrate-sd", calibrate_sd.build_parser)])
def test_the_old_entry_points_take_the_subcommands_options(name, alias):
    sub = build_parser(with_suites=False).get_default("commands")[name]
    assert _options(sub) == _options(alias()) and "--out" in _options(sub)


def test_calibrate_sd_runs_as_a_subcommand(tmp_path, capsys):
    out = tmp_path / "steps.json"
    assert main(["calibrate-sd", "--device", "cpu", "--batches", "1", "--contexts", "16", "--repeats", "1",
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["model"] == "tiny" and [(s["batch"], s["context"]) for s in data["samples"]] == [(1, 16)]
    assert data["samples"][0]["verify_ms"] > 0 and f"wrote {out}" in capsys.readouterr().err
