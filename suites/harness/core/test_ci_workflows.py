"""The GitHub Actions workflows in .github/workflows/ parse, and call what they claim: the CPU job mirrors .ci/run
(which runs the README's test command), the GPU job runs ci/gpu.sh and ci/gpu_dllm.sh on a self-hosted GPU runner
and uploads records and leaderboard even after a failed step."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def workflow(name: str) -> dict:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data.get("jobs"), f"{name}: no jobs"
    return data


def steps(data: dict) -> list[dict]:
    (job,) = data["jobs"].values()
    return job["steps"]


def runs(data: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(data))


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = "TRITON_INTERPRET=1 python -m pytest suites/ -n 2"
    assert command in readme and command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_cpu_workflow_mirrors_ci_run():
    data = workflow("cpu.yml")
    (job,) = data["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest" and job["timeout-minutes"] <= 90
    assert re.search(r"^bash \.ci/run$", runs(data), re.M)
    setup = next(s for s in steps(data) if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11"
    assert "download.pytorch.org/whl/cpu" in job["env"]["PIP_EXTRA_INDEX_URL"]  # never the CUDA wheel in CI
    assert {"push", "pull_request"} <= set(data[True] if True in data else data["on"])  # yaml reads `on:` as True


def test_gpu_workflow_runs_both_gpu_scripts_and_uploads_on_failure():
    data = workflow("gpu.yml")
    (job,) = data["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    text = runs(data)
    assert re.search(r"^bash ci/gpu\.sh$", text, re.M) and re.search(r"^bash ci/gpu_dllm\.sh$", text, re.M)
    dllm = next(s for s in steps(data) if s.get("run", "").strip() == "bash ci/gpu_dllm.sh")
    assert "train" not in dllm["env"]["STEPS"]  # never retrain the committed fixture on CI
    after = steps(data)[[s.get("run", "").strip() for s in steps(data)].index("bash ci/gpu.sh") + 1:]
    assert after and all(s.get("if") == "always()" for s in after)  # records survive a failed step
    upload = next(s for s in steps(data) if s.get("uses", "").startswith("actions/upload-artifact"))
    paths = upload["with"]["path"].split()
    assert {"results/*.jsonl", "leaderboard/"} <= set(paths)
    assert job["env"]["LONGCTX_GIT_SHA"] == "${{ github.sha }}"  # records name the commit they measured


@pytest.mark.parametrize("script", ["ci/gpu.sh", "ci/gpu_dllm.sh", ".ci/run", "ci/cpu.sh"])
def test_scripts_the_workflows_call_exist_and_are_bash(script):
    text = (ROOT / script).read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") and "set -" in text


def test_deep_conformance_workflow_runs_the_sweep_weekly_on_a_fresh_seed():
    data = workflow("deep-conformance.yml")
    (job,) = data["jobs"].values()
    on = data[True] if True in data else data["on"]
    assert on["schedule"] and "workflow_dispatch" in on and "push" not in on  # periodic, never on every push
    assert "download.pytorch.org/whl/cpu" in job["env"]["PIP_EXTRA_INDEX_URL"]
    text = runs(data)
    assert re.search(r"^python ci/deep_conformance\.py --seeds .*github\.run_number", text, re.M)
    upload = next(s for s in steps(data) if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload.get("if") == "always()" and "ci-artifacts" in upload["with"]["path"]
