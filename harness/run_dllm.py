"""`python -m harness run --suite dllm`: accuracy of each dLLM decoding method on held-out synthetic tasks.

The model is the small masked-diffusion LM we trained (fixtures/dllm/, `python -m harness train-dllm`); the tasks
are harness/dllm_tasks.py's passkey, key-value retrieval and span copying at several context lengths. Each cell
(task, length, method, parameters) decodes the same held-out prompts; its records hold exact-match accuracy with
a 95% bootstrap interval, the share of generated tokens identical to vanilla decoding's, and the peak bytes the
method's cache held. Per-example correctness and tokens are kept in `extra`, so paired comparisons need no rerun.
A rerun skips cells already in the store.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness import dllm_tasks as tasks
from harness.dllm_methods import METHODS, build, variants
from harness.provenance import device_info, git_sha, versions
from harness.stats import bootstrap_ci
from harness.store import ResultsStore, cell_key, make_record
from reference.dllm.generate import GenConfig, generate

SUITE = "dllm"
DEFAULT_CHECKPOINT = "fixtures/dllm/tiny_dllm.pt"


@dataclass(frozen=True)
class DLLMAccuracyConfig:
    checkpoint: str = DEFAULT_CHECKPOINT
    methods: tuple[str, ...] = tuple(METHODS)
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

    def validate(self) -> None:
        if not Path(self.checkpoint).exists():
            raise FileNotFoundError(f"checkpoint {self.checkpoint!r} not found (train one with "
                                    f"`python -m harness train-dllm`)")
        for t in self.tasks:
            if t not in tasks.TASKS:
                raise ValueError(f"--tasks: unknown task {t!r}; known: {list(tasks.TASKS)}")
        if self.n < 1 or self.batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got {self.n}, {self.batch_size}")
        for r in self.keep_ratios:
            if not 0 <= r <= 1:
                raise ValueError(f"--keep-ratios: {r} is not in [0, 1]")
        variants(self.methods, self.keep_ratios, self.impls)


def _file_sha(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]


def decode(model, exs, gen: GenConfig, label: str, impl: str, params: dict, batch_size: int, device) -> dict:
    """Tokens generated for each example, their correctness, and the cache's peak bytes (max over batches)."""
    out_tokens, peak = [], 0
    for i in range(0, len(exs), batch_size):
        chunk = exs[i:i + batch_size]
        prompt = torch.tensor([e.prompt for e in chunk], dtype=torch.long, device=device)
        cache = build(label, impl, params)
        x, stats = generate(model, prompt, gen, cache)
        out_tokens += x[:, prompt.shape[1]:].tolist()
        peak = max(peak, stats["peak_cache_bytes"])
    correct = [bool(tasks.is_correct(e, t)) for e, t in zip(exs, out_tokens)]
    return {"tokens": out_tokens, "correct": correct, "peak_cache_bytes": peak}


def run_dllm(config: DLLMAccuracyConfig, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from reference.dllm import checkpoint

    config.validate()
    model, meta = checkpoint.load(config.checkpoint, device=config.device, dtype=torch.float32)
    recipe = meta.get("recipe") or {}
    gen_len = int(recipe.get("gen_len", 16))
    block_len = config.block_len or gen_len // 2
    gen = GenConfig(gen_len=gen_len, block_len=block_len, steps=gen_len)
    model_name = f"tiny-dllm@{_file_sha(config.checkpoint)}"
    store = ResultsStore(config.results)
    stored = store.records(SUITE)  # read once: the cells already measured and vanilla's tokens
    done = set() if config.rerun else {r["cell"] for r in stored}
    prov = {"device": device_info(config.device), "versions": versions(), "git_sha": git_sha()}
    protocol = {"loop": "llada", "remasking": "low_confidence", "temperature": 0, "gen_len": gen_len,
                "block_len": block_len, "steps": gen_len, "checkpoint": config.checkpoint, "metric": "exact match"}
    cells = [(t, L, v) for t in config.tasks for L in config.lengths
             for v in variants(("vanilla",) + tuple(m for m in config.methods if m != "vanilla"),
                               config.keep_ratios, config.impls)]
    summary = {"ran": 0, "skipped": 0, "accuracy": {}, "store": str(store.path(SUITE))}
    vanilla_tokens: dict[tuple, list] = {}
    for r in stored:  # vanilla tokens of earlier runs, for the agreement metric of resumed cells
        if (r["method"] == "vanilla" and r["metric"] == "accuracy" and r["model"] == model_name
                and r["params"].get("block_len") == (block_len if config.block_len else None)):
            vanilla_tokens[(r["task"], r["params"]["length"], r["params"]["n"])] = r["extra"].get("tokens")
    bar = tqdm(cells, desc="dllm accuracy", unit="cell", disable=not progress)
    for task, length, (label, impl, params) in bar:
        cell_params = {"length": length, "n": config.n, **params, **config.extra_params}
        if config.block_len:  # not the checkpoint's default: part of what was measured
            cell_params["block_len"] = block_len
        key_params = dict(cell_params)
        key = cell_key(SUITE, task, label, impl, model_name, key_params)
        vkey = (task, length, config.n)
        if key in done and (label != "vanilla" or vkey in vanilla_tokens):
            summary["skipped"] += 1
            continue
        bar.set_postfix_str(f"{task}@{length} {label} {params.get('keep_ratio', '')}")
        exs = tasks.held_out(task, length, config.n)
        res = decode(model, exs, gen, label, impl, params, config.batch_size, config.device)
        if label == "vanilla":
            vanilla_tokens[vkey] = res["tokens"]
        ref = vanilla_tokens.get(vkey)
        acc = 100.0 * sum(res["correct"]) / len(exs)
        lo, hi = bootstrap_ci([100.0 * c for c in res["correct"]])
        extra = {"correct": res["correct"], "tokens": res["tokens"], "ci95": [lo, hi]}
        recs = [make_record(SUITE, task, label, impl, model_name, key_params, "accuracy", acc, "%",
                            protocol=protocol, extra=extra, provenance=prov),
                make_record(SUITE, task, label, impl, model_name, key_params, "cache_bytes_peak",
                            float(res["peak_cache_bytes"]), "bytes", protocol=protocol, provenance=prov)]
        if ref is not None:
            same = sum(a == b for ra, rb in zip(res["tokens"], ref) for a, b in zip(ra, rb))
            total = sum(len(r) for r in ref)
            rows = sum(ra == rb for ra, rb in zip(res["tokens"], ref))
            recs.append(make_record(SUITE, task, label, impl, model_name, key_params, "tokens_equal_vanilla",
                                    100.0 * same / total, "%", protocol=protocol,
                                    extra={"rows_equal": rows, "rows": len(ref)}, provenance=prov))
        store.append(recs)
        summary["ran"] += 1
        summary["accuracy"].setdefault(f"{label}{'' if 'keep_ratio' not in params else '@' + str(params['keep_ratio'])}"
                                       f"/{impl}", []).append(acc)
    return summary
