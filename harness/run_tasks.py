"""RULER and LongBench sweeps: every KV method on every sample, through the same flow as NIAH, into the store.

A sample is a context and a question as token ids, gold answers and a scorer. The context is prefilled exactly
once per sample and every method compresses that same capture; the question follows (question-agnostic, as in
kvpress; `--question-aware` prefills it with the context and keeps it exact), then greedy decoding. Records per
(method, sample): "score" (the task's official metric, 0..1), "kv_bytes" and "kv_bytes_full". Resumable: cells
already in the store are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from harness.generate import capture, generate
from harness.model import LoadedModel, load_model, native_attention
from harness.provenance import device_info, git_sha, now_iso, versions
from harness.run_niah import _calibration_ids, _json_params
from harness.store import ResultsStore, cell_key
from reference.kv.base import KVMethod, make_method


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
            raise ValueError("methods: give at least one method")
        if not 0.0 <= self.compression_ratio < 1.0:
            raise ValueError(f"compression_ratio must lie in [0, 1), got {self.compression_ratio}")
        if self.suite == "ruler" and (not self.lengths or any(int(n) < 256 for n in self.lengths)):
            raise ValueError(f"lengths must be integers >= 256, got {list(self.lengths)}")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


def ruler_samples(config: TaskConfig, lm: LoadedModel) -> list[TaskSample]:
    from harness import ruler

    tasks = config.tasks or ruler.TASKS
    bad = [t for t in tasks if t not in ruler.TASKS]
    if bad:
        raise ValueError(f"tasks: unknown RULER tasks {bad}; known: {list(ruler.TASKS)}")
    out = []
    for task in tasks:
        for length in config.lengths:
            if length + ruler.DEFAULT_MAX_NEW_TOKENS[task] > lm.max_positions:
                raise ValueError(f"lengths: {length} + {ruler.DEFAULT_MAX_NEW_TOKENS[task]} new tokens exceed the "
                                 f"model's {lm.max_positions} positions")
            for trial in range(config.trials):
                s = ruler.make_sample(task, int(length), lm.tokenizer, config.seed, trial)
                out.append(TaskSample(task, {"length": int(length), "trial": trial}, list(s.context_ids),
                                      list(s.question_ids), list(s.answers), ruler.DEFAULT_MAX_NEW_TOKENS[task],
                                      lambda pred, t=task, a=tuple(s.answers): ruler.score(t, pred, list(a))))
    return out


def longbench_samples(config: TaskConfig, lm: LoadedModel) -> list[TaskSample]:
    from harness import longbench

    tasks = config.tasks or tuple(longbench.TASKS)
    if not config.tasks and config.data_dir is not None:  # a local directory: the tasks it has files for
        from pathlib import Path

        suffix = "_e.jsonl" if config.longbench_e else ".jsonl"
        tasks = tuple(t for t in longbench.TASKS if (Path(config.data_dir) / f"{t}{suffix}").is_file())
        if not tasks:
            raise ValueError(f"--data-dir {config.data_dir}: no <task>{suffix} file of any LongBench task")
    bad = [t for t in tasks if t not in longbench.TASKS]
    if bad:
        raise ValueError(f"tasks: unknown LongBench tasks {bad}; known: {list(longbench.TASKS)}")
    out = []
    for task in tasks:
        spec = longbench.TASKS[task]
        limit = (config.max_length or lm.max_positions) - spec.max_new_tokens
        for row in longbench.load_rows(task, config.data_dir, e=config.longbench_e, limit=config.limit):
            context_text, question_text = longbench.build_prompt(task, row)
            ctx = lm.tokenizer(context_text, add_special_tokens=False).input_ids
            q = lm.tokenizer(question_text, add_special_tokens=False).input_ids
            if len(ctx) + len(q) > limit:  # official middle truncation; the question stays whole at the end
                ctx = longbench.truncate_middle(ctx, max(1, limit - len(q)))
            answers, classes = list(row["answers"]), list(row.get("all_classes") or [])
            out.append(TaskSample(
                task, {"row": str(row["_id"]), "e": config.longbench_e}, ctx, q, answers, spec.max_new_tokens,
                lambda pred, t=task, a=tuple(answers), c=tuple(classes): longbench.score(t, pred, list(a), list(c)),
                {"group": spec.group, "bucket": longbench.length_bucket(row["length"]), "length_field": row["length"]}))
    return out


def run_tasks(config: TaskConfig, lm: LoadedModel | None = None, progress: bool = True) -> dict:
    """Run the sweep; returns {"ran", "skipped", "scores": {method: {task: mean}}, "store"}."""
    config.validate()
    methods = {n: make_method(n, config.compression_ratio, **config.method_params.get(n, {})) for n in config.methods}
    lm = lm or load_model(config.model)
    samples = (ruler_samples if config.suite == "ruler" else longbench_samples)(config, lm)
    store = ResultsStore(config.results)
    done = set() if config.rerun else store.done_cells(config.suite)
    plan = []
    for s in samples:
        for name, method in methods.items():
            params = {"compression_ratio": config.compression_ratio, "question_aware": config.question_aware,
                      "seed": config.seed, "max_new_tokens": s.max_new_tokens, "method_params": _json_params(method),
                      **s.key, **({"max_length": config.max_length} if config.suite == "longbench" else {})}
            key = cell_key(config.suite, s.task, name, config.impl, lm.model_id, params)
            plan.append((s, name, params, key))
    pending = [p for p in plan if p[3] not in done]
    if len(plan) > len(pending):
        print(f"{config.suite}: {len(plan) - len(pending)} of {len(plan)} cells already in {config.results} (skipped)")
    if pending:
        with native_attention(lm):
            calibration = None
            for name in {p[1] for p in pending}:
                if type(methods[name]).calibrate is not KVMethod.calibrate:
                    calibration = calibration or _calibration_ids(lm)
                    methods[name].calibrate(lm.model, calibration)
    provenance = {"device": device_info(str(next(lm.model.parameters()).device)), "versions": versions(),
                  "git_sha": git_sha()}
    protocol = {"tokenizer": lm.model_id, "prompt_template": f"{config.suite}-v1", "attention_backend": config.impl,
                "truncation": "middle" if config.suite == "longbench" else "none",
                "dtype": str(lm.model.dtype).replace("torch.", ""), "query_aware": config.question_aware}
    bar = tqdm(total=len(pending), desc=f"{config.suite} {lm.model_id}", unit="cell", disable=not progress)
    by_sample: dict[int, list] = {}
    for p in pending:
        by_sample.setdefault(id(p[0]), []).append(p)
    for group in by_sample.values():
        s = group[0][0]
        question = torch.tensor([s.question_ids])
        captured = capture(lm, torch.tensor([s.context_ids]), question if config.question_aware else None)
        for _, name, params, key in group:
            gen = generate(lm, captured, methods[name], question, s.max_new_tokens, impl=config.impl)
            value = float(s.score(gen.text))
            base = {"suite": config.suite, "task": s.task, "method": name, "impl": config.impl, "model": lm.model_id,
                    "params": params, "cell": key, "protocol": protocol, "seed": config.seed, **provenance,
                    "time": now_iso(), "extra": {"prediction": gen.text, "answers": s.answers,
                                                 "context_tokens": len(s.context_ids), **s.extra}}
            store.append([{**base, "metric": m, "value": v, "unit": u} for m, v, u in (
                ("score", value, "fraction"), ("kv_bytes", float(gen.kv_bytes), "bytes"),
                ("kv_bytes_full", float(gen.kv_bytes_full), "bytes"))])
            bar.set_postfix_str(f"{name} {s.task}: {value:.2f}")
            bar.update(1)
        del captured
    bar.close()
    keys = {p[3] for p in plan}
    scores: dict = {}
    for r in store.records(config.suite):
        if r["cell"] in keys and r["metric"] == "score":
            scores.setdefault(r["method"], {}).setdefault(r["task"], []).append(r["value"])
    return {"ran": len(pending), "skipped": len(plan) - len(pending), "store": str(store.path(config.suite)),
            "scores": {m: {t: sum(v) / len(v) for t, v in ts.items()} for m, ts in scores.items()}}
