"""`python -m harness bench --suite dllm`: throughput, peak memory and time per phase of dLLM decoding (GPU).

LLaDA-8B shapes with random bfloat16 weights (speed does not depend on the weights; reference/dllm/checkpoint.py
`random_model`), batch 1 as in the official Sparse-dLLM speed script, random prompt tokens of 1k-32k, gen_len 256,
block 32, steps 256, low-confidence remasking at temperature 0 (docs/sparse-dllm.md). For each method
and prompt length: tokens/s = generated tokens / wall time of their generation (CUDA-synchronised, after one
warm-up generation per method), peak memory = torch.cuda.max_memory_allocated over the generation, and seconds
per phase (dense forwards, saliency scoring, sparse block steps, cached steps, ...; reference/dllm/timing.py).

Vanilla decoding runs the same full forward at every step, so its per-token cost is the same in every block: it is
timed over `vanilla_blocks` blocks (default 1 of 8) and the record says so (`timed_blocks`); every cache method
runs all blocks (their cost differs between blocks). Cells that run out of memory are recorded as such. A cell's
key names the kind of GPU (`harness.store.KEYED_BY_DEVICE`): a rerun skips only cells this kind of GPU measured.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import torch

from harness import argtypes
from harness.dllm.methods import build, labels, variants
from harness.provenance import device_info, git_sha, versions
from harness.store import ResultsStore, cell_key, make_record
from reference.dllm.config import PRESETS
from reference.dllm.generate import GenConfig, generate
from reference.dllm.timing import PhaseTimer
from reference.ops.checks import finite_checks

SUITE = "dllm_throughput"
GRAPHED = ("sparse_dllm", "fast_dllm_prefix", "fast_dllm_dual")  # strategies whose cheap steps can replay CUDA graphs


@dataclass(frozen=True)
class DLLMBenchConfig:
    model: str = "llada-8b"
    lengths: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)
    methods: tuple[str, ...] = field(default_factory=labels)  # registry order
    impls: tuple[str, ...] = ("torch", "triton")   # for sparse_dllm
    keep_ratio: float = 0.5
    gen_len: int = 256
    block_len: int = 32
    steps: int = 256
    vanilla_blocks: int = 1
    cuda_graphs: bool = True   # replay the cached/sparse steps as CUDA graphs (reference/dllm/graphs.py)
    dtype: str = "bfloat16"
    seed: int = 0
    results: str = "results"
    rerun: bool = False

    def validate(self) -> None:
        if self.model not in PRESETS:
            raise ValueError(f"--model must be one of {sorted(PRESETS)}, got {self.model!r}")
        GenConfig(gen_len=self.gen_len, block_len=self.block_len, steps=self.steps)
        try:
            variants(self.methods, (self.keep_ratio,), self.impls)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"--methods / --dllm-impls / --keep-ratio: {exc}") from None
        if min(self.lengths) < 1:
            raise ValueError(f"--lengths must be positive, got {self.lengths}")


def measure(model, prompt_len: int, label: str, impl: str, params: dict, cfg: DLLMBenchConfig) -> dict:
    """One generation, timed: tokens/s, peak memory (GiB), phase seconds, blocks timed."""
    dev = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(cfg.seed + prompt_len)
    prompt = torch.randint(0, model.cfg.mask_id, (1, prompt_len), generator=g).to(dev)
    gen = GenConfig(gen_len=cfg.gen_len, block_len=cfg.block_len, steps=cfg.steps)
    blocks = cfg.vanilla_blocks if label == "vanilla" else None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    timer = PhaseTimer(dev)
    cache = build(label, impl, {**params, **({"cuda_graphs": True} if cfg.cuda_graphs and label in GRAPHED else {})})
    t0 = time.perf_counter()
    with finite_checks(False):  # the ops' NaN/inf scan (a host sync per call) is not decoding's cost
        _, stats = generate(model, prompt, gen, cache, timer=timer, max_blocks=blocks)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = stats["blocks"] * cfg.block_len
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "tokens": tokens, "timed_blocks": stats["blocks"],
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "weights_gib": base / 2**30,
            "cache_peak_gib": stats["peak_cache_bytes"] / 2**30, "phases": timer.totals(),
            "phase_counts": timer.counts(), "builds_per_block": stats["builds_per_block"],
            "cuda_graphs": getattr(getattr(cache, "graphs", None), "captures", 0),
            "graph_error": getattr(getattr(cache, "graphs", None), "error", None)}


def run_dllm_bench(cfg: DLLMBenchConfig, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from reference.dllm.checkpoint import random_model

    cfg.validate()
    if not torch.cuda.is_available():
        raise RuntimeError("the dLLM throughput suite needs a CUDA GPU (torch.cuda.is_available() is False)")
    dtype = getattr(torch, cfg.dtype)
    model = random_model(PRESETS[cfg.model], device="cuda", dtype=dtype, seed=cfg.seed)
    store = ResultsStore(cfg.results)
    done = set() if cfg.rerun else store.done_cells(SUITE)
    prov = {"device": device_info("cuda"), "versions": versions(), "git_sha": git_sha()}
    protocol = {"batch": 1, "gen_len": cfg.gen_len, "block_len": cfg.block_len, "steps": cfg.steps,
                "remasking": "low_confidence", "temperature": 0, "weights": "random", "dtype": cfg.dtype,
                "attention": "SDPA (dense); sparse_dllm impl as named"}
    model_name = f"{cfg.model}-random-{cfg.dtype}"
    cells = [(L, v) for L in cfg.lengths for v in variants(cfg.methods, (cfg.keep_ratio,), cfg.impls)]
    warmed: set = set()
    summary = {"ran": 0, "skipped": 0, "rows": [], "store": str(store.path(SUITE))}
    for L, (label, impl, params) in tqdm(cells, desc="dllm throughput", unit="cell", disable=not progress):
        key_params = {"prompt_len": L, **params, **({"cuda_graphs": True} if cfg.cuda_graphs and label in GRAPHED
                                                      else {})}
        key = cell_key(SUITE, f"prompt{L}", label, impl, model_name, key_params, prov["device"])  # per device kind
        if key in done:
            summary["skipped"] += 1
            continue
        try:
            if (label, impl) not in warmed:  # compile kernels, allocator warm-up
                measure(model, min(cfg.lengths), label, impl, params, cfg)
                warmed.add((label, impl))
            m = measure(model, L, label, impl, params, cfg)
            status = "ok"
        except torch.cuda.OutOfMemoryError as exc:
            m, status = None, f"out of memory: {str(exc).splitlines()[0]}"
            torch.cuda.empty_cache()
        common = dict(protocol=protocol, provenance=prov, seed=cfg.seed)
        if m is None:
            recs = [make_record(SUITE, f"prompt{L}", label, impl, model_name, key_params, "status", 0, "",
                                extra={"status": status}, **common)]
        else:
            extra = {k: m[k] for k in ("seconds", "tokens", "timed_blocks", "weights_gib", "cache_peak_gib",
                                        "phase_counts", "builds_per_block", "cuda_graphs", "graph_error")}
            recs = [make_record(SUITE, f"prompt{L}", label, impl, model_name, key_params, "tokens_per_s",
                                m["tokens_per_s"], "tokens/s", extra=extra, **common),
                    make_record(SUITE, f"prompt{L}", label, impl, model_name, key_params, "peak_mem_gib",
                                m["peak_mem_gib"], "GiB", extra=extra, **common)]
            recs += [make_record(SUITE, f"prompt{L}", label, impl, model_name, key_params, f"phase_{ph}_s", sec,
                                 "s", **common) for ph, sec in sorted(m["phases"].items())]
            summary["rows"].append((L, label, impl, round(m["tokens_per_s"], 2), round(m["peak_mem_gib"], 2),
                                    {k: round(v, 2) for k, v in m["phases"].items()}))
        store.append(recs)
        summary["ran"] += 1
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `python -m harness bench --suite dllm`, a group of the `bench` command (harness/cli.py registers
    it, with the kernels benchmark's options before these)."""

    def dllm_impls(text: str) -> tuple[str, ...]:
        from reference.dllm.attention_impl import block_attention, saliency

        names = argtypes.name_list()(text)
        for name in names:
            try:
                block_attention(name), saliency(name)
            except (KeyError, ImportError, ValueError) as exc:
                raise argparse.ArgumentTypeError(f"unknown implementation {name!r} (torch, triton or "
                                                 f"package.module:function): {str(exc).strip(chr(39) + chr(34))}") from None
        return names

    d = p.add_argument_group("--suite dllm (LLaDA-8B shapes, random weights: tokens/s, peak memory, time per phase)")
    d.add_argument("--lengths", type=argtypes.int_list(), default=None, help="prompt lengths (default 1k-16k)")
    d.add_argument("--methods", type=argtypes.name_list(), default=None, help="dLLM methods (default: all)")
    d.add_argument("--dllm-impls", type=dllm_impls, default=None,
                   help="sparse_dllm attention/saliency implementations (default torch,triton)")
    d.add_argument("--keep-ratio", type=argtypes.number(0.0, 1.0), default=0.5, help="sparse_dllm keep ratio, in [0, 1]")
    d.add_argument("--vanilla-blocks", type=argtypes.integer(minimum=1), default=1, help="blocks timed for vanilla (each costs the same)")
    d.add_argument("--no-cuda-graphs", action="store_true", help="run the cached/sparse steps eagerly")


def cmd_bench_dllm(args) -> int:
    """`python -m harness bench --suite dllm` (its options: `add_arguments`)."""
    import sys

    from tabulate import tabulate

    fields = {"results": args.results, "rerun": args.rerun, "keep_ratio": args.keep_ratio,
              "vanilla_blocks": args.vanilla_blocks, "seed": args.seed, "cuda_graphs": not args.no_cuda_graphs}
    for name, value in (("lengths", args.lengths), ("methods", args.methods), ("impls", args.dllm_impls)):
        if value:
            fields[name] = tuple(value)
    try:
        cfg = DLLMBenchConfig(**fields)
        cfg.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: `python -m harness bench --suite dllm` needs a CUDA GPU; torch.cuda.is_available() is False",
              file=sys.stderr)
        return 2
    summary = run_dllm_bench(cfg, progress=not args.no_progress)
    print(tabulate(summary["rows"], headers=["prompt", "method", "impl", "tokens/s", "peak GiB", "phases (s)"]))
    print(f"ran {summary['ran']} cells, skipped {summary['skipped']}; records in {summary['store']}")
    return 0
