"""The NIAH sweep: methods x lengths x depths x trials on one model, resumable, into the results store.

Each (length, depth, trial) prompt is prefilled once, exactly, and every pending method compresses that same
capture (compression happens after prefill, so the prefill is the same for all of them). Every finished cell
is appended to the store at once; a rerun skips the cells already there.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from harness.checks import check_attention_impl, check_int, check_results_dir
from harness.executors import LOCAL, ExecutorConfig
from harness.kv import niah
from harness.lm.generate import capture, generate
from harness.lm.model import ALIASES, LoadedModel, check_model_name, load_model, max_positions, native_attention
from harness.provenance import device_info, git_sha, now_iso, versions
from harness.store import ResultsStore, cell_key, newest_records
from harness.suite import Suite, run_suite
from harness.worker_cache import cached
from reference.kv import make_method
from reference.kv.base import BUDGET_RULE, KVMethod

SUITE, TASK = "niah", "passkey"
CALIBRATION_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "calibration.txt"


@dataclass(frozen=True)
class NiahConfig:
    model: str = "smollm2"
    methods: tuple[str, ...] = ("full",)
    compression_ratio: float = 0.5
    lengths: tuple[int, ...] = (1024, 2048)
    depths: tuple[float, ...] = (0.0, 0.5, 1.0)
    trials: int = 1
    question_aware: bool = False
    impl: str = "reference"
    seed: int = 0
    haystack: str | None = None
    max_new_tokens: int = 10
    results: str = "results"
    rerun: bool = False
    method_params: dict = field(default_factory=dict)  # {method: {param: value}}

    def validate(self, max_positions: int | None = None) -> None:
        check_model_name(self.model)
        if not self.methods:
            raise ValueError("methods (--methods): give at least one method")
        if not 0.0 <= self.compression_ratio < 1.0:
            raise ValueError(f"compression_ratio (--compression-ratio) must lie in [0, 1), got {self.compression_ratio}")
        if not self.lengths or any(isinstance(n, bool) or not isinstance(n, int) or n < 64 for n in self.lengths):
            raise ValueError(f"lengths (--lengths) must be integers >= 64, got {list(self.lengths)}")
        if max_positions is not None and max(self.lengths) + self.max_new_tokens > max_positions:
            raise ValueError(f"lengths (--lengths): {max(self.lengths)} + {self.max_new_tokens} new tokens exceed the model's {max_positions} positions")
        if not self.depths or any(not (0.0 <= d <= 1.0) or math.isnan(d) for d in self.depths):
            raise ValueError(f"depths (--depths) must lie in [0, 1], got {list(self.depths)}")
        if self.trials < 1:
            raise ValueError(f"trials (--trials) must be >= 1, got {self.trials}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens (--max-new-tokens) must be >= 1, got {self.max_new_tokens}")
        check_int(self.seed, "seed", "--seed")
        check_attention_impl(self.impl)
        check_results_dir(self.results)
        if self.haystack is not None:
            niah.load_haystack(self.haystack)  # its errors name --haystack; read again (small) when the run starts


def json_params(method: KVMethod) -> dict:
    """The method's own scalar parameters (what distinguishes two runs of it), without compression_ratio."""
    out = {}
    for k, v in method.params().items():
        if k != "compression_ratio" and (v is None or isinstance(v, (bool, int, float, str))):
            out[k] = v
    return out


def _haystack_id(path: str | None) -> str:
    if path is None:
        return "default"
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def calibration_ids(lm: LoadedModel, chunk: int = 2048, prompts: int = 4) -> list[torch.Tensor]:
    """Calibration prompts for methods that search model-specific parameters (fixtures/calibration.txt)."""
    ids = lm.tokenizer(CALIBRATION_FILE.read_text(encoding="utf-8"), add_special_tokens=False).input_ids
    return [torch.tensor([ids[i : i + chunk]]) for i in range(0, len(ids) - chunk + 1, chunk)][:prompts]


def plan(config: NiahConfig, methods: dict[str, KVMethod], model_id: str) -> list[dict]:
    """Every cell of the sweep with its key; a cell is one method on one prompt."""
    cells = []
    for length in config.lengths:
        for depth in config.depths:
            for trial in range(config.trials):
                for name, method in methods.items():
                    params = {
                        "compression_ratio": config.compression_ratio,
                        "question_aware": config.question_aware,
                        "length": int(length),
                        "depth": float(depth),
                        "trial": trial,
                        "seed": config.seed,
                        "haystack": _haystack_id(config.haystack),
                        "max_new_tokens": config.max_new_tokens,
                        "method_params": json_params(method),
                    }
                    key = cell_key(SUITE, TASK, name, config.impl, model_id, params)
                    cells.append({"method": name, "params": params, "cell": key})
    return cells


def model_id(name: str) -> str:
    """What records call the model `name` (load_model's model_id) without loading it."""
    return "smollm2" if name.lower() in ALIASES else name


def worker_model(name: str) -> LoadedModel:
    return cached(("model", name), lambda: load_model(name))


def worker_methods(config, lm: LoadedModel, names) -> dict[str, KVMethod]:
    """The named methods, calibrated on `lm` where they need it; memoized per process (calibration is not free)."""
    out = {}
    for name in names:
        kwargs = config.method_params.get(name, {})

        def build(name=name, kwargs=kwargs):
            method = make_method(name, config.compression_ratio, **kwargs)
            if type(method).calibrate is not KVMethod.calibrate:
                with native_attention(lm):
                    method.calibrate(lm.model, cached(("calibration", lm.model_id), lambda: calibration_ids(lm)))
            return method

        out[name] = cached(("method", lm.model_id, name, config.compression_ratio, repr(sorted(kwargs.items()))), build)
    return out


def timing_records(base: dict, gen) -> list[dict]:
    """compress_ms and decode_ms_per_token of one generation (wall clock on the cell's device).

    Both carry the machine's state during the cell (`extra.load`: threads, cores, mean runnable tasks, `reliable`:
    harness/cpu_load.py); decode_ms_per_token also the spread of its steps (`extra.step_ms`: min, p50, p90, max).
    """
    extra = {**base["extra"], "load": gen.load}
    out = [{**base, "metric": "compress_ms", "value": 1e3 * gen.compress_s, "unit": "ms", "extra": extra}]
    if gen.decode_steps:
        steps = sorted(gen.step_ms)
        spread = {"min": steps[0], "p50": steps[len(steps) // 2], "p90": steps[min(len(steps) - 1, (9 * len(steps)) // 10)],
                  "max": steps[-1]}
        out.append({**base, "metric": "decode_ms_per_token", "value": 1e3 * gen.decode_s / gen.decode_steps, "unit": "ms",
                    "extra": {**extra, "decode_steps": gen.decode_steps, "step_ms": spread}})
    return out


def _records(config: NiahConfig, lm: LoadedModel, cell: dict, sample: niah.NiahSample, gen, provenance: dict) -> list[dict]:
    base = {
        "suite": SUITE,
        "task": TASK,
        "method": cell["method"],
        "impl": config.impl,
        "model": lm.model_id,
        "params": cell["params"],
        "cell": cell["cell"],
        "protocol": {
            "tokenizer": lm.model_id,
            "prompt_template": niah.PROMPT_TEMPLATE,
            "truncation": "none",
            "attention_backend": config.impl,
            "dtype": str(lm.model.dtype).replace("torch.", ""),
            "query_aware": config.question_aware,
            "kv_budget": BUDGET_RULE,
        },
        "seed": config.seed,
        **provenance,
        "time": now_iso(),
        "extra": {
            "prediction": gen.text,
            "answer": sample.answer,
            "context_tokens": len(sample.context_ids),
            "needle_start": sample.needle_start,
        },
    }
    values = [
        ("exact_match", niah.score(gen.text, sample.answer), "fraction"),
        ("kv_bytes", float(gen.kv_bytes), "bytes"),
        ("kv_bytes_full", float(gen.kv_bytes_full), "bytes"),
    ]
    return [{**base, "metric": m, "value": v, "unit": u} for m, v, u in values] + timing_records(base, gen)


def measure(config: NiahConfig, cells: list[dict], emit, lm: LoadedModel | None = None) -> None:
    """The executor's worker: run `cells` (any subset of the plan), `emit(records)` per finished cell.

    Each (length, depth, trial) prompt is prefilled once for all the methods among `cells`.
    """
    lm = lm or worker_model(config.model)
    config.validate(lm.max_positions)
    methods = worker_methods(config, lm, dict.fromkeys(c["method"] for c in cells))
    haystack = niah.load_haystack(config.haystack)
    device = next(lm.model.parameters()).device
    provenance = {"device": device_info(str(device)), "versions": versions(), "git_sha": git_sha()}
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        p = c["params"]
        groups.setdefault((p["length"], p["depth"], p["trial"]), []).append(c)
    for (length, depth, trial), group in groups.items():
        sample = niah.build_sample(lm.tokenizer, length, depth, trial, config.seed, haystack)
        context = torch.tensor([sample.context_ids])
        question = torch.tensor([sample.question_ids])
        captured = capture(lm, context, question if config.question_aware else None)
        for c in group:
            gen = generate(lm, captured, methods[c["method"]], question, config.max_new_tokens, impl=config.impl)
            emit(_records(config, lm, c, sample, gen, provenance))
        del captured


class NiahSuite(Suite):
    """The NIAH sweep as a Suite (harness/suite.py); `lm`: a model already loaded in this process (local executor)."""

    help = "needle in a haystack (passkey) on one model, every method x length x depth x trial"

    def __init__(self, lm: LoadedModel | None = None):
        self.lm = lm

    def store_name(self, config) -> str:
        return SUITE

    def validate(self, config: NiahConfig) -> None:
        config.validate()
        if self.lm is not None:
            config.validate(self.lm.max_positions)

    def plan(self, config: NiahConfig) -> list[dict]:
        methods = {n: make_method(n, config.compression_ratio, **config.method_params.get(n, {})) for n in config.methods}
        return plan(config, methods, self.lm.model_id if self.lm is not None else model_id(config.model))

    def check_pending(self, config: NiahConfig, pending: list[dict]) -> None:
        if pending and self.lm is None:  # refuse lengths the model cannot hold before any worker loads it
            config.validate(max_positions(config.model))

    def shard_key(self, config: NiahConfig, cell: dict) -> tuple:
        return (cell["method"], TASK, cell["params"]["length"], config.model)

    def waves(self, config: NiahConfig, pending: list[dict]):
        yield f"niah {config.model}", pending

    def worker(self, config: NiahConfig):
        return measure if self.lm is None else partial(measure, lm=self.lm)

    def summarize(self, config: NiahConfig, store: ResultsStore, cells: list[dict], pending: list[dict]) -> dict:
        return summarize(store, cells, len(cells) - len(pending), len(pending))


def run_niah(config: NiahConfig, lm: LoadedModel | None = None, progress: bool = True,
             executor: ExecutorConfig = LOCAL) -> dict:
    """Run the sweep; returns {"ran", "skipped", "methods": {method: summary}, "store"}.

    Shards (one Ray task each): method x length x model; `lm` (a loaded model) only with the local executor.
    """
    config.validate()
    if lm is not None and executor.name != "local":
        raise ValueError("lm: a loaded model stays in this process; with --executor ray the workers load config.model")
    return run_suite(NiahSuite(lm), config, progress=progress, executor=executor)


def summarize(store: ResultsStore, cells: list[dict], skipped: int, ran: int) -> dict:
    keys = {c["cell"] for c in cells}
    acc: dict[str, list[float]] = {}
    kv: dict[str, list[float]] = {}
    full: dict[str, list[float]] = {}
    for r in newest_records(store.records(SUITE), SUITE):  # a --rerun appends: count each cell once
        if r["cell"] not in keys:
            continue
        target = {"exact_match": acc, "kv_bytes": kv, "kv_bytes_full": full}.get(r["metric"])
        if target is not None:
            target.setdefault(r["method"], []).append(r["value"])
    summary = {
        m: {
            "accuracy": sum(v) / len(v),
            "cells": len(v),
            "kv_bytes": sum(kv.get(m, [0])) / max(1, len(kv.get(m, []))),
            "kv_fraction_of_full": sum(kv.get(m, [0])) / max(1.0, sum(full.get(m, [1]))),
        }
        for m, v in acc.items()
    }
    return {"ran": ran, "skipped": skipped, "methods": summary, "store": str(store.root)}
