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

Layer layouts (`layers`, `--dllm-layers`; reference/dllm/model.py): `separate` (five projections per layer, as the
checkpoints store them), `fused` (one qkv and one gate_up GEMM per layer) and `fused-triton` (fused, with the
elementwise pieces as single Triton kernels, optimized/triton_dllm_layer.py; the default). Every method of a run
uses the layout, vanilla included; the layout is part of the model name (`-fused`, `-fused-triton`), so records of
two layouts never share a cell and the board compares each with its own vanilla. Before a layout is timed its elementwise
kernels are checked against the PyTorch pieces on the GPU at the model's shapes (`check_layer_ops`, in the summary
and the block-step records); a layout whose kernels disagree is reported and not measured.

Per-step profile (docs/sparse-dllm.md, "Speed arithmetic"): the run measures the device's copy bandwidth first
(harness/gpu_timing.py) and, for each method with block-only steps (`sparse` or `cached` phase), records
`block_step_ms` (that phase's time per step) and `block_step_roofline`: the time reading the weights once at the
measured bandwidth takes (the bytes a block step must read: every layer, the final norm and LM head, the block's
embedding rows) over the measured step time; `extra` adds the roofline with the kept cache read too, the bytes, a
kernel-time breakdown of one eager step (torch.profiler: GEMM, attention, other) and the time of each block-step GEMM
shape alone. `dense_step_ms` is the dense forwards' time per forward.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from harness import argtypes
from harness.dllm.methods import build, labels, variants
from harness.provenance import device_info, git_sha, versions
from harness.store import ResultsStore, cell_key, make_record
from reference.dllm.config import PRESETS, DLLMConfig
from reference.dllm.generate import GenConfig, generate
from reference.dllm.timing import NullTimer, PhaseTimer
from reference.ops.checks import finite_checks

SUITE = "dllm_throughput"
GRAPHED = ("sparse_dllm", "fast_dllm_prefix", "fast_dllm_dual")  # strategies whose cheap steps can replay CUDA graphs
LAYERS = ("separate", "fused", "fused-triton")
BLOCK_PHASES = ("sparse", "cached")  # phases that run only the block's tokens (a "block step")


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
    layers: tuple[str, ...] = ("fused-triton",)  # layer layouts, each a model name of its own
    profile: bool = True       # kernel breakdown of one block step and the block-step GEMMs alone (CUDA)
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
        bad = [x for x in self.layers if x not in LAYERS]
        if bad or not self.layers:
            raise ValueError(f"--dllm-layers must name some of {list(LAYERS)}, got {list(self.layers)}")


def set_layer(model, layer: str) -> None:
    """Put the model's layers into layout `layer` (LAYERS) in place; the weights stay where they are."""
    if layer == "separate":
        model.unfuse_projections()
    elif layer == "fused":
        model.unfuse_projections().fuse_projections()
    else:
        from optimized.triton_dllm_layer import TRITON_LAYER_OPS

        model.unfuse_projections().fuse_projections(TRITON_LAYER_OPS)
    if model.layout != layer:
        raise RuntimeError(f"the model's layout is {model.layout!r} after setting {layer!r}")


def check_layer_ops(model, rows: int = 48, tolerance: float = 2 ** -5) -> dict:
    """The model's elementwise pieces (its layout's `ops`) against the PyTorch ones, on its device and dtype at its
    shapes: {piece: max |got - want| / max |want|}, and "ok" (every piece within `tolerance`, 4 units in the last
    place of bfloat16). A layout whose kernels fail this is not measured (its timings would time wrong arithmetic)."""
    from reference.dllm.model import TORCH_LAYER_OPS, rope_tables

    layer, cfg = model.layers[0], model.cfg
    ops, ref = layer.ops, TORCH_LAYER_OPS
    w = model.embed.weight
    g = torch.Generator(device=w.device).manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=g, device=w.device, dtype=torch.float32).to(w.dtype)

    def rel(got, want):
        return float((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-30))

    heads = cfg.n_heads + cfg.n_kv_heads
    x, weight = draw(1, rows, cfg.d_model), 1 + 0.1 * draw(cfg.d_model)
    y = draw(1, rows, heads + cfg.n_kv_heads, cfg.head_dim)
    cos, sin = rope_tables(torch.arange(1000, 1000 + rows, device=w.device), cfg.head_dim, cfg.rope_theta)
    gate_up = 3 * draw(1, rows, 2 * cfg.ffn_dim)
    out = {"rms_norm": rel(ops.rms_norm(x, weight, cfg.norm_eps), ref.rms_norm(x, weight, cfg.norm_eps)),
           "rope": rel(ops.rope(y.clone()[:, :, :heads], cos, sin), ref.rope(y[:, :, :heads], cos, sin)),
           "silu_mul": rel(ops.silu_mul(gate_up), ref.silu_mul(gate_up))}
    out["ok"] = all(v <= tolerance for v in out.values())
    return out


def block_step_weight_bytes(model, block_len: int) -> int:
    """Bytes of weights one block step must read: every layer, the final norm, the LM head and the block's embedding
    rows (the parameters of a fused layout are views: each byte counted once)."""
    def size(params):
        return sum(p.numel() * p.element_size() for p in params)

    emb = model.embed.weight
    head = [] if model.lm_head.weight is emb else [model.lm_head.weight]
    return (size(model.layers.parameters()) + size(model.norm.parameters()) + size(head)
            + block_len * emb.shape[1] * emb.element_size())


def kernel_kind(name: str) -> str:
    """A profiled kernel's kind: gemm, attention, copy or other (elementwise, norms, RoPE, reductions...)."""
    low = name.lower()
    if any(k in low for k in ("_split_kernel", "_merge_kernel", "flash", "fmha", "attention", "sdpa", "softmax")):
        return "attention"
    if any(k in low for k in ("gemm", "nvjet", "cutlass", "xmma", "cublas", "matmul", "aten::mm", "aten::addmm",
                              "aten::bmm", "aten::linear", "splitk", "gemv")):
        return "gemm"
    if "memcpy" in low or "memset" in low:
        return "copy"
    return "other"


def profile_block_step(model, cache, x: torch.Tensor, step: int = 2, reps: int = 3) -> dict:
    """Kernel time of one block step run eagerly, by kind (torch.profiler): {"gemm_ms", "attention_ms", "copy_ms",
    "other_ms", "kernels" (launches per step), "top": the five costliest kernels (name, ms per step)}. On the CPU
    the ops' self time stands in for kernels. Never raises: {"error": ...} instead."""
    from torch.profiler import ProfilerActivity, profile

    cuda = x.is_cuda
    graphs = getattr(cache, "graphs", None)
    was = graphs.enabled if graphs is not None else None
    timer, cache.timer = cache.timer, NullTimer()
    try:
        if graphs is not None:
            graphs.enabled = False
        cache.step_logits(model, x, step)  # warm
        if cuda:
            torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                cache.step_logits(model, x, step)
            if cuda:
                torch.cuda.synchronize()
        per_kind: dict[str, float] = defaultdict(float)
        names: dict[str, float] = defaultdict(float)
        launches = 0
        for ev in prof.key_averages():
            if cuda:
                us = getattr(ev, "self_device_time_total", None)
                us = getattr(ev, "self_cuda_time_total", 0) if us is None else us
                if not us or str(getattr(ev, "device_type", "")).endswith("CPU"):
                    continue
            else:
                us = ev.self_cpu_time_total
                if not ev.key.startswith("aten::") or not us:
                    continue
            ms = us / 1e3 / reps
            per_kind[kernel_kind(ev.key)] += ms
            names[ev.key[:80]] += ms
            launches += ev.count
        out = {f"{k}_ms": round(per_kind.get(k, 0.0), 4) for k in ("gemm", "attention", "copy", "other")}
        out["kernels"] = launches // reps
        out["top"] = [[n, round(ms, 4)] for n, ms in sorted(names.items(), key=lambda kv: -kv[1])[:5]]
        return out
    except Exception as exc:  # noqa: BLE001 - the profile is a diagnostic: never lose the cell's measurement to it
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        cache.timer = timer
        if graphs is not None:
            graphs.enabled = was


def gemm_probe(model, block_len: int) -> dict:
    """Each GEMM of a block step alone (layer 0's weights and the LM head, M = block_len rows), L2 flushed:
    {name: [ms, GB/s of weights read]} for the separate and the fused shapes, and the sum over one step of the
    model's layout ("step_gemm_ms"). CUDA only; {"error": ...} on failure."""
    from harness.gpu_timing import bench_ms

    try:
        layer = model.layers[0]
        x = torch.randn(1, block_len, model.cfg.d_model, device=model.embed.weight.device, dtype=model.embed.weight.dtype)
        xf = torch.randn(1, block_len, model.cfg.ffn_dim, device=x.device, dtype=x.dtype)
        shapes = {"q": (x, layer.q_proj.weight), "k": (x, layer.k_proj.weight), "v": (x, layer.v_proj.weight),
                  "o": (x, layer.o_proj.weight), "gate": (x, layer.gate_proj.weight), "up": (x, layer.up_proj.weight),
                  "down": (xf, layer.down_proj.weight), "lm_head": (x, model.lm_head.weight)}
        qkv = torch.cat([layer.q_proj.weight, layer.k_proj.weight, layer.v_proj.weight])
        gate_up = torch.cat([layer.gate_proj.weight, layer.up_proj.weight])
        shapes.update({"qkv": (x, qkv), "gate_up": (x, gate_up)})
        out = {}
        for name, (a, w) in shapes.items():
            ms = bench_ms(lambda a=a, w=w: F.linear(a, w), warmup=10, rep=50)
            out[name] = [round(ms, 4), round(w.numel() * w.element_size() / (ms * 1e-3) / 1e9, 1)]
        del qkv, gate_up
        per_layer = (["qkv", "o", "gate_up", "down"] if model.layout.startswith("fused")
                     else ["q", "k", "v", "o", "gate", "up", "down"])
        out["step_gemm_ms"] = round(len(model.layers) * sum(out[n][0] for n in per_layer) + out["lm_head"][0], 3)
        return out
    except Exception as exc:  # noqa: BLE001 - a diagnostic
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def measure(model, prompt_len: int, label: str, impl: str, params: dict, cfg: DLLMBenchConfig,
            profile: bool = False) -> dict:
    """One generation, timed: tokens/s, peak memory (GiB; CUDA only), phase seconds and counts, blocks timed, the
    cache's bytes; with `profile`, a kernel breakdown of one block step (`step_profile`)."""
    dev = next(model.parameters()).device
    cuda = dev.type == "cuda"
    g = torch.Generator(device="cpu").manual_seed(cfg.seed + prompt_len)
    prompt = torch.randint(0, model.cfg.mask_id, (1, prompt_len), generator=g).to(dev)
    gen = GenConfig(gen_len=cfg.gen_len, block_len=cfg.block_len, steps=cfg.steps)
    blocks = cfg.vanilla_blocks if label == "vanilla" else None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else sum(p.numel() * p.element_size() for p in model.parameters())
    timer = PhaseTimer(dev)
    cache = build(label, impl, {**params, **({"cuda_graphs": True} if cfg.cuda_graphs and label in GRAPHED else {})})
    t0 = time.perf_counter()
    with finite_checks(False):  # the ops' NaN/inf scan (a host sync per call) is not decoding's cost
        x, stats = generate(model, prompt, gen, cache, timer=timer, max_blocks=blocks)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = stats["blocks"] * cfg.block_len
    out = {"tokens_per_s": tokens / seconds, "seconds": seconds, "tokens": tokens, "timed_blocks": stats["blocks"],
           "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None, "weights_gib": base / 2**30,
           "cache_peak_gib": stats["peak_cache_bytes"] / 2**30, "cache_bytes": cache.nbytes(),
           "phases": timer.totals(), "phase_counts": timer.counts(), "builds_per_block": stats["builds_per_block"],
           "cuda_graphs": getattr(getattr(cache, "graphs", None), "captures", 0),
           "graph_error": getattr(getattr(cache, "graphs", None), "error", None)}
    if profile and any(ph in out["phase_counts"] for ph in BLOCK_PHASES):
        with finite_checks(False):
            out["step_profile"] = profile_block_step(model, cache, x)
    return out


def step_metrics(m: dict, weight_bytes: int, copy_gbs: float | None) -> dict:
    """Per-step times of a measurement: {"dense_step_ms"} and, with a block-only phase, {"block_step_ms",
    "block_phase", "block_steps"}, plus the roofline fractions when the copy bandwidth is known."""
    out = {}
    ph, counts = m["phases"], m["phase_counts"]
    if counts.get("dense"):
        out["dense_step_ms"] = 1e3 * ph["dense"] / counts["dense"]
    block = next((p for p in BLOCK_PHASES if counts.get(p)), None)
    if block is None:
        return out
    step_ms = 1e3 * ph[block] / counts[block]
    out.update(block_step_ms=step_ms, block_phase=block, block_steps=counts[block], weight_bytes=weight_bytes,
               cache_bytes=m["cache_bytes"])
    if copy_gbs:
        roof = weight_bytes / (copy_gbs * 1e9) * 1e3
        roof_kv = (weight_bytes + m["cache_bytes"]) / (copy_gbs * 1e9) * 1e3
        out.update(copy_gbs=copy_gbs, roofline_ms=roof, roofline_kv_ms=roof_kv, block_step_roofline=roof / step_ms,
                   block_step_roofline_kv=roof_kv / step_ms)
    return out


def run_dllm_bench(cfg: DLLMBenchConfig, progress: bool = True, device: str = "cuda",
                   model_config: DLLMConfig | None = None) -> dict:
    """Measure every (layer layout, prompt length, method) cell not in the store yet. `device` and `model_config`
    (shapes other than cfg.model's preset, named "custom") exist for tests of this code path on the CPU."""
    from tqdm.auto import tqdm

    from harness.gpu_timing import copy_bandwidth_gbs
    from reference.dllm.checkpoint import random_model

    cfg.validate()
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("the dLLM throughput suite needs a CUDA GPU (torch.cuda.is_available() is False)")
    dtype = getattr(torch, cfg.dtype)
    store = ResultsStore(cfg.results)
    done = set() if cfg.rerun else store.done_cells(SUITE)
    prov = {"device": device_info(device), "versions": versions(), "git_sha": git_sha()}
    copy_gbs = copy_bandwidth_gbs() if cuda else None  # the roofline of this run, measured in it
    model = random_model(model_config or PRESETS[cfg.model], device=device, dtype=dtype, seed=cfg.seed)
    summary = {"ran": 0, "skipped": 0, "rows": [], "store": str(store.path(SUITE)), "copy_gbs": copy_gbs,
               "gemms": {}, "checks": {}}
    for layer in cfg.layers:
        protocol = {"batch": 1, "gen_len": cfg.gen_len, "block_len": cfg.block_len, "steps": cfg.steps,
                    "remasking": "low_confidence", "temperature": 0, "weights": "random", "dtype": cfg.dtype,
                    "attention": "SDPA (dense); sparse_dllm impl as named", "layer": layer}
        model_name = (f"{'custom' if model_config else cfg.model}-random-{cfg.dtype}"
                      + ("" if layer == "separate" else f"-{layer}"))
        cells = [(L, v) for L in cfg.lengths for v in variants(cfg.methods, (cfg.keep_ratio,), cfg.impls)]
        keyed = []
        for L, (label, impl, params) in cells:
            key_params = {"prompt_len": L, **params,
                          **({"cuda_graphs": True} if cfg.cuda_graphs and label in GRAPHED else {})}
            key = cell_key(SUITE, f"prompt{L}", label, impl, model_name, key_params, prov["device"])  # per device kind
            if key in done:
                summary["skipped"] += 1
            else:
                keyed.append((L, label, impl, params, key_params))
        if not keyed:
            continue
        set_layer(model, layer)
        check = check_layer_ops(model)
        summary["checks"][layer] = check
        if not check["ok"]:  # wrong arithmetic: nothing to time
            print(f"error: layout {layer}: its elementwise kernels disagree with PyTorch: {check}; not measured",
                  file=sys.stderr)
            continue
        weight_bytes = block_step_weight_bytes(model, cfg.block_len)
        gemms = gemm_probe(model, cfg.block_len) if cuda and cfg.profile else None
        summary["gemms"][layer] = gemms
        warmed: set = set()
        for L, label, impl, params, key_params in tqdm(keyed, desc=f"dllm throughput ({layer})", unit="cell",
                                                       disable=not progress):
            try:
                if (label, impl) not in warmed:  # compile kernels, allocator warm-up
                    measure(model, min(cfg.lengths), label, impl, params, cfg)
                    warmed.add((label, impl))
                m = measure(model, L, label, impl, params, cfg, profile=cfg.profile)
                status = "ok"
            except torch.cuda.OutOfMemoryError as exc:
                m, status = None, f"out of memory: {str(exc).splitlines()[0]}"
                torch.cuda.empty_cache()
            summary["rows"].append(_record_cell(store, cfg, L, label, impl, model_name, key_params, protocol, prov,
                                                layer, m, status, weight_bytes, copy_gbs,
                                                {"gemms": gemms, "layer_ops_check": check}))
            summary["ran"] += 1
    return summary


def _record_cell(store, cfg, L, label, impl, model_name, key_params, protocol, prov, layer, m, status, weight_bytes,
                 copy_gbs, diag: dict) -> tuple:
    """Append one cell's records to the store; returns its summary row. diag: the layout's GEMM probe and layer-ops
    check, kept in the block-step records' extra."""
    common = dict(protocol=protocol, provenance=prov, seed=cfg.seed)

    def rec(metric, value, unit, extra=None):
        return make_record(SUITE, f"prompt{L}", label, impl, model_name, key_params, metric, value, unit,
                           extra=extra, **common)

    if m is None:
        store.append([rec("status", 0, "", {"status": status})])
        return (L, layer, label, impl, status, "", "", "", "", {})
    extra = {k: m[k] for k in ("seconds", "tokens", "timed_blocks", "weights_gib", "cache_peak_gib",
                                "phase_counts", "builds_per_block", "cuda_graphs", "graph_error")}
    steps = step_metrics(m, weight_bytes, copy_gbs)
    recs = [rec("tokens_per_s", m["tokens_per_s"], "tokens/s", extra)]
    if m["peak_mem_gib"] is not None:
        recs.append(rec("peak_mem_gib", m["peak_mem_gib"], "GiB", extra))
    recs += [rec(f"phase_{ph}_s", sec, "s") for ph, sec in sorted(m["phases"].items())]
    if "dense_step_ms" in steps:
        recs.append(rec("dense_step_ms", steps["dense_step_ms"], "ms", {"forwards": m["phase_counts"]["dense"]}))
    if "block_step_ms" in steps:
        step_extra = {**{k: v for k, v in steps.items() if k not in ("block_step_ms", "dense_step_ms")},
                      "step_profile": m.get("step_profile"), **diag}
        recs.append(rec("block_step_ms", steps["block_step_ms"], "ms", step_extra))
        if "block_step_roofline" in steps:
            recs.append(rec("block_step_roofline", steps["block_step_roofline"], "fraction", step_extra))
    store.append(recs)

    def r(v, nd=2):
        return "" if v is None else round(v, nd)

    roof = steps.get("block_step_roofline")
    return (L, layer, label, impl, r(m["tokens_per_s"]), r(m["peak_mem_gib"]), r(steps.get("dense_step_ms"), 1),
            r(steps.get("block_step_ms")),
            "" if roof is None else f"{100 * roof:.0f}% ({100 * steps['block_step_roofline_kv']:.0f}% w/ KV)",
            {k: round(v, 2) for k, v in m["phases"].items()})


SUMMARY_HEADERS = ["prompt", "layer", "method", "impl", "tokens/s", "peak GiB", "dense ms", "block step ms",
                   "weight-read roofline", "phases (s)"]


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
    d.add_argument("--dllm-layers", type=argtypes.name_list(), default=None,
                   help="layer layouts: separate, fused, fused-triton (default fused-triton)")


def cmd_bench_dllm(args) -> int:
    """`python -m harness bench --suite dllm` (its options: `add_arguments`)."""
    import sys

    from tabulate import tabulate

    fields = {"results": args.results, "rerun": args.rerun, "keep_ratio": args.keep_ratio,
              "vanilla_blocks": args.vanilla_blocks, "seed": args.seed, "cuda_graphs": not args.no_cuda_graphs}
    for name, value in (("lengths", args.lengths), ("methods", args.methods), ("impls", args.dllm_impls),
                        ("layers", getattr(args, "dllm_layers", None))):
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
    print(format_summary(summary, tabulate))
    return 0


def format_summary(summary: dict, tabulate) -> str:
    """The run's table (one row per cell), the copy bandwidth and the block-step GEMMs alone, as text."""
    lines = [tabulate(summary["rows"], headers=SUMMARY_HEADERS)]
    if summary.get("copy_gbs"):
        lines.append(f"copy bandwidth (roofline of this run): {summary['copy_gbs']:.0f} GB/s; 'weight-read roofline' "
                     "= time to read the block step's weights once at it / the measured block step")
    for layer, check in (summary.get("checks") or {}).items():
        lines.append(f"layer ops vs PyTorch ({layer}): " + ", ".join(
            f"{k} {v:.2g}" if k != "ok" else f"ok {v}" for k, v in check.items()))
    for layer, gemms in (summary.get("gemms") or {}).items():
        if gemms:
            lines.append(f"block-step GEMMs alone ({layer}; ms, GB/s): "
                         + ", ".join(f"{k} {v[0]} ({v[1]})" if isinstance(v, list) else f"{k} {v}"
                                     for k, v in gemms.items()))
    lines.append(f"ran {summary['ran']} cells, skipped {summary['skipped']}; records in {summary['store']}")
    return "\n".join(lines)
