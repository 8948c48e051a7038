"""Instruction-issue cost of the token-major kernel's fused pass, from an offline sm_90 build (no GPU).

The H100 sweep of the fused pass fits one model: its time is its executed warp instructions over the SMs' issue
rate (docs/fourier-attention.md, "Bound by instruction issue"). This script builds the pass exactly as the JIT would
for a LLaMA-3-8B decode call (optimized/sm90_build.build_like_jit: arguments captured from a CPU plan made with the
GPU's choices), counts each loop's static SASS instructions (optimized/sass_loops.py), multiplies by the loop's trip
count and the warps, and reports warp instructions per middle (token, KV head) for each loop and in all.

    python ci/issue_cost_tiles.py [--cases 1x32768] [--knobs 128,16,8] [--align 8]
    python ci/issue_cost_tiles.py --calibrate results/gpu/tune_tiles-2026-12-06-H100.json

--calibrate rebuilds every setting of a GPU sweep and prints the issue rate each timing implies (warp instructions
per SM and cycle; an SM issues at most 4), which is how the model was checked against the H100.
Run without TRITON_INTERPRET (the kernels are compiled, never launched).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimized import triton_fourier_spectral as spectral  # noqa: E402
from optimized import triton_fourier_tiles as tiles  # noqa: E402
from optimized.sass_loops import disassemble, loop_counts  # noqa: E402
from optimized.sm90_build import build_like_jit, resources  # noqa: E402
from reference.ops.fourier_cache import make_fourier_cache  # noqa: E402

SMS, CLOCK_MHZ = 132, 1980  # H100 SXM and H200: multiprocessors, boost clock (MHz)
TILES, SPECTRAL = Path(tiles.__file__).name, Path(spectral.__file__).name


class _Capture:
    """Stands in for a Triton kernel: `kernel[grid](*args, **constexprs)` records the call instead of launching."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kw: self.calls.append((grid, args, kw))


def fused_call(batch: int, context: int, block_t: int, range_t: int, num_warps: int, align: int,
               num_stages: int = 3):
    """(plan, captured fused-pass launch) of a bf16 LLaMA-3-8B decode step with these knobs, as on a GPU."""
    cache = make_fourier_cache(batch, 32, 8, 128, context, 512, dtype=torch.bfloat16, device="cpu", kept_pad=64,
                               kept_align=align)
    k = ("k_mid_kept", "k_kept_idx", "k_comp_idx", "k_cos", "k_sin", "k_scale", "k_shift")
    v = tuple("v" + name[1:] for name in k)
    fused, saved = _Capture(), (tiles.KERNELS["fused"], tiles.query_spectrum_kernel, spectral.check_triton_runnable)
    # a CPU plan with a GPU's choices: its launches are recorded, never run
    tiles.KERNELS["fused"], tiles.query_spectrum_kernel, spectral.check_triton_runnable = fused, _Capture(), lambda *a: None
    try:
        plan = tiles.TilesPlan(cache["q"], cache["k_exact"], cache["v_exact"], tuple(cache[n] for n in k),
                               tuple(cache[n] for n in v), cache["mid_len"], [cache["period"]], None, None, range_t,
                               block_t, 4, num_warps, compiled=True, num_stages=num_stages)
        plan.run(2)
    finally:
        tiles.KERNELS["fused"], tiles.query_spectrum_kernel, spectral.check_triton_runnable = saved
    (grid, args, kw), = fused.calls
    return plan, args, kw


def trip_counts(plan) -> dict[tuple[str, int], tuple[str, int]]:
    """{(file name, line) of a `for` in the fused pass: (program kind, iterations per program of that kind)}."""
    lines, first = inspect.getsourcelines(tiles.KERNELS["fused"].fn)
    spectral_lines, spectral_first = inspect.getsourcelines(tiles.exact_split.fn)
    trips = {}
    for i, text in enumerate(lines):
        code = text.strip()
        if code.startswith("for n0 in range(0, nz, BLOCK_N)"):
            trips[(TILES, first + i)] = ("range", -(-plan.nz // plan.block_n))
        elif code.startswith("for k in range(0, RANGE_T)"):
            trips[(TILES, first + i)] = ("range", plan.range_t)
        elif code.startswith("for n0 in range(0, NVP, BLOCK_N)"):
            trips[(TILES, first + i)] = ("range", plan.nvp // plan.block_n)
    for i, text in enumerate(spectral_lines):
        if text.strip().startswith("for tile in range("):
            per = -(-(-(-plan.le // plan.block_t)) // plan.exact_splits)
            trips[(SPECTRAL, spectral_first + i)] = ("exact", per)
    return trips


def cost(batch: int, context: int, block_t: int, range_t: int, num_warps: int, align: int,
         num_stages: int = 3) -> dict:
    """Warp instructions of the fused pass per loop, in all, and per middle (token, KV head)."""
    plan, args, kw = fused_call(batch, context, block_t, range_t, num_warps, align, num_stages)
    launch = {k: kw.pop(k) for k in ("num_warps", "num_stages") if k in kw}
    kernel = build_like_jit(tiles.KERNELS["fused"], args, kw, **launch)
    trips = trip_counts(plan)
    programs = {"range": plan.b * plan.hkv * plan.n_ranges, "exact": plan.b * plan.hkv * plan.exact_splits}
    token_heads = plan.b * plan.hkv * plan.mid_len
    rows, total = [], 0.0
    for loop in loop_counts(disassemble(kernel), {TILES: tiles.__file__, SPECTRAL: spectral.__file__}):
        kind, n = trips.get((loop.file, loop.line), ("?", 0))
        warp_instr = num_warps * loop.instructions * n * programs.get(kind, 0)
        total += warp_instr
        rows.append({"file": loop.file, "line": loop.line, "kind": kind, "static": loop.instructions, "trips": n,
                     "per_token_head": warp_instr / token_heads,
                     "top_opcodes": dict(loop.opcodes.most_common(6))})
    return {"batch": batch, "context": context, "block_t": block_t, "range_t": range_t, "num_warps": num_warps,
            "num_stages": num_stages, "align": align, "registers_and_memory": resources(kernel),
            "shared_bytes": kernel.metadata.shared, "loops": rows, "warp_instructions": total, "per_token_head": total / token_heads}


def us_at(warp_instructions: float, ipc: float) -> float:
    return warp_instructions / (SMS * ipc * CLOCK_MHZ)


def main() -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("this script compiles kernels: run it without TRITON_INTERPRET=1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="1x32768")
    ap.add_argument("--knobs", default="128,16,8", help="block_t,range_t,num_warps[,num_stages]")
    ap.add_argument("--align", type=int, default=8)
    ap.add_argument("--calibrate", default=None, help="a sweep JSON of ci/tune_fourier_tiles.py")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = []
    if args.calibrate:
        rows = json.loads(Path(args.calibrate).read_text())["rows"]
        others = {(r["batch"], r["context"]): sum(v for k, v in r["phases_us"].items() if k != "fused")
                  for r in rows if "best" in r}
        for r in (r for r in rows if "best" not in r):
            c = cost(r["batch"], r["context"], r["block_t"], r["range_t"], r["num_warps"], args.align,
                     r.get("num_stages", 3))
            c["fused_us"] = r["us"] - others[(r["batch"], r["context"])]
            c["implied_ipc"] = c["warp_instructions"] / (c["fused_us"] * SMS * CLOCK_MHZ)
            results.append(c)
            print(f"{r['batch']}x{r['context']} tile {r['block_t']} range {r['range_t']} {r['num_warps']} warps: "
                  f"{c['per_token_head']:.0f} warp instr / token-head, fused {c['fused_us']:.0f} us, issue rate "
                  f"{c['implied_ipc']:.2f}", flush=True)
    else:
        knobs = [int(x) for x in args.knobs.split(",")]
        for case in args.cases.split(","):
            batch, context = (int(x) for x in case.split("x"))
            c = cost(batch, context, *knobs[:3], args.align, *knobs[3:])
            results.append(c)
            for row in c["loops"]:
                print(f"  {row['file']}:{row['line']} ({row['kind']}): {row['static']:5d} static x {row['trips']:3d} "
                      f"trips = {row['per_token_head']:6.1f} / token-head  {row['top_opcodes']}")
            print(f"{case} {args.knobs} ({c['registers_and_memory']}, {c['shared_bytes']} B shared): "
                  f"{c['per_token_head']:.0f} warp instructions per middle (token, KV head); at an issue "
                  f"rate of 2 to 3 per SM-cycle the pass takes {us_at(c['warp_instructions'], 3):.0f}-"
                  f"{us_at(c['warp_instructions'], 2):.0f} us", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
