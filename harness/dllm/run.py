"""`python -m harness run --suite dllm`: accuracy of each dLLM decoding method on held-out synthetic tasks.

The model is the small masked-diffusion LM we trained (fixtures/dllm/, `python -m harness train-dllm`); the tasks
are harness/dllm/tasks.py's passkey, key-value retrieval and span copying at several context lengths. Each cell
(task, length, method, parameters) decodes the same held-out prompts; its records hold exact-match accuracy with
a 95% bootstrap interval, the share of generated tokens identical to vanilla decoding's, the peak bytes the
method's cache held and the model forwards a batch of prompts took. Per-example correctness and tokens are kept in
`extra`, so paired comparisons need no rerun. A rerun skips cells already in the store.

Decoding options other than the defaults (`gen_params`, `--gen NAME=VALUE`: temperature, threshold, cfg_scale, ...)
and a method's own parameters (`method_params`, `--param LABEL.NAME=VALUE`) are part of each cell's key params, and
the decoding options of its protocol too, so records under other settings never pool with the defaults'.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.checks import check_device, check_finite, check_int, check_results_dir
from harness.dllm import tasks
from harness.dllm.methods import build, labels, variants
from harness.executors import LOCAL, ExecutorConfig
from harness.provenance import device_info, git_sha, versions
from harness.stats import bootstrap_ci
from harness.store import ResultsStore, cell_key, make_record
from harness.suite import Suite, run_suite
from harness.worker_cache import cached
from reference.dllm.generate import GenConfig, generate

SUITE = "dllm"
DEFAULT_CHECKPOINT = "fixtures/dllm/tiny_dllm.pt"
# GenConfig fields --gen may set: the fixture's length settings come from its recipe (block_len has its own option),
# and it is a LLaDA-style model, so the Dream loop's options do not apply.
GEN_OPTIONS = ("temperature", "remasking", "threshold", "seed", "cfg_scale", "tempered_confidence", "logits_eos_inf",
               "confidence_eos_eot_inf", "eot_id")


@dataclass(frozen=True)
class DLLMAccuracyConfig:
    checkpoint: str = DEFAULT_CHECKPOINT
    methods: tuple[str, ...] = field(default_factory=labels)
    keep_ratios: tuple[float, ...] = (0.5,)
    impls: tuple[str, ...] = ("torch",)
    tasks: tuple[str, ...] = tasks.TASKS
    lengths: tuple[int, ...] = (1024, 2048)
    n: int = 16
    batch_size: int = 16
    block_len: int | None = None  # default: the checkpoint's recipe (gen_len / 2)
    device: str = "cpu"
    results: str = "results"
    rerun: bool = False
    extra_params: dict = field(default_factory=dict)
    gen_params: dict = field(default_factory=dict)  # decoding options (GenConfig fields among GEN_OPTIONS)
    method_params: dict = field(default_factory=dict)  # {method label: {cache parameter: value}}

    def validate(self) -> None:
        if not Path(self.checkpoint).exists():
            raise FileNotFoundError(f"checkpoint (--checkpoint) {self.checkpoint!r} not found (train one with "
                                    f"`python -m harness train-dllm`)")
        if not Path(self.checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint (--checkpoint) {self.checkpoint!r} is a directory, not a file")
        check_device(self.device)
        check_results_dir(self.results)
        check_finite(self.keep_ratios, "keep_ratios", "--keep-ratios")
        if not self.lengths:
            raise ValueError("lengths (--lengths): give at least one prompt length")
        for length in self.lengths:
            check_int(length, "lengths", "--lengths", 1)
            for t in self.tasks if length < 512 else ():  # every task fits in 512 tokens and more
                try:  # the shortest prompt a task fits in depends on the task: make one
                    tasks.make_example(t, length, random.Random(0))
                except (ValueError, AssertionError):
                    raise ValueError(f"lengths (--lengths): {length} tokens is too short for task {t!r}") from None
        if self.block_len is not None:
            check_int(self.block_len, "block_len", None, 1)
        from reference.dllm.attention_impl import block_attention, saliency

        for impl in self.impls:
            try:
                block_attention(impl), saliency(impl)
            except (KeyError, ImportError, ValueError) as exc:
                raise ValueError(f"impls (--impl): unknown dLLM attention implementation {impl!r} (torch, triton or "
                                 f"package.module:function): {str(exc).strip(chr(34) + chr(39))}") from None
        for t in self.tasks:
            if t not in tasks.TASKS:
                raise ValueError(f"--tasks: unknown task {t!r}; known: {list(tasks.TASKS)}")
        if self.n < 1 or self.batch_size < 1:
            raise ValueError(f"n (--n) and batch_size must be >= 1, got {self.n}, {self.batch_size}")
        for r in self.keep_ratios:
            if not 0 <= r <= 1:
                raise ValueError(f"--keep-ratios: {r} is not in [0, 1]")
        if not self.methods or not self.tasks:
            raise ValueError(f"methods and tasks (--methods, --tasks) must not be empty, got {self.methods}, {self.tasks}")
        bad = [m for m in self.methods if m not in labels()]
        if bad:
            raise ValueError(f"methods (--methods): unknown dLLM methods {bad}; known: {sorted(labels())}")
        variants(self.methods, self.keep_ratios, self.impls)
        self._validate_options()

    def _validate_options(self) -> None:
        bad = sorted(set(self.gen_params) - set(GEN_OPTIONS))
        if bad:
            raise ValueError(f"--gen: unknown or fixed decoding options {bad}; settable: {list(GEN_OPTIONS)}")
        try:
            GenConfig(gen_len=16, block_len=8, steps=16, **self.gen_params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--gen: {exc}") from None
        for label, params in self.method_params.items():
            if label not in self.methods:
                raise ValueError(f"--param {label}: not among the dLLM methods (--methods) {list(self.methods)}")
            for _, impl, base in variants((label,), self.keep_ratios[:1], ("torch",)):
                try:
                    build(label, impl, {**base, **params})
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"--param {label}: {exc}") from None


def _file_sha(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]


def decode(model, exs, gen: GenConfig, label: str, impl: str, params: dict, batch_size: int, device) -> dict:
    """Tokens generated for each example, their correctness, and the cache's peak bytes (max over batches)."""
    out_tokens, peak, forwards = [], 0, []
    for i in range(0, len(exs), batch_size):
        chunk = exs[i:i + batch_size]
        prompt = torch.tensor([e.prompt for e in chunk], dtype=torch.long, device=device)
        cache = build(label, impl, params)
        x, stats = generate(model, prompt, gen, cache)
        out_tokens += x[:, prompt.shape[1]:].tolist()
        peak = max(peak, stats["peak_cache_bytes"])
        forwards.append(stats["steps"])
    correct = [bool(tasks.is_correct(e, t)) for e, t in zip(exs, out_tokens)]
    return {"tokens": out_tokens, "correct": correct, "peak_cache_bytes": peak, "forwards": forwards}


def worker_model(config: DLLMAccuracyConfig, model_name: str):
    """The checkpoint and its generation settings, loaded once per process (`model_name` carries the file's hash)."""
    from reference.dllm import checkpoint

    def build():
        model, meta = checkpoint.load(config.checkpoint, device=config.device, dtype=torch.float32)
        gen_len = int((meta.get("recipe") or {}).get("gen_len", 16))
        block_len = config.block_len or gen_len // 2
        return model, GenConfig(gen_len=gen_len, block_len=block_len, steps=gen_len, **config.gen_params)

    options = json.dumps(config.gen_params, sort_keys=True)
    return cached(("dllm", config.checkpoint, model_name, config.device, config.block_len, options), build)


def _protocol(config: DLLMAccuracyConfig, gen: GenConfig) -> dict:
    protocol = {"loop": "llada", "remasking": gen.remasking, "temperature": gen.temperature, "gen_len": gen.gen_len,
                "block_len": gen.block_len, "steps": gen.steps, "checkpoint": config.checkpoint,
                "metric": "exact match"}
    if config.gen_params:
        protocol["decoding"] = dict(sorted(config.gen_params.items()))
    return protocol


def measure(config: DLLMAccuracyConfig, cells: list[dict], emit) -> None:
    """The executor's worker: decode each cell's held-out prompts; a non-vanilla cell carries vanilla's tokens."""
    model, gen = worker_model(config, cells[0]["model"])
    prov = {"device": device_info(config.device), "versions": versions(), "git_sha": git_sha()}
    protocol = _protocol(config, gen)
    for c in cells:
        task, label, impl, params, key_params = c["task"], c["method"], c["impl"], c["run_params"], c["params"]
        exs = tasks.held_out(task, key_params["length"], config.n)
        res = decode(model, exs, gen, label, impl, params, config.batch_size, config.device)
        ref = res["tokens"] if label == "vanilla" else c.get("vanilla_tokens")
        acc = 100.0 * sum(res["correct"]) / len(exs)
        lo, hi = bootstrap_ci([100.0 * x for x in res["correct"]])
        extra = {"correct": res["correct"], "tokens": res["tokens"], "ci95": [lo, hi]}
        recs = [make_record(SUITE, task, label, impl, c["model"], key_params, "accuracy", acc, "%",
                            protocol=protocol, extra=extra, provenance=prov),
                make_record(SUITE, task, label, impl, c["model"], key_params, "cache_bytes_peak",
                            float(res["peak_cache_bytes"]), "bytes", protocol=protocol, provenance=prov),
                make_record(SUITE, task, label, impl, c["model"], key_params, "forwards",
                            sum(res["forwards"]) / len(res["forwards"]), "forwards", protocol=protocol,
                            extra={"per_batch": res["forwards"], "batch_size": config.batch_size}, provenance=prov)]
        if ref is not None:
            same = sum(a == b for ra, rb in zip(res["tokens"], ref) for a, b in zip(ra, rb))
            total = sum(len(r) for r in ref)
            rows = sum(ra == rb for ra, rb in zip(res["tokens"], ref))
            recs.append(make_record(SUITE, task, label, impl, c["model"], key_params, "tokens_equal_vanilla",
                                    100.0 * same / total, "%", protocol=protocol,
                                    extra={"rows_equal": rows, "rows": len(ref)}, provenance=prov))
        emit(recs)


def plan(config: DLLMAccuracyConfig, model_name: str) -> list[dict]:
    """Every cell (task x length x method variant); vanilla first in each (task, length)."""
    cells = []
    for task in config.tasks:
        for length in config.lengths:
            for label, impl, params in variants(("vanilla",) + tuple(m for m in config.methods if m != "vanilla"),
                                                config.keep_ratios, config.impls):
                params = {**params, **config.method_params.get(label, {})}
                key_params = {"length": length, "n": config.n, **params, **config.extra_params}
                if config.gen_params:  # decoding other than the default: part of what was measured
                    key_params["gen"] = dict(sorted(config.gen_params.items()))
                if config.block_len:  # not the checkpoint's default: part of what was measured
                    key_params["block_len"] = config.block_len
                cells.append({"task": task, "method": label, "impl": impl, "run_params": params, "params": key_params,
                              "model": model_name, "cell": cell_key(SUITE, task, label, impl, model_name, key_params)})
    return cells


def _vanilla_tokens(records: list[dict], model_name: str, block_len: int | None,
                    gen_params: dict | None = None) -> dict[tuple, list]:
    """(task, length, n) -> vanilla's generated tokens, from stored accuracy records decoded the same way."""
    out = {}
    gen = dict(sorted(gen_params.items())) if gen_params else None
    for r in records:
        if (r["method"] == "vanilla" and r["metric"] == "accuracy" and r["model"] == model_name
                and r["params"].get("block_len") == block_len and r["params"].get("gen") == gen
                and r["extra"].get("tokens") is not None):
            out[(r["task"], r["params"]["length"], r["params"]["n"])] = r["extra"]["tokens"]
    return out


class DLLMSuite(Suite):
    """The dLLM accuracy suite as a Suite (harness/suite.py). Two waves: vanilla first, then the other methods with
    vanilla's tokens (their agreement metric); a vanilla cell runs again when its stored tokens are missing."""

    def store_name(self, config) -> str:
        return SUITE

    def prepare(self, config: DLLMAccuracyConfig, store: ResultsStore) -> None:
        self.device = config.device
        self.model_name = f"tiny-dllm@{_file_sha(config.checkpoint)}"
        stored = store.records(SUITE)  # read once: vanilla's tokens
        self.vanilla = _vanilla_tokens(stored, self.model_name, config.block_len, config.gen_params)
        self.accuracy: dict[str, list[float]] = {}
        self.ran = 0

    def plan(self, config: DLLMAccuracyConfig) -> list[dict]:
        return plan(config, self.model_name)

    def vkey(self, config: DLLMAccuracyConfig, cell: dict) -> tuple:
        return cell["task"], cell["params"]["length"], config.n

    def select(self, config: DLLMAccuracyConfig, cells: list[dict], done: set[str]) -> list[dict]:
        self.done = done
        return [c for c in cells if c["cell"] not in done
                or (c["method"] == "vanilla" and self.vkey(config, c) not in self.vanilla)]

    def shard_key(self, config: DLLMAccuracyConfig, cell: dict) -> tuple:
        return (cell["method"], cell["task"], cell["params"]["length"], self.model_name)

    def waves(self, config: DLLMAccuracyConfig, pending: list[dict]):
        yield "dllm accuracy (vanilla)", [c for c in pending if c["method"] == "vanilla"]
        # built once vanilla has run: each other cell carries vanilla's tokens for its (task, length)
        yield "dllm accuracy", [{**c, "vanilla_tokens": self.vanilla.get(self.vkey(config, c))} for c in pending
                                if c["method"] != "vanilla"]

    def worker(self, config: DLLMAccuracyConfig):
        return measure

    def on_records(self, records: list[dict]) -> None:
        acc = next(r for r in records if r["metric"] == "accuracy")
        if acc["method"] == "vanilla":
            self.vanilla[(acc["task"], acc["params"]["length"], acc["params"]["n"])] = acc["extra"]["tokens"]
        p = acc["params"]
        label = f"{acc['method']}{'@' + str(p['keep_ratio']) if 'keep_ratio' in p else ''}/{acc['impl']}"
        self.accuracy.setdefault(label, []).append(acc["value"])
        self.ran += 1

    def summarize(self, config: DLLMAccuracyConfig, store: ResultsStore, cells: list[dict], pending: list[dict]) -> dict:
        return {"ran": self.ran, "skipped": len(cells) - self.ran, "accuracy": self.accuracy,
                "store": str(store.path(SUITE))}


def run_dllm(config: DLLMAccuracyConfig, progress: bool = True, executor: ExecutorConfig = LOCAL) -> dict:
    """Two waves of shards (method x task x length, one Ray task each): vanilla, then the others with its tokens."""
    return run_suite(DLLMSuite(), config, progress=progress, executor=executor)
