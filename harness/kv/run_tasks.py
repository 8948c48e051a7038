"""RULER and LongBench sweeps: every KV method on every sample, through the same flow as NIAH, into the store.

A sample is a context and a question as token ids, gold answers and a scorer. The context is prefilled exactly
once per sample and every method compresses that same capture; the question follows (question-agnostic, as in
kvpress; `--question-aware` prefills it with the context and keeps it exact), then greedy decoding. Records per
(method, sample): "score" (the task's official metric, 0..1), "kv_bytes" and "kv_bytes_full". Resumable: cells
already in the store are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from harness.checks import check_attention_impl, check_int, check_results_dir
from harness.executors import LOCAL, ExecutorConfig
from harness.kv import longbench, ruler
from harness.kv.run_niah import json_params, model_id, timing_records, worker_methods, worker_model
from harness.lm.generate import capture, generate
from harness.lm.model import LoadedModel, check_model_name, max_positions
from harness.provenance import device_info, git_sha, now_iso, versions
from harness.store import ResultsStore, cell_key
from harness.suite import Suite, run_suite
from reference.kv import make_method
from reference.kv.base import BUDGET_RULE


@dataclass(frozen=True)
class TaskSample:
    task: str
    key: dict  # what identifies the sample in a cell's params (length/trial, or the row id)
    context_ids: list[int]
    question_ids: list[int]
    answers: list[str]
    max_new_tokens: int
    score: Callable[[str], float]
    extra: dict = field(default_factory=dict)  # group, length bucket, ... (into each record's extra)


@dataclass(frozen=True)
class TaskConfig:
    suite: str  # "ruler" or "longbench"
    model: str = "smollm2"
    methods: tuple[str, ...] = ("full",)
    compression_ratio: float = 0.5
    tasks: tuple[str, ...] = ()  # () = the suite's defaults
    lengths: tuple[int, ...] = (1024, 2048)  # ruler
    trials: int = 1  # ruler
    data_dir: str | None = None  # longbench
    longbench_e: bool = False
    limit: int | None = None  # longbench rows per task
    max_length: int | None = None  # longbench: middle-truncate prompts to this many tokens (default: model limit)
    question_aware: bool = False
    impl: str = "reference"
    seed: int = 0
    results: str = "results"
    rerun: bool = False
    method_params: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.suite not in ("ruler", "longbench"):
            raise ValueError(f"suite must be 'ruler' or 'longbench', got {self.suite!r}")
        if not self.methods:
            raise ValueError("methods (--methods): give at least one method")
        if not 0.0 <= self.compression_ratio < 1.0:
            raise ValueError(f"compression_ratio (--compression-ratio) must lie in [0, 1), got {self.compression_ratio}")
        if self.suite == "ruler" and (not self.lengths or any(int(n) < 256 for n in self.lengths)):
            raise ValueError(f"lengths (--lengths) must be integers >= 256, got {list(self.lengths)}")
        if self.trials < 1:
            raise ValueError(f"trials (--trials) must be >= 1, got {self.trials}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit (--limit) must be >= 1, got {self.limit}")

        check_model_name(self.model)
        check_int(self.seed, "seed", "--seed")
        check_attention_impl(self.impl)
        check_results_dir(self.results)
        known = ruler.TASKS if self.suite == "ruler" else tuple(longbench.TASKS)
        bad = [t for t in self.tasks if t not in known]
        if bad:
            raise ValueError(f"tasks (--tasks): unknown {self.suite} tasks {bad}; known: {list(known)}")
        if self.suite == "longbench":
            if self.longbench_e:
                bad = [t for t in self.tasks if not longbench.TASKS[t].in_longbench_e]
                if bad:
                    raise ValueError(f"tasks (--tasks): {bad} are not part of LongBench-E (--longbench-e)")
            if self.data_dir is not None and not Path(self.data_dir).is_dir():
                raise FileNotFoundError(f"data_dir (--data-dir): {self.data_dir!r} is not a directory")
            if self.max_length is not None:
                chosen = self.tasks or [t for t in longbench.TASKS if self.data_dir is None or (
                    Path(self.data_dir) / f"{t}{'_e' if self.longbench_e else ''}.jsonl").is_file()]
                need = max((longbench.TASKS[t].max_new_tokens for t in chosen), default=0) + 1
                check_int(self.max_length, "max_length", "--max-length", 1)
                if self.max_length < need:
                    raise ValueError(f"max_length (--max-length) must leave room for the tasks' {need - 1} new tokens "
                                     f"and a prompt: at least {need}, got {self.max_length}")


@dataclass(frozen=True)
class SampleSpec:
    """A sample before tokenization: enough to key its cells and to send to a worker that builds it."""

    task: str
    key: dict  # {"length", "trial"} (RULER) or {"row", "e"} (LongBench)
    max_new_tokens: int
    row: dict | None = None  # the LongBench row


def sample_specs(config: TaskConfig) -> list[SampleSpec]:
    """Every sample of the sweep, without a model (the plan of the cells needs no tokenizer)."""
    if config.suite == "ruler":
        tasks = config.tasks or ruler.TASKS
        bad = [t for t in tasks if t not in ruler.TASKS]
        if bad:
            raise ValueError(f"tasks: unknown RULER tasks {bad}; known: {list(ruler.TASKS)}")
        return [SampleSpec(task, {"length": int(length), "trial": trial}, ruler.DEFAULT_MAX_NEW_TOKENS[task])
                for task in tasks for length in config.lengths for trial in range(config.trials)]
    tasks = config.tasks or tuple(longbench.TASKS)
    if not config.tasks and config.data_dir is not None:  # a local directory: the tasks it has files for

        suffix = "_e.jsonl" if config.longbench_e else ".jsonl"
        tasks = tuple(t for t in longbench.TASKS if (Path(config.data_dir) / f"{t}{suffix}").is_file())
        if not tasks:
            raise ValueError(f"--data-dir {config.data_dir}: no <task>{suffix} file of any LongBench task")
    bad = [t for t in tasks if t not in longbench.TASKS]
    if bad:
        raise ValueError(f"tasks: unknown LongBench tasks {bad}; known: {list(longbench.TASKS)}")
    return [SampleSpec(task, {"row": str(row["_id"]), "e": config.longbench_e}, longbench.TASKS[task].max_new_tokens, row)
            for task in tasks for row in longbench.load_rows(task, config.data_dir, e=config.longbench_e, limit=config.limit)]


def build_sample(config: TaskConfig, spec: SampleSpec, lm: LoadedModel) -> TaskSample:
    """Tokenize one sample for `lm` (RULER: generate it; LongBench: the official prompt, middle-truncated)."""
    if config.suite == "ruler":
        task, length, trial = spec.task, spec.key["length"], spec.key["trial"]
        if length + spec.max_new_tokens > lm.max_positions:
            raise ValueError(f"lengths: {length} + {spec.max_new_tokens} new tokens exceed the "
                             f"model's {lm.max_positions} positions")
        s = ruler.make_sample(task, length, lm.tokenizer, config.seed, trial)
        return TaskSample(task, spec.key, list(s.context_ids), list(s.question_ids), list(s.answers), spec.max_new_tokens,
                          lambda pred, a=tuple(s.answers): ruler.score(task, pred, list(a)))
    task, row = spec.task, spec.row
    limit = (config.max_length or lm.max_positions) - spec.max_new_tokens
    context_text, question_text = longbench.build_prompt(task, row)
    ctx = lm.tokenizer(context_text, add_special_tokens=False).input_ids
    q = lm.tokenizer(question_text, add_special_tokens=False).input_ids
    if len(ctx) + len(q) > limit:  # official middle truncation; the question stays whole at the end
        ctx = longbench.truncate_middle(ctx, max(1, limit - len(q)))
    answers, classes = list(row["answers"]), list(row.get("all_classes") or [])
    return TaskSample(task, spec.key, ctx, q, answers, spec.max_new_tokens,
                      lambda pred, a=tuple(answers), c=tuple(classes): longbench.score(task, pred, list(a), list(c)),
                      {"group": longbench.TASKS[task].group, "bucket": longbench.length_bucket(row["length"]),
                       "length_field": row["length"]})


def plan(config: TaskConfig, model: str) -> list[dict]:
    """Every cell (method x sample) with its key."""
    methods = {n: make_method(n, config.compression_ratio, **config.method_params.get(n, {})) for n in config.methods}
    cells = []
    for spec in sample_specs(config):
        for name, method in methods.items():
            params = {"compression_ratio": config.compression_ratio, "question_aware": config.question_aware,
                      "seed": config.seed, "max_new_tokens": spec.max_new_tokens, "method_params": json_params(method),
                      **spec.key, **({"max_length": config.max_length} if config.suite == "longbench" else {})}
            cells.append({"spec": spec, "method": name, "params": params,
                          "cell": cell_key(config.suite, spec.task, name, config.impl, model, params)})
    return cells


def measure(config: TaskConfig, cells: list[dict], emit, lm: LoadedModel | None = None) -> None:
    """The executor's worker: each sample among `cells` is prefilled once for all its methods; `emit` per cell."""
    lm = lm or worker_model(config.model)
    methods = worker_methods(config, lm, dict.fromkeys(c["method"] for c in cells))
    provenance = {"device": device_info(str(next(lm.model.parameters()).device)), "versions": versions(),
                  "git_sha": git_sha()}
    protocol = {"tokenizer": lm.model_id, "prompt_template": f"{config.suite}-v1", "attention_backend": config.impl,
                "truncation": "middle" if config.suite == "longbench" else "none",
                "dtype": str(lm.model.dtype).replace("torch.", ""), "query_aware": config.question_aware,
                "kv_budget": BUDGET_RULE}
    by_sample: dict[str, list[dict]] = {}
    for c in cells:
        by_sample.setdefault(repr((c["spec"].task, sorted(c["spec"].key.items()))), []).append(c)
    for group in by_sample.values():
        s = build_sample(config, group[0]["spec"], lm)
        question = torch.tensor([s.question_ids])
        captured = capture(lm, torch.tensor([s.context_ids]), question if config.question_aware else None)
        for c in group:
            gen = generate(lm, captured, methods[c["method"]], question, s.max_new_tokens, impl=config.impl)
            value = float(s.score(gen.text))
            base = {"suite": config.suite, "task": s.task, "method": c["method"], "impl": config.impl,
                    "model": lm.model_id, "params": c["params"], "cell": c["cell"], "protocol": protocol,
                    "seed": config.seed, **provenance, "time": now_iso(),
                    "extra": {"prediction": gen.text, "answers": s.answers, "context_tokens": len(s.context_ids),
                              **s.extra}}
            emit([{**base, "metric": m, "value": v, "unit": u} for m, v, u in (
                ("score", value, "fraction"), ("kv_bytes", float(gen.kv_bytes), "bytes"),
                ("kv_bytes_full", float(gen.kv_bytes_full), "bytes"))] + timing_records(base, gen))
        del captured


class TaskSuite(Suite):
    """RULER or LongBench (config.suite) as a Suite (harness/suite.py); `lm`: a model loaded in this process."""

    def __init__(self, lm: LoadedModel | None = None):
        self.lm = lm

    def plan(self, config: TaskConfig) -> list[dict]:
        return plan(config, self.lm.model_id if self.lm is not None else model_id(config.model))

    def check_pending(self, config: TaskConfig, pending: list[dict]) -> None:
        if config.suite == "ruler" and pending and self.lm is None:  # lengths the model cannot hold: refused first
            limit = max_positions(config.model)
            worst = max(pending, key=lambda c: c["spec"].key["length"] + c["spec"].max_new_tokens)["spec"]
            if limit is not None and worst.key["length"] + worst.max_new_tokens > limit:
                raise ValueError(f"lengths (--lengths): {worst.key['length']} + {worst.max_new_tokens} new tokens exceed "
                                 f"the model's {limit} positions")

    def shard_key(self, config: TaskConfig, cell: dict) -> tuple:
        return (cell["method"], cell["spec"].task, cell["spec"].key.get("length"), config.model)

    def waves(self, config: TaskConfig, pending: list[dict]):
        yield f"{config.suite} {config.model}", pending

    def worker(self, config: TaskConfig):
        return measure if self.lm is None else partial(measure, lm=self.lm)

    def summarize(self, config: TaskConfig, store: ResultsStore, cells: list[dict], pending: list[dict]) -> dict:
        keys = {c["cell"] for c in cells}
        scores: dict = {}
        for r in store.records(config.suite):
            if r["cell"] in keys and r["metric"] == "score":
                scores.setdefault(r["method"], {}).setdefault(r["task"], []).append(r["value"])
        return {"ran": len(pending), "skipped": len(cells) - len(pending), "store": str(store.path(config.suite)),
                "scores": {m: {t: sum(v) / len(v) for t, v in ts.items()} for m, ts in scores.items()}}


def run_tasks(config: TaskConfig, lm: LoadedModel | None = None, progress: bool = True,
              executor: ExecutorConfig = LOCAL) -> dict:
    """Run the sweep; returns {"ran", "skipped", "scores": {method: {task: mean}}, "store"}.

    Shards (one Ray task each): method x task x length (RULER) x model; `lm` only with the local executor.
    """
    config.validate()
    if lm is not None and executor.name != "local":
        raise ValueError("lm: a loaded model stays in this process; with --executor ray the workers load config.model")
    return run_suite(TaskSuite(lm), config, progress=progress, executor=executor)
