"""Acceptance of the one registry and its plugin hook (issue 17): a package outside the repository, written here to a
temporary directory, adds a KV method, a kernel for `decode_attention` and a scheduling policy, exactly one file
each, and with no other edit they are listed by `harness methods` / `harness ops`, the kernel passes
`harness conform`, the method passes the token-method property tests, and the policy runs through the scheduling
suite's simulator into latency records. Everything runs in subprocesses with LONGCTX_PLUGINS set (or --plugins),
so this process's registries stay as they are.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TOY_FILES = {
    "toy_last.py": '''
        """A toy KV method: keep the most recent context tokens (and the protected question)."""
        from dataclasses import dataclass

        import torch

        from reference.kv.base import METHODS, KVMethod, keep_top_scores


        @METHODS.register("toy_last")
        @dataclass
        class ToyLast(KVMethod):
            def compress(self, layer):
                n = layer.context_length
                scores = torch.arange(n, dtype=torch.float32).expand(*layer.keys.shape[:2], n)
                return keep_top_scores(layer, scores, self.token_budget(n))
        ''',
    "toy_decode.py": '''
        """A toy kernel for op decode_attention: it calls the reference."""
        from reference.ops.decode_attention import decode_attention
        from reference.registry import register_impl


        @register_impl("decode_attention", "toy_decode")
        def toy_decode(**inputs):
            return decode_attention(**inputs)
        ''',
    "toy_lifo.py": '''
        """A toy scheduling policy: last come, first served."""
        from reference.scheduling.policies import POLICIES, Policy


        @POLICIES.register("toy_lifo")
        class ToyLIFO(Policy):
            def key(self, state, now):
                return (-state.arrival, state.rid)
        ''',
}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """A namespace package `toyplug` (no __init__.py: exactly one file per plug-in) and the environment naming it."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "toyplug").mkdir()
    for name, text in TOY_FILES.items():
        (root / "toyplug" / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(root)]), "LONGCTX_PLUGINS": "toyplug",
           "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "1"}
    return root, env


def harness(env, *args, timeout=300) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_plugins_are_listed_by_methods_and_ops(plugin):
    _, env = plugin
    methods = harness(env, "methods").stdout.split("\n")
    assert any(line.split()[:1] == ["toy_last"] for line in methods)
    assert [line.split()[0] for line in methods if line][:2] == ["full", "streaming_llm"]  # order kept
    ops = {line.split()[0]: line for line in harness(env, "ops").stdout.splitlines()}
    assert "'toy_decode'" in ops["decode_attention"] and "'triton'" in ops["decode_attention"]
    # --plugins does the same as the environment variable.
    no_env = {k: v for k, v in env.items() if k != "LONGCTX_PLUGINS"}
    assert "toy_last" not in harness(no_env, "methods").stdout
    assert "toy_last" in harness(no_env, "--plugins", "toyplug", "methods").stdout


def test_a_missing_plugin_is_named():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LONGCTX_PLUGINS": "no_such_plugin_xyz"}
    out = subprocess.run([sys.executable, "-m", "harness", "methods"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "no_such_plugin_xyz" in out.stderr


def test_the_toy_kernel_conforms_by_name_and_by_path(plugin, tmp_path):
    _, env = plugin
    for impl in ("toy_decode", "toyplug.toy_decode:toy_decode"):
        out = harness(env, "conform", "--op", "decode_attention", "--impl", impl, "--profile", "ci",
                      "--max-examples", "3", "--device", "cpu", "--results", str(tmp_path))
        assert f"decode_attention / {impl}" in out.stdout and ": PASS on" in out.stdout, out.stdout
    records = [json.loads(line) for line in (tmp_path / "conformance.jsonl").read_text().splitlines()]
    verdicts = {(r["impl"], r["metric"]): r["value"] for r in records if r["metric"] == "passed"}
    assert verdicts and all(v == 1.0 for v in verdicts.values())
    assert {r["impl"] for r in records} == {"toy_decode", "toyplug.toy_decode:toy_decode"}


def test_the_toy_method_passes_the_token_method_property_tests(plugin):
    _, env = plugin
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "suites/methods/test_token_methods.py", "suites/methods/test_registry.py", "-k", "toy_last"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    passed = int(out.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 8, out.stdout[-500:]  # budget, ratio 0, attention through the state, bad ratios, registry


def test_the_toy_policy_runs_through_the_scheduling_suite(plugin, tmp_path):
    _, env = plugin
    out = harness(env, "run", "--suite", "scheduling", "--policies", "toy_lifo,fcfs", "--workloads", "paper-like",
                  "--n-requests", "20", "--seeds", "0", "--loads", "0.5", "--no-sweep", "--results", str(tmp_path),
                  "--no-leaderboard", "--no-progress")
    assert "toy_lifo" in out.stdout
    records = [json.loads(line) for line in (tmp_path / "scheduling.jsonl").read_text().splitlines()]
    latency = {r["method"]: r["value"] for r in records if r["metric"] == "mean_latency_s"}
    assert set(latency) == {"toy_lifo", "fcfs"} and all(v > 0 for v in latency.values())
    assert any(r["method"] == "toy_lifo" and r["task"] == "decision-overhead" for r in records)

