"""The scheduling suite: policies x workloads x arrival rates x seeds in the simulator (or the real serving loop),
and each policy's decision overhead, into the results store (results/scheduling.jsonl). Resumable: a cell (one
seed of one policy, workload and rate) already in the store is skipped.

Workloads (WORKLOADS), each with its acceptance source named in its records (`params["acceptance"]`):
- "paper-like": our SmolLM2 acceptance traces with their own output lengths at batch size 1 (the paper's analysis
  setting, arXiv 2505.17074 sec. 3; its prompt sets mix chat and code, as ours do). The traces come from n-gram
  prompt-lookup drafting (no proposal on about half the steps), not from a small draft model as in the paper;
- "sharegpt": the same n-gram traces with ShareGPT-like lengths (fixtures/scheduling/output_lengths.json),
  continuous batching on the H100 cost model (16 requests, a 4096-token budget, 32k tokens of KV, recompute
  preemption; the CPU cost model when fixtures/scheduling/step_times_h100.json is absent);
- "draft-sharegpt", "draft-heavy", "mixed-sharegpt": parametric acceptance (reference/scheduling/acceptance.py:
  per-request Beta rates, geometric accepted tokens, early drift) for a small-draft-model regime, with
  ShareGPT-like or heavy-tailed lengths, batch size 1 on the H100 cost model with its measured draft cost.
Rates: either absolute (requests/s) or fractions of the server's capacity (`loads`), the capacity being max_batch
over the mean time a request keeps a full batch's slot busy, measured on seed 0's requests so that every seed of a
load runs at the same rate (the board pairs seeds).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from harness.checks import check_finite, check_int, check_results_dir
from harness.executors import LOCAL, ExecutorConfig
from harness.provenance import device_info, git_sha, versions
from harness.store import ResultsStore, cell_key, make_record, newest_records
from harness.suite import Suite, run_suite
from reference.scheduling.cost_model import SpecCostModel
from reference.scheduling.metrics import UNITS, summarize
from reference.scheduling.overhead import decision_overhead
from reference.scheduling.policies import make_policy, policy_names
from reference.scheduling.simulator import ServerConfig, simulate
from reference.scheduling.trace import load_traces
from reference.scheduling.workload import FIXTURES, Request, WorkloadSpec, make_requests

SUITE = "scheduling"
TRACES = FIXTURES / "traces_smollm2_cpu.jsonl"
COST_FILES = {"cpu": FIXTURES / "step_times_cpu.json", "cuda": FIXTURES / "step_times_h100.json"}
NGRAM = "ngram-traces"  # params["acceptance"] of the measured n-gram prompt-lookup traces
WORKLOADS = {
    "paper-like": dict(lengths="traces", acceptance=NGRAM, server=ServerConfig(max_batch=1, token_budget=4096),
                       cost="cpu"),
    "sharegpt": dict(lengths="sharegpt", acceptance=NGRAM,
                     server=ServerConfig(max_batch=16, token_budget=4096, kv_capacity=32768), cost="cuda"),
    "draft-sharegpt": dict(lengths="sharegpt", acceptance="draft-model", server=ServerConfig(max_batch=1),
                           cost="cuda-draft"),
    "draft-heavy": dict(lengths="heavy", acceptance="draft-model", server=ServerConfig(max_batch=1), cost="cuda-draft"),
    "mixed-sharegpt": dict(lengths="sharegpt", acceptance="mixed-tasks", server=ServerConfig(max_batch=1),
                           cost="cuda-draft"),
}
# LAPS-SD settings the paper leaves open, swept beside the defaults (reported as extra policy rows): where
# perceptible requests live, an eager stability test, and line 13 off or with a predictor as poor as the arrival one.
LAPS_SWEEP = ({"perceptible_queue": "demote"}, {"min_steps": 2, "window": 1}, {"late_error": None},
              {"late_error": 0.5})
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class SchedConfig:
    policies: tuple[str, ...] = ()  # () = every registered policy
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    loads: tuple[float, ...] = (0.5, 0.7, 0.9)
    rates: tuple[float, ...] = ()  # absolute requests/s; when given, replaces loads
    n_requests: int = 300
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    predictor_error: float = 0.5
    sweep: bool = True  # also run LAPS_SWEEP variants of laps_sd
    overhead_queued: int = 1000
    traces: str = str(TRACES)
    results: str = "results"
    rerun: bool = False

    def validate(self) -> None:
        known = policy_names()
        bad = [p for p in self.policies if p not in known]
        if bad:
            raise ValueError(f"policies (--policies): unknown {bad}; registered: {known}")
        bad = [w for w in self.workloads if w not in WORKLOADS]
        if bad or not self.workloads:
            raise ValueError(f"workloads (--workloads): unknown {bad or 'none given'}; known: {list(WORKLOADS)}")
        if not self.rates and (not self.loads or any(not 0 < x < 1.5 for x in self.loads)):
            raise ValueError(f"loads (--loads) must be fractions of capacity in (0, 1.5), got {list(self.loads)}")
        if any(not 0 < r < float("inf") for r in self.rates):
            raise ValueError(f"rates (--rates) must be positive, finite requests per second, got {list(self.rates)}")
        if self.n_requests < 1:
            raise ValueError(f"n_requests (--n-requests) must be >= 1, got {self.n_requests}")

        check_int(self.n_requests, "n_requests", "--n-requests", 1)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds (--seeds) must be distinct integers, at least one, got {list(self.seeds)}")
        for seed in self.seeds:
            check_int(seed, "seeds", "--seeds")
        check_int(self.overhead_queued, "overhead_queued", None)
        check_finite((self.predictor_error,), "predictor_error", None)
        if self.predictor_error < 0:
            raise ValueError(f"predictor_error must be >= 0, got {self.predictor_error}")
        if not Path(self.traces).is_file():
            raise FileNotFoundError(f"traces: trace file {self.traces!r} does not exist")
        check_results_dir(self.results)


def cost_model(kind: str) -> SpecCostModel:
    """The measured cost model of a workload: its device's step-times file, else the CPU one.

    The traces were decoded with a prompt-lookup draft, which runs on the host in microseconds whatever the
    accelerator; the GPU file times an early-exit draft (a draft with a real cost, for other traces). When the
    drafts differ, the draft term comes from the CPU file (the host's prompt lookup) and the verify and prefill
    terms from the GPU's. "cuda-draft" keeps the GPU file's own draft cost: the parametric scenarios stand in for
    a draft model, which costs a real share of each step.
    """
    if kind == "cuda-draft":
        path = COST_FILES["cuda"]
        return SpecCostModel.from_file(path) if path.is_file() else cost_model("cpu")
    cpu_path = COST_FILES["cpu"]
    if not cpu_path.is_file():
        raise FileNotFoundError(f"no step-times file at {cpu_path}: run fixtures/scheduling/make_traces.py")
    cpu = SpecCostModel.from_file(cpu_path)
    path = COST_FILES[kind]
    if kind == "cpu" or not path.is_file():
        return cpu
    model = SpecCostModel.from_file(path)
    drafts = [json.loads(p.read_text(encoding="utf-8")).get("draft", {}).get("kind") for p in (cpu_path, path)]
    if drafts[0] != drafts[1]:
        model = replace(model, draft=cpu.draft)
    return model


def capacity(requests: list[Request], cost: SpecCostModel, max_batch: int) -> float:
    """Requests/s a full batch sustains: max_batch / mean busy time of one request's slot."""
    busy = []
    for r in requests:
        steps = len(r.accepted)
        ctx = r.prompt_len + r.output_len / 2
        busy.append(cost.prefill_time(r.prompt_len) + steps * cost.step_time(max_batch, int(max_batch * ctx)))
    return max_batch / (sum(busy) / len(busy))


def policy_variants(config: SchedConfig) -> list[tuple[str, str, dict]]:
    """(label, policy name, params): each policy at its defaults, plus the LAPS-SD sweep."""
    names = list(config.policies) or policy_names()
    out = [(n, n, {}) for n in names]
    if config.sweep and "laps_sd" in names:
        for kw in LAPS_SWEEP:
            out.append(("laps_sd(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")", "laps_sd", kw))
    return out


def workload_spec(wname: str, config: SchedConfig, rate: float, seed: int, cost: SpecCostModel) -> WorkloadSpec:
    w = WORKLOADS[wname]
    acceptance = "traces" if w["acceptance"] == NGRAM else w["acceptance"]
    return WorkloadSpec(wname, w["lengths"], config.n_requests, rate, config.predictor_error, seed, acceptance,
                        cost.draft_len)


def plan(config: SchedConfig) -> list[dict]:
    """Every simulated cell: workload, rate (and load), seed, policy variant."""
    traces = load_traces(config.traces)
    cells = []
    for wname in config.workloads:
        w = WORKLOADS[wname]
        cost = cost_model(w["cost"])
        cap = capacity(make_requests(workload_spec(wname, config, 1.0, 0, cost), traces), cost, w["server"].max_batch)
        points = [(r, r / cap) for r in config.rates] or [(x * cap, x) for x in config.loads]
        for rate, load in points:
            for seed in config.seeds:
                requests = make_requests(workload_spec(wname, config, rate, seed, cost), traces)
                for label, name, kw in policy_variants(config):
                    params = {"rate": round(rate, 6), "n_requests": config.n_requests,
                              "max_batch": w["server"].max_batch, "token_budget": w["server"].token_budget,
                              "kv_capacity": w["server"].kv_capacity, "preemption": w["server"].preemption,
                              "draft_len": cost.draft_len, "seed": seed, "cost_device": cost.device,
                              "predictor_error": config.predictor_error, "lengths": w["lengths"],
                              "acceptance": w["acceptance"]}
                    cells.append({"task": wname, "method": label, "policy": name, "kw": kw, "params": params,
                                  "load": load, "requests": requests, "cost": cost, "server": w["server"],
                                  "keep_latencies": seed == config.seeds[0]})
    return cells


def _protocol(cell: dict) -> dict:
    return {"simulator": "reference.scheduling.simulator (iteration-level continuous batching)",
            "traces": Path(TRACES).name, "cost_model": f"fitted to step_times ({cell['cost'].device})"}


def run_cell(cell: dict, prov: dict, config: SchedConfig) -> list[dict]:
    """Simulate one cell; its records (latency metrics; per-request latencies on the mean_latency record)."""
    policy = make_policy(cell["policy"], **cell["kw"])
    res = simulate(cell["requests"], policy, cell["cost"], cell["server"])
    states = res.states
    metrics = summarize([s.arrival for s in states], [s.first_token for s in states], [s.finish for s in states],
                        [s.request.output_len for s in states])
    extra_common = {"load": round(cell["load"], 4), "policy_params": cell["kw"],
                    "preemptions": sum(s.preemptions for s in states),
                    "decision_us_per_iteration": 1e6 * res.decision_s / max(1, res.n_iterations)}
    out = []
    for metric, value in metrics.items():
        extra = dict(extra_common)
        if metric == "mean_latency_s" and cell.get("keep_latencies", True):  # one seed's, for the CDFs
            extra.update(latencies=[round(x, 5) for x in res.latencies], ttfts=[round(x, 5) for x in res.ttfts])
        out.append(make_record(SUITE, cell["task"], cell["method"], "sim", "smollm2", cell["params"], metric, value,
                               UNITS[metric], seed=cell["params"]["seed"], protocol=_protocol(cell), extra=extra, provenance=prov))
    return out


def overhead_cells(config: SchedConfig) -> list[dict]:
    """One cell per policy variant: its decision time with `overhead_queued` requests queued (the 50 us target)."""
    params = {"queued": config.overhead_queued, "max_batch": 8, "iterations": 2000}
    return [{"task": "decision-overhead", "method": label, "policy": name, "kw": kw, "params": params}
            for label, name, kw in policy_variants(config)]


def run_overhead_cell(cell: dict, prov: dict) -> list[dict]:
    cost = cost_model("cpu")
    sec = min(decision_overhead(make_policy(cell["policy"], **cell["kw"]), cost, cell["params"]["queued"], 2000, 8, s)
              for s in (0, 1, 2))
    return [make_record(SUITE, "decision-overhead", cell["method"], "sim", "smollm2", cell["params"],
                        "decision_overhead_us", sec * 1e6, "us",
                        protocol={"timer": "time.perf_counter, best of 3 runs of 2000 iterations"},
                        extra={"policy_params": cell["kw"]}, provenance=prov)]


def measure(config: SchedConfig, cells: list[dict], emit) -> None:
    """The executor's worker: simulate (or time the decisions of) each cell, `emit` its records."""
    prov = {"device": device_info("cpu"), "versions": versions(), "git_sha": git_sha()}
    for cell in cells:
        emit(run_overhead_cell(cell, prov) if cell["task"] == "decision-overhead" else run_cell(cell, prov, config))


class SchedSuite(Suite):
    """The simulated sweep as a Suite (harness/suite.py): simulated cells, then the decision-overhead cells."""

    def __init__(self):
        # decision-overhead cells are timed: their key names the device (simulated ones not)
        self.device_name = device_info("cpu")

    def store_name(self, config) -> str:
        return SUITE

    def plan(self, config: SchedConfig) -> list[dict]:
        return plan(config) + overhead_cells(config)

    def cell_key(self, config: SchedConfig, cell: dict) -> str:
        return cell_key(SUITE, cell["task"], cell["method"], "sim", "smollm2", cell["params"], self.device_name)

    def shard_key(self, config: SchedConfig, cell: dict) -> tuple:
        return (cell["method"], cell["task"], cell["params"].get("rate"), "smollm2")

    def waves(self, config: SchedConfig, pending: list[dict]):
        yield "scheduling (sim)", pending

    def worker(self, config: SchedConfig):
        return measure

    def summarize(self, config: SchedConfig, store: ResultsStore, cells: list[dict], pending: list[dict]) -> dict:
        sim = [c for c in cells if c["task"] != "decision-overhead"]
        todo = [c for c in pending if c["task"] != "decision-overhead"]
        return {"cells": len(sim), "ran": len(todo), "skipped": len(sim) - len(todo),
                "overhead_ran": len(pending) - len(todo), "store": str(store.path(SUITE)),
                "table": summary_table(store, config)}


def run_scheduling(config: SchedConfig, progress: bool = True, executor: ExecutorConfig = LOCAL) -> dict:
    """Simulated cells, then decision-overhead cells; shards (one Ray task each): policy x workload x rate."""
    return run_suite(SchedSuite(), config, progress=progress, executor=executor)


def summary_table(store: ResultsStore, config: SchedConfig) -> str:
    """Mean and p99 latency per workload, load and policy from the store (newest record per cell), averaged over
    the config's seeds."""
    from tabulate import tabulate

    rows: dict = {}
    for r in newest_records(store.records(SUITE), SUITE):
        p = r["params"]
        if (r["impl"] == "sim" and r["task"] in config.workloads and r["metric"] in ("mean_latency_s", "p99_latency_s")
                and (p.get("n_requests"), p.get("predictor_error")) == (config.n_requests, config.predictor_error)
                and p.get("seed") in config.seeds):
            rows.setdefault((r["task"], r["extra"].get("load"), r["method"]), {}).setdefault(r["metric"], []).append(
                r["value"])
    rows = {k: {m: sum(v) / len(v) for m, v in ms.items()} for k, ms in rows.items()}
    table = [(t, f"{load:.2f}" if load is not None else "-", m, f"{v.get('mean_latency_s', float('nan')):.3f}",
              f"{v.get('p99_latency_s', float('nan')):.3f}") for (t, load, m), v in sorted(rows.items(),
                                                                                         key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2]))]
    return tabulate(table, headers=["workload", "load", "policy", "mean latency s", "p99 latency s"])

