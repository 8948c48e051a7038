"""The Suite protocol (harness/suite.py): every converted suite plans exactly the cells the runners it replaced
planned (same keys, same order), so a rerun after the change skips what the store holds and records stay the same.

fixtures/suites/cell_keys.json holds the keys the old runners (run_niah, run_tasks, run_dllm, run_scheduling,
serve_real before run_suite) planned for the configs below, timed cells keyed with the device "cpu: golden".
The three dllm_cache keys changed on purpose when its preset gained `rule: official` (dLLM-Cache's official refresh
rule, a different behaviour from the one the old keys measured).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.dllm import run as rd
from harness.kv import run_niah as rn
from harness.kv import run_tasks as rt
from harness.scheduling import run as rs
from harness.scheduling import serve_real as sr
from harness.store import ResultsStore, cell_key, make_record
from harness.suite import SUITES, Suite, run_suite

GOLDEN = json.loads((Path(__file__).resolve().parents[3] / "fixtures" / "suites" / "cell_keys.json").read_text())
DEV = "cpu: golden"
ALL_KV = ("full", "streaming_llm", "h2o", "snapkv", "pyramidkv", "tova", "knorm", "fourier")


def configs(tmp: Path) -> dict:
    return {
        "niah-default": (rn.NiahSuite(), rn.NiahConfig(methods=ALL_KV)),
        "niah-variant": (rn.NiahSuite(), rn.NiahConfig(
            methods=("snapkv", "h2o"), compression_ratio=0.25, lengths=(512,), depths=(0.25,), trials=2,
            question_aware=True, impl="torch", seed=3, max_new_tokens=5, method_params={"snapkv": {"window": 16}})),
        "ruler": (rt.TaskSuite(), rt.TaskConfig(suite="ruler", methods=("full", "snapkv"), lengths=(1024,), trials=2)),
        "longbench": (rt.TaskSuite(), rt.TaskConfig(suite="longbench", methods=("full", "knorm"),
                                                    tasks=("samsum", "lcc"), data_dir="fixtures/longbench", limit=2)),
        "dllm": (rd.DLLMSuite(), rd.DLLMAccuracyConfig(lengths=(64,), n=4, keep_ratios=(0.5, 0.25), results=str(tmp))),
        "scheduling": (rs.SchedSuite(), rs.SchedConfig(workloads=("paper-like", "draft-heavy"), n_requests=20,
                                                       seeds=(0, 1), loads=(0.5,))),
        "scheduling-real": (sr.RealSuite(progress=False), sr.RealConfig(policies=("fcfs", "laps_sd"), rates=(0.5, 1.0),
                                                                        n_requests=4)),
    }


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_each_suite_plans_the_old_runners_cells(name, tmp_path):
    suite, config = configs(tmp_path)[name]
    if hasattr(suite, "device_name"):
        suite.device_name = DEV  # timed cells: their keys name the device
    suite.validate(config)
    suite.prepare(config, ResultsStore(tmp_path))
    keys = [suite.cell_key(config, c) for c in suite.plan(config)]
    assert keys == GOLDEN[name]


def test_the_built_in_suites_are_registered_in_order():
    assert SUITES.names()[:5] == ["niah", "ruler", "longbench", "scheduling", "dllm"]
    assert all(issubclass(SUITES.get(n), Suite) for n in SUITES.names())


PROV = {"device": "cpu: test", "versions": {"torch": "t"}, "git_sha": "abc"}


class Counting(Suite):
    """A suite of three cells, each one record; measure_cell counts its calls."""

    calls = 0

    def plan(self, config):
        return [{"cell": cell_key("counting", f"t{i}", "m", "none", "toy", {"i": i}), "task": f"t{i}", "i": i}
                for i in range(3)]

    def measure_cell(self, config, cell):
        Counting.calls += 1
        return [make_record("counting", cell["task"], "m", "none", "toy", {"i": cell["i"]}, "x", float(cell["i"]),
                            "count", provenance=PROV)]

    def summarize(self, config, store, cells, pending):
        return {"table": f"{len(pending)} pending"}


class Cfg:
    def __init__(self, results, rerun=False):
        self.results, self.rerun, self.suite = results, rerun, "counting"

    def validate(self):
        pass


def test_run_suite_skips_stored_cells_and_reruns_on_request(tmp_path):
    first = run_suite(Counting(), Cfg(str(tmp_path)), progress=False)
    assert (first["ran"], first["skipped"], first["table"]) == (3, 0, "3 pending") and Counting.calls == 3
    assert sorted(r["value"] for r in ResultsStore(tmp_path).records("counting")) == [0.0, 1.0, 2.0]
    again = run_suite(Counting(), Cfg(str(tmp_path)), progress=False)
    assert (again["ran"], again["skipped"]) == (0, 3) and Counting.calls == 3
    rerun = run_suite(Counting(), Cfg(str(tmp_path), rerun=True), progress=False)
    assert (rerun["ran"], rerun["skipped"]) == (3, 0) and Counting.calls == 6
