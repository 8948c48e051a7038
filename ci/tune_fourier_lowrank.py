"""The low-rank FlashFourierAttention kernel's knobs on a GPU: tile, query rows per program, warps, basis block.

LLaMA-3-8B decode shapes, bf16, the paper's period (the middle's length), kept rows padded to 64 and heads' runs
aligned to 8 as the benchmark's `--kept-align 8`. Each setting is timed as the benchmark times it (CUDA graph,
inputs rotated past the L2); then the small phases' launch shapes (SHAPES) with the best knobs, and the phases of
the best of those. Timing only: the benchmark and conformance check the output.

    PYTHONPATH=. python ci/tune_fourier_lowrank.py [--cases 1x32768,...] [--quick | --shapes-only] [--out FILE]
"""
from __future__ import annotations

import argparse
import itertools
import json

import torch
import triton

from harness.gpu_timing import RotatingInputs, copies_needed, graph_ms, tensor_bytes
from optimized.fourier_plans import phase_times as plan_phase_times
from optimized.fourier_plans import planned
from optimized.triton_fourier_lowrank import PHASES, lowrank_plan
from reference.ops.fourier_cache import make_fourier_cache

# the plan's GPU defaults first (64-token tiles, 4 warps): --quick and --shapes-only time only SETTINGS[0]
SETTINGS = [dict(block_t=bt, block_r=16, num_warps=w) for bt, w in itertools.product((64, 32), (4, 8))]
# Plan attributes swept with the best knobs. The launch shapes of the small phases were settled by the 69de2c3 sweep
# (v_chunk by `v_chunk_for`, 16 output channels per program) and the GEMMs' precisions by the ea245b7 sweep (TF32:
# results/gpu/tune_lowrank-2026-12-06-H100-ea245b7.json), the query spectrum's GEMM path by the 062f9c6 sweep; the
# V products as TF32 GEMMs (v_gemm) by the b947a8b sweep (on from batch 2), the query spectrum's GEMMs as one kernel
# (qs_fused) by the d96252b sweep, v_gemm's sums as one kernel (v_fused) and the exact splits by the 233e34f sweep,
# 64-token tiles and v_gemm from batch 1 by the 958cefc sweep (results/gpu/tune_lowrank-2026-12-06-H100-958cefc*).
SHAPES = [{}, {"qs_gemm": False}, {"qs_gemm": True}, {"qs_gemm": True, "qs_gemm_prec": "ieee"}, {"qs_prec": "ieee"},
          {"qs_warps": 8}, {"out_prec": "ieee"}, {"out_warps": 8}, {"v_gemm": True},
          {"v_gemm": True, "gemm_precs": ("tf32", "ieee")}, {"qs_fused": False}, {"v_fused": False},
          {"vs_block_c": 16}, {"vs_warps": 8}, {"esplits": 8}, {"esplits": 16}, {"esplits": 32}, {"merge_blocks": 4}]
# --shapes-only: the default beside the next candidates (the c80a529 and 863f673 sweeps settled one prologue launch for
# the query products, the exact tokens and the query rows at 4 warps, and frequency-major planes; results/gpu/
# tune_lowrank-2026-12-06-H100-{c80a529,863f673}.json; the H200 sweep at bbd8f01 and the H100 sweep at b80c7e0
# found A transposed, the planes frequency-major or not, the V sums' steps and the exact splits within 2 us of the
# default, and the exact tokens on a side stream 8-13 us slower; results/gpu/tune_lowrank-2026-12-06-*.json): the
# default first and last, for the run's spread; the H100 sweep at 5c1c820 turned vo_fused on and dropped the merge in
# a Triton planes GEMM (results/gpu/tune_lowrank-2026-12-07-H100-5c1c820.json); the H100 sweep at 8ab8225 found the
# merge in the stream's tail (merge_tail, since removed) 20-46 us slower at every cell and the full sweep within the
# spread (results/gpu/tune_lowrank-2026-12-07-H100-8ab8225-*.json). Then vo_fused off again, A transposed and the
# planes frequency-major, the three launch-layout choices left, for the next machine's spread. The H100 sweeps at
# 7322d78, 912a9a8 and 4cfc4b7 turned on the real GEMMs in bfloat16, the GEMM path from batch 1, the block rule and the
# query products' frequencies by the batch; a sweep at 83daf94 found the small phases' launch shapes within 1.5 us
# (results/gpu/tune_lowrank-2026-12-07-H100-*.json). The previous choices stay in, for the next machine's spread; then
# the launches with programmatic dependent launch (pdl; a wash on the H100 at ff78acf, so off), and the coefficient
# folds against the batch rule (on at batch 1 only since f80995a), and FoldK in bfloat16 (both folds in bfloat16 failed
# a float16 tolerance at fee7955; FoldK alone has not been tried). Then the fold path's launch shapes at batch 1, where
# its four launches are all Triton: programmatic dependent launch (measured at ff78acf only with GEMMs between the
# launches), the columns of A per fold program, H's columns and warps per merge program, the prologue's and output's
# warps and the exact splits. `combined` then times the best value of each name that beat the default together. The
# H100 sweep at 356924d (results/gpu/tune_lowrank-2026-12-07-H100-356924d-fold-shapes.json) turned FoldK to bfloat16
# (2.6-3.3 us at each batch-1 cell) and found the launch shapes within the spread or slower, PDL 2 us faster at 1 x 4k
# but 6 and 17 us slower at 1 x 32k and 1 x 128k; the sweep at e04cb57 found PDL with the trigger at each program's exit
# (`pdl_trigger`, now PDL's default trigger) 0.7-2 us faster at the three batch-1 cells, and FoldV in bfloat16 2-3.5 us
# (results/gpu/tune_lowrank-2026-12-07-H100-e04cb57-pdl-folds.json). PDL is on since cec0a73, so the sweep times it off
# and with the other trigger.
QUICK_SHAPES = [{}, {"pdl": False}, {"pdl_trigger": "start"}, {"folds": False},
                {"fold_precs": ("bf16", "tf32")}, {"fold_block_n": 32}, {"fold_block_n": 64},
                {"fold_block_n": 256}, {"fold_merge_cols": 64}, {"fold_merge_cols": 256},
                {"merge_warps": 2}, {"merge_warps": 8}, {"qp_warps": 2}, {"qp_warps": 8}, {"out_warps": 8},
                {"out_block_do": 32}, {"esplits": 8}, {"esplits": 16}, {}]
COMBINE_MIN_US = 0.5  # a shape joins `combined` when it beat the run's default by more than this
CONSTRUCTOR = ("num_splits", "block")  # shapes passed to lowrank_plan rather than set on the plan


def shaped_plan(shapes: dict):
    """lowrank_plan with the launch-shape attributes `shapes` set (`num_splits` goes to the constructor). A name the
    plan lacks is an error (setting it would time the default under another name)."""
    def make(**kw):
        plan = lowrank_plan(**kw, **{k: v for k, v in shapes.items() if k in CONSTRUCTOR})
        for name, value in shapes.items():
            if name not in CONSTRUCTOR:
                if not hasattr(plan, name):
                    raise AttributeError(f"shapes: the low-rank plan has no attribute {name!r}")
                setattr(plan, name, value)
        return plan
    return make


def parse_shapes(text: str) -> list[dict]:
    """--shapes: a JSON list of objects (plan attribute -> value; lists become tuples, as `fold_precs` takes)."""
    try:
        shapes = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--shapes is not JSON: {exc}") from exc
    if not isinstance(shapes, list) or not all(isinstance(s, dict) for s in shapes):
        raise argparse.ArgumentTypeError(f"--shapes must be a JSON list of objects, got {text!r}")
    return [{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()} for s in shapes]


def combined(shape_rows: list[dict], listed: list[dict] = QUICK_SHAPES) -> dict:
    """The best value of each single-name shape that beat the run's default (the slower of the `{}` rows, first and
    last) by more than COMBINE_MIN_US, all at once; {} when fewer than two names did."""
    names = {k for s in listed for k in s}
    timed = [r for r in shape_rows if "us" in r]
    defaults = [r["us"] for r in timed if not names & r.keys()]
    if not defaults:
        return {}
    best: dict[str, tuple[float, object]] = {}
    for r in timed:
        keys = names & r.keys()
        if len(keys) == 1 and r["us"] < max(defaults) - COMBINE_MIN_US:
            (k,) = keys
            if k not in best or r["us"] < best[k][0]:
                best[k] = (r["us"], r[k])
    return {k: v for k, (_, v) in best.items()} if len(best) > 1 else {}


def timed_row(label: str, row: dict, make_plan, knobs: dict, sets: list[dict]) -> dict:
    """`row` with the graph-timed call of `make_plan(**inputs, **knobs)` over the input sets under "us" (printed
    after `label`), or with the error it raised under "error": a setting that does not build is recorded, not
    fatal."""
    try:
        us = 1000 * graph_ms(planned(make_plan, **knobs), sets)
    except Exception as exc:  # noqa: BLE001
        return {**row, "error": f"{type(exc).__name__}: {exc}"[:300]}
    print(f"{label}: {us:.1f} us", flush=True)
    return {**row, "us": us}


def target_case(case: str) -> tuple[int, int, dict, RotatingInputs]:
    """"BxT" -> (batch, context, the LLaMA-3-8B cache of this script's docstring, its rotated input sets)."""
    batch, context = map(int, case.split("x"))
    cache = make_fourier_cache(batch, 32, 8, 128, context, 512, dtype=torch.bfloat16, device="cuda", kept_pad=64,
                               kept_align=8)
    return batch, context, cache, RotatingInputs(cache, copies=copies_needed(tensor_bytes(cache)))


def save(result: dict, out: str | None) -> None:
    """Write `result` to `out` (after every case, so a cut run keeps the cases it finished) and free the GPU cache."""
    if out:
        with open(out, "w") as fh:
            json.dump(result, fh, indent=1)
    torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1x32768,8x32768,1x131072,1x4096")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="only the default knobs and the block neighbours, then shapes")
    ap.add_argument("--shapes-only", action="store_true", help="only the default knobs, then shapes")
    ap.add_argument("--shapes", type=parse_shapes, default=None,
                    help="with --shapes-only: a JSON list of shapes instead of QUICK_SHAPES, "
                         "e.g. '[{}, {\"fold_precs\": [\"bf16\", \"bf16\"]}, {}]'")
    args = ap.parse_args()
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
              "rows": []}
    for case in args.cases.split(","):
        batch, context, cache, rot = target_case(case)
        default = lowrank_plan(**cache)
        rows = []
        settings = SETTINGS[:1] if args.quick or args.shapes_only else SETTINGS
        neighbours = [] if args.shapes_only else [dict(SETTINGS[0], block=2 * default.block),
                                                  dict(SETTINGS[0], block=default.block // 2)]
        for knobs in settings + neighbours:
            if knobs.get("block", 64) < knobs["block_t"]:
                continue
            rows.append(timed_row(f"{case} {knobs}", {"batch": batch, "context": context, **knobs}, lowrank_plan,
                                  knobs, rot.sets))
        best = min((r for r in rows if "us" in r), key=lambda r: r["us"])
        knobs = {k: best[k] for k in ("block_t", "block_r", "num_warps", "block") if k in best}
        shape_rows = []
        for shapes in (args.shapes or QUICK_SHAPES) if args.shapes_only else SHAPES:
            shape_rows.append(timed_row(f"{case} {knobs} {shapes}", {"batch": batch, "context": context, **knobs,
                                                                     **shapes}, shaped_plan(shapes), knobs, rot.sets))
            save(dict(result, rows=result["rows"] + rows + shape_rows), args.out)  # a cut run keeps what finished
        combo = combined(shape_rows, args.shapes or QUICK_SHAPES) if args.shapes_only else {}
        if combo:
            shape_rows.append(timed_row(f"{case} {knobs} combined {combo}", {"batch": batch, "context": context,
                                        **knobs, **combo, "combined": True}, shaped_plan(combo), knobs, rot.sets))
            save(dict(result, rows=result["rows"] + rows + shape_rows), args.out)
        names = {k for s in SHAPES + QUICK_SHAPES + (args.shapes or []) for k in s}
        shapes = {k: v for k, v in min((r for r in shape_rows if "us" in r), key=lambda r: r["us"]).items()
                  if k in names}
        phases = {k: 1000 * v for k, v in plan_phase_times(shaped_plan(shapes), PHASES, graph_ms, rot.sets,
                                                            **knobs).items()}
        rows += shape_rows
        best.update(best_shapes=shapes)
        plan = lowrank_plan(**cache, **knobs)
        best.update(phases_us=phases, block=plan.block, rank_pad=(plan.pk, plan.pv), splits=plan.splits,
                    default_block=default.block)
        print(f"{case} best {knobs}: {best['us']:.1f} us, phases {', '.join(f'{k} {v:.1f}' for k, v in phases.items())}, "
              f"block {plan.block}, padded ranks {plan.pk}/{plan.pv}, splits {plan.splits}", flush=True)
        result["rows"] += rows
        del cache, rot
        save(result, args.out)


if __name__ == "__main__":
    main()
