"""Acceptance of the one registry, the plugin hook and the Suite protocol (issue 17): a package outside the
repository, written here to a temporary directory, adds a KV method, a kernel for `decode_attention`, a scheduling
policy and a suite, exactly one file each, and with no other edit they are listed by `harness methods` /
`harness ops`, the kernel passes `harness conform` and joins the kernel benchmark's grid (a CPU sweep with a fake
timer measures and checks its cells), the method passes the token-method property tests, the policy
runs through the scheduling suite's simulator into latency records, and `harness run --suite toy` plans, skips,
measures and stores the toy suite's cells and puts its board on the leaderboard. Everything runs in subprocesses with LONGCTX_PLUGINS set (or --plugins),
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
    "toy_suite.py": r'''
        """A toy suite: the mean of n seeded normal draws for each n (`--toy-sizes`), one cell and one record per n."""
        from dataclasses import dataclass

        import torch

        from harness.boards.page import Board, add_table
        from harness.provenance import device_info, git_sha, versions
        from harness.store import cell_key, make_record
        from harness.suite import SUITES, Suite


        @dataclass(frozen=True)
        class ToyConfig:
            sizes: tuple
            results: str = "results"
            rerun: bool = False

            def validate(self):
                if not self.sizes or min(self.sizes) < 1:
                    raise ValueError(f"--toy-sizes must be integers >= 1, got {self.sizes}")


        @SUITES.register("toy")
        class ToySuite(Suite):
            help = "mean of n normal draws"

            @classmethod
            def add_arguments(cls, parser):
                parser.add_argument("--toy-sizes", default="10,1000", help="toy suite: comma-separated sample sizes")

            def config_from_args(self, args):
                return ToyConfig(tuple(int(x) for x in args.toy_sizes.split(",")), args.results, args.rerun)

            def plan(self, config):
                return [{"n": n, "cell": cell_key(self.name, "normal-mean", "torch", "reference", "none", {"n": n})}
                        for n in config.sizes]

            def measure_cell(self, config, cell):
                x = torch.randn(cell["n"], generator=torch.Generator().manual_seed(cell["n"]), dtype=torch.float64)
                prov = {"device": device_info("cpu"), "versions": versions(), "git_sha": git_sha()}
                return [make_record(self.name, "normal-mean", "torch", "reference", "none", {"n": cell["n"]}, "abs_mean",
                                    abs(float(x.mean())), "1", provenance=prov)]

            def summarize(self, config, store, cells, pending):
                rows = sorted((r["params"]["n"], r["value"]) for r in store.records(self.name))
                return {"table": "\n".join(f"n={n}: |mean| {v:.4f}" for n, v in rows)}

            def board(self, records):
                mine = [r for r in records if r["suite"] == self.name]
                if not mine:
                    return None
                md, hp = [], []
                add_table(md, hp, ["n", "abs mean"], [[r["params"]["n"], f"{r['value']:.4f}"] for r in mine])
                return Board("Toy suite", "\n".join(md), "".join(hp), records=mine)
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
    benchmarked = ops["decode_attention"].split("benchmarked (bench --impls): ")[1]
    assert benchmarked == "['sdpa_flash', 'triton_dense', 'flashinfer', 'toy_decode']"
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


BENCH_SWEEP = r'''
import json, sys
from harness.kernels import bench as bk

default = bk.KernelBenchConfig()
planned = [c for c in bk.plan(default, None, device="cuda: NVIDIA H100 80GB HBM3") if c["impl"] == "toy_decode"]
small = bk.KernelBenchConfig(shapes=("smollm2",), contexts=(48, 80), batches=(1, 2), max_context={}, dtype="float32",
                             results=sys.argv[1], impls=("sdpa_flash", "toy_decode"))
dev = bk.Device("cpu", lambda fn, warmup, rep: (fn(), 0.5)[1], lambda: 8 << 30, lambda: 1000.0, copy_nbytes=1 << 20)
summary = bk.run_kernels_bench(small, progress=False, dev=dev)
print(json.dumps({"default_impls": default.impls, "planned": len(planned), "table": summary["table"]}))
'''


def test_the_toy_kernel_joins_the_kernel_bench_grid(plugin, tmp_path):
    _, env = plugin
    out = subprocess.run([sys.executable, "-c", BENCH_SWEEP, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["default_impls"][-1] == "toy_decode" and summary["planned"] == 2 * 19  # every cell of the grid
    assert "toy_decode" in summary["table"]
    records = [json.loads(line) for line in (tmp_path / "kernels_bench.jsonl").read_text().splitlines()]
    toy = [r for r in records if r["impl"] == "toy_decode"]
    assert len(toy) == 4 * 4 and {(r["task"], r["method"]) for r in toy} == {("decode_attention", "full")}
    latency = [r for r in toy if r["metric"] == "latency_ms"]
    assert all(r["extra"]["checked"] and r["extra"]["correct"] for r in latency), [r["extra"] for r in latency]
    sizes = {r["params"]["context"]: r["value"] for r in toy if r["metric"] == "bytes_read" and r["params"]["batch"] == 1}
    assert sizes[80] > sizes[48] > 0  # the op's bytes-read model, not a constant
    # The CLI knows the name: beside an unknown one it is listed among the known ones.
    cli = subprocess.run([sys.executable, "-m", "harness", "bench", "--impls", "toy_decode,nope"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "unknown ['nope']" in cli.stderr and "'toy_decode'" in cli.stderr


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


def test_the_toy_suite_runs_resumes_and_reaches_the_leaderboard(plugin, tmp_path):
    _, env = plugin
    assert "toy" in harness(env, "run", "--help").stdout
    first = harness(env, "run", "--suite", "toy", "--toy-sizes", "5,50", "--results", str(tmp_path), "--no-progress")
    assert "ran 2 cells, skipped 0" in first.stdout and "n=50: |mean|" in first.stdout
    again = harness(env, "run", "--suite", "toy", "--toy-sizes", "5,50,500", "--results", str(tmp_path),
                    "--no-progress", "--no-leaderboard")
    assert "ran 1 cells, skipped 2" in again.stdout
    records = [json.loads(line) for line in (tmp_path / "toy.jsonl").read_text().splitlines()]
    assert sorted(r["params"]["n"] for r in records) == [5, 50, 500]
    assert all(r["suite"] == "toy" and r["metric"] == "abs_mean" and 0 <= r["value"] < 1 for r in records)
    headline = (tmp_path / "leaderboard" / "README.md").read_text()
    assert "## Toy suite" in headline and "[suite-toy.md](suite-toy.md)" in headline
    page = (tmp_path / "leaderboard" / "suite-toy.md").read_text()
    assert "## Toy suite" in page and "| 50 " in page
