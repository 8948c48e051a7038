"""Real-execution mode of the scheduling suite: a small serving loop that really decodes speculatively with the
embedded model, the policy choosing which request advances each iteration, and the simulator on the same workload.

By default one request advances per iteration (batch size 1, the paper's analysis setting, arXiv 2505.17074
sec. 3): the policy's best-ranked ready request runs one speculative step (reference.scheduling.speculative:
draft draft_len tokens, verify them in one target pass); a request's first iteration also prefills its prompt.
With `max_batch` > 1 (--max-batch) the loop batches continuously, as the simulator does: each iteration the
policy's `max_batch` best-ranked ready requests run one speculative step together, their drafts verified in one
padded target pass (reference/scheduling/batched.py); a request left out keeps its KV cache and resumes when the
policy picks it again (preemption at iteration boundaries; no KV capacity limit, so nothing is recomputed). Arrivals are
Poisson on the wall clock. Each request is one of our prompts (fixtures/scheduling/prompts.jsonl) whose recorded
trace (traces_smollm2_cpu.jsonl) gives the simulator the same requests: greedy decoding is deterministic, so the
real loop sees the acceptance the trace recorded (the loop counts any step that differs). The simulator then
serves the same arrivals with a cost model fitted to the loop's own iterations (SpecCostModel.fit_iterations:
batch size, context, prefilled tokens and wall time of each iteration), so that both see the step costs of the
same threads and machine load (on a shared machine a calibration taken minutes apart was off by 20-30%); what
the comparison then tests is the simulator's queueing, batching and preemption. Both go to the store as impl
"real" and "sim" of one cell, for the leaderboard's sim-vs-real table (target: within 15%). The committed
step_times_cpu.json (2 threads) stays the paper-like workload's cost model and sets the rate of a `load`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial

from tqdm.auto import tqdm

from harness.checks import check_finite, check_int, check_results_dir
from harness.executors import LOCAL, ExecutorConfig
from harness.provenance import device_info, git_sha, versions
from harness.scheduling.run import COST_FILES, SUITE, TRACES, capacity
from harness.store import ResultsStore, cell_key, make_record
from harness.suite import Suite, run_suite
from harness.worker_cache import cached
from reference.scheduling.cost_model import SpecCostModel
from reference.scheduling.metrics import UNITS, summarize
from reference.scheduling.policies import make_policy, policy_names
from reference.scheduling.simulator import ServerConfig, pick_batch, ReadyQueue, simulate
from reference.scheduling.state import RequestState
from reference.scheduling.trace import load_traces
from reference.scheduling.workload import FIXTURES, Request, WorkloadSpec, make_requests

PROMPTS = FIXTURES / "prompts.jsonl"
TASK = "real-cpu"


@dataclass(frozen=True)
class RealConfig:
    policies: tuple[str, ...] = ()  # () = every registered policy
    rates: tuple[float, ...] = ()  # requests/s; () = `load` of the CPU capacity
    load: float = 0.8
    n_requests: int = 10
    max_output: int = 160  # only prompts whose recorded output is this short: a real run of 5 policies stays minutes
    max_batch: int = 1  # requests per iteration (continuous batching when > 1)
    seed: int = 0
    predictor_error: float = 0.5
    results: str = "results"
    rerun: bool = False

    def validate(self) -> None:
        bad = [p for p in self.policies if p not in policy_names()]
        if bad:
            raise ValueError(f"policies (--policies): unknown {bad}; registered: {policy_names()}")
        if self.n_requests < 1:
            raise ValueError(f"n_requests (--n-requests) must be >= 1, got {self.n_requests}")
        if any(not 0 < r < float("inf") for r in self.rates) or not 0 < self.load < float("inf"):
            raise ValueError(f"rates (--rates) and load must be positive and finite, got {list(self.rates)}, {self.load}")

        check_int(self.n_requests, "n_requests", "--n-requests", 1)
        check_int(self.max_output, "max_output", None, 1)
        check_int(self.max_batch, "max_batch", "--max-batch", 1)
        check_int(self.seed, "seed", "--seed")
        check_finite((self.predictor_error,), "predictor_error", None)
        if self.predictor_error < 0:
            raise ValueError(f"predictor_error must be >= 0, got {self.predictor_error}")
        check_results_dir(self.results)


def real_workload(config: RealConfig, rate: float, traces_by_id: dict) -> list[Request]:
    """`n_requests` of the traced prompts, each with its own trace and length, Poisson arrivals at `rate`."""
    spec = WorkloadSpec(TASK, "traces", config.n_requests, rate, config.predictor_error, config.seed)
    return make_requests(spec, [traces_by_id[k] for k in sorted(traces_by_id)])


def serve(requests: list[Request], policy, cost: SpecCostModel, engine, prompts: dict, max_new_tokens: int,
          progress=None, max_batch: int = 1) -> tuple[list[RequestState], dict]:
    """Really serve `requests` (arrival times in seconds from now), one (batched) speculative step per iteration.
    A request's service is accounted as the simulator does, the batch-1 step time of `cost` at its context, so that
    quanta and service are in the same units in the loop and in its simulated twin."""
    from reference.scheduling.batched import batched_step

    policy.bind(cost)
    states = [RequestState(r, last_service=r.arrival) for r in requests]
    pending = sorted(states, key=lambda s: (s.arrival, s.rid))
    queue, sessions, nxt, left = ReadyQueue(policy), {}, 0, len(states)
    config = ServerConfig(max_batch=max_batch, token_budget=10**9)
    stats = {"steps_off_trace": 0, "length_mismatches": 0, "iterations": []}
    t0 = time.perf_counter()
    while left:
        now = time.perf_counter() - t0
        while nxt < len(pending) and pending[nxt].arrival <= now:
            policy.on_arrival(pending[nxt], now)
            queue.push(pending[nxt], now)
            nxt += 1
        if not queue:
            time.sleep(max(0.0, pending[nxt].arrival - (time.perf_counter() - t0)))
            continue
        batch = pick_batch(queue, config, cost.draft_len, now)
        start, prefilled = time.perf_counter(), 0
        for s in batch:
            if s.rid not in sessions:
                sessions[s.rid] = engine.session(prompts[s.request.trace_id], max_new_tokens)
                prefilled += s.context
        context = sum(s.context for s in batch)
        steps = batched_step([sessions[s.rid] for s in batch])
        stats["iterations"].append({"batch": len(batch), "context": context, "prefill_tokens": prefilled,
                                    "seconds": time.perf_counter() - start})
        now = time.perf_counter() - t0
        for s, step in zip(batch, steps):
            expected = s.request.accepted[s.steps] if s.steps < len(s.request.accepted) else None
            stats["steps_off_trace"] += int(step.accepted != expected)
            service = cost.step_time(1, s.context)
            s.advance(step.accepted, service, now)
            if sessions[s.rid].done != s.done:
                stats["length_mismatches"] += 1
                s.generated = s.request.output_len if sessions[s.rid].done else min(s.generated,
                                                                                    s.request.output_len - 1)
            if s.done:
                s.finish = now
                del sessions[s.rid]
                left -= 1
                if progress:
                    progress()
            else:
                policy.on_step(s, service, now)
                queue.push(s, now)
    return states, stats


def _metrics(states: list[RequestState]) -> dict:
    return summarize([s.arrival for s in states], [s.first_token for s in states], [s.finish for s in states],
                     [s.request.output_len for s in states])


def _inputs(config: RealConfig) -> tuple[dict, SpecCostModel, dict, dict]:
    """(cost file meta, cost model, prompt texts by id, traces by id) for the real loop, checked."""
    meta = json.loads(COST_FILES["cpu"].read_text(encoding="utf-8"))
    if meta.get("draft", {}).get("kind") != "prompt_lookup":
        raise ValueError(f"{COST_FILES['cpu']} was measured with draft {meta.get('draft')}; the real loop drafts by "
                         "prompt lookup, as the traces were made")
    cost = SpecCostModel.from_file(COST_FILES["cpu"])
    texts = {p["id"]: p["text"] for p in (json.loads(x) for x in PROMPTS.read_text(encoding="utf-8").splitlines()
                                          if x.strip())}
    traces = {t.id: t for t in load_traces(TRACES) if t.id in texts and t.output_len <= config.max_output}
    if not traces:
        raise ValueError(f"no traced prompt has an output of at most max_output={config.max_output} tokens")
    return meta, cost, texts, traces


def _engine(meta: dict, cost: SpecCostModel, texts: dict, traces: dict):
    """The embedded model's speculative engine and the tokenized prompts, loaded once per process."""
    from harness.lm.model import load_model
    from reference.scheduling.speculative import PromptLookupDraft, SpecEngine, chat_prompt_ids

    lm = cached(("model", "smollm2"), lambda: load_model("smollm2"))
    draft = PromptLookupDraft(max_ngram=meta["draft"]["max_ngram"], min_ngram=meta["draft"]["min_ngram"])
    engine = SpecEngine(lm.model, draft, cost.draft_len)
    prompts = {k: chat_prompt_ids(lm.tokenizer, texts[k]) for k in traces}
    for k, t in traces.items():
        if len(prompts[k]) != t.prompt_len:
            raise ValueError(f"prompt {k!r} tokenizes to {len(prompts[k])} tokens, its trace says {t.prompt_len}: "
                             "the traces were made with another tokenizer or template")
    return engine, prompts


def measure(config: RealConfig, cells: list[tuple], emit, progress: bool = False) -> None:
    """The executor's worker: serve each (rate, policy, params) cell for real, simulate the same arrivals, `emit`."""
    from reference.scheduling.speculative import draft_config

    meta, cost, texts, traces = _inputs(config)
    engine, prompts = _engine(meta, cost, texts, traces)
    max_new = int(meta.get("max_new_tokens", 256))
    prov = {"device": device_info("cpu"), "versions": versions(), "git_sha": git_sha()}
    server = "batch 1, one speculative step per iteration" if config.max_batch == 1 else \
        f"continuous batching, up to {config.max_batch} requests per iteration in one padded target pass"
    protocol = {"server": server, "traces": TRACES.name,
                "cost_model": "fitted to the real loop's own iterations (batch, context, prefill tokens, wall time)",
                "draft": draft_config(engine)}
    for rate, name, params in cells:
        requests = real_workload(config, rate, traces)
        bar = tqdm(total=len(requests), desc=f"real {name} @ {rate:.3f} req/s", unit="req", disable=not progress)
        states, stats = serve(requests, make_policy(name), cost, engine, prompts, max_new, bar.update,
                              config.max_batch)
        bar.close()
        iterations = stats.pop("iterations")
        fitted = SpecCostModel.fit_iterations(iterations, cost.draft_len, "cpu")
        sim = simulate(requests, make_policy(name), fitted, ServerConfig(max_batch=config.max_batch, token_budget=10**9))
        stats["n_iterations"] = len(iterations)
        recs = []
        for impl, sts, extra in (("real", states, stats), ("sim", sim.states, {})):
            for metric, value in _metrics(sts).items():
                e = dict(extra)
                if metric == "mean_latency_s":
                    e["cost_coefficients"] = {"step": fitted.verify, "prefill": fitted.prefill}
                    e.update(latencies=[round(s.finish - s.arrival, 5) for s in sts],
                             ttfts=[round(s.first_token - s.arrival, 5) for s in sts])
                recs.append(make_record(SUITE, TASK, name, impl, "smollm2", params, metric, value, UNITS[metric],
                                        seed=config.seed, protocol=protocol, extra=e, provenance=prov))
        emit(recs)


class RealSuite(Suite):
    """The real serving loop as a Suite (harness/suite.py): a cell is (rate, policy, params), served for real and
    simulated on the same arrivals. Real latencies are wall clock: give each Ray task the CPUs it needs
    (--cell-cpus) or cells running side by side slow each other down."""

    def __init__(self, progress: bool = True, local: bool = True):
        self.progress = progress and local  # per-request bars only where they can be seen
        self.device_name = device_info("cpu")  # wall-clock latencies: keys name the device (KEYED_BY_DEVICE)
        self.rows: list[tuple] = []

    def store_name(self, config) -> str:
        return SUITE

    def plan(self, config: RealConfig) -> list[tuple]:
        _, file_cost, _, traces = _inputs(config)
        # `load` is relative to the committed calibration (step_times_cpu.json), so that a cell's rate, hence its
        # key, does not change from run to run; the in-process calibration only feeds the simulator of each cell.
        rates = list(config.rates) or [config.load * capacity(real_workload(config, 1.0, traces), file_cost,
                                                              config.max_batch)]
        cells = []
        for rate in rates:
            for name in (config.policies or tuple(policy_names())):
                params = {"rate": round(rate, 6), "n_requests": config.n_requests, "max_output": config.max_output,
                          "max_batch": config.max_batch, "seed": config.seed, "draft_len": file_cost.draft_len,
                          "cost_device": "cpu", "predictor_error": config.predictor_error}
                cells.append((rate, name, params))
        return cells

    def cell_key(self, config: RealConfig, cell: tuple) -> str:
        return cell_key(SUITE, TASK, cell[1], "real", "smollm2", cell[2], self.device_name)

    def shard_key(self, config: RealConfig, cell: tuple) -> tuple:
        return (cell[1], TASK, cell[0], "smollm2")

    def waves(self, config: RealConfig, pending: list[tuple]):
        yield "scheduling (real)", pending

    def worker(self, config: RealConfig):
        return partial(measure, progress=self.progress)

    def on_records(self, recs: list[dict]) -> None:
        real = next(r for r in recs if r["impl"] == "real" and r["metric"] == "mean_latency_s")
        sim = next(r for r in recs if r["impl"] == "sim" and r["metric"] == "mean_latency_s")
        real_m, sim_m = real["value"], sim["value"]
        self.rows.append((f"{real['params']['rate']:.3f}", real["method"], f"{real_m:.2f}", f"{sim_m:.2f}",
                          f"{100 * (sim_m - real_m) / real_m:+.1f}", real["extra"]["steps_off_trace"]))

    def summarize(self, config: RealConfig, store: ResultsStore, cells: list, pending: list) -> dict:
        from tabulate import tabulate

        table = tabulate(self.rows, headers=["rate req/s", "policy", "real mean s", "sim mean s", "sim vs real %",
                                             "steps off trace"])
        return {"ran": len(pending), "skipped": len(cells) - len(pending), "store": str(store.path(SUITE)),
                "table": table}


def run_real(config: RealConfig, progress: bool = True, executor: ExecutorConfig = LOCAL) -> dict:
    """Serve the workload for real under each policy, simulate it too, store both; a summary table.

    Shards (one Ray task each): policy x rate.
    """
    return run_suite(RealSuite(progress, executor.name == "local"), config, progress=progress, executor=executor)
