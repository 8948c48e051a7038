"""Where the token-major kernel's fused pass spends its time on a GPU: the pass timed whole, then with its
compressed-score product cut to one 32-frequency chunk, with its probability-spectrum product cut to one chunk, and
with both cut (what is left is the kept-channel stream, the exact tokens and the launch). Timing only: a cut plan's
output is wrong by construction and never checked. LLaMA-3-8B decode shapes, bf16, the kernel's (tuned) knobs.

    PYTHONPATH=. python ci/ablate_fourier_tiles.py [--cases 1x32768,8x32768] [--kept-align 8] [--out ablation.json]
"""
from __future__ import annotations

import argparse
import json

import torch

from harness.gpu_timing import RotatingInputs, copies_needed, graph_ms, tensor_bytes
from optimized.triton_fourier_tiles import tiles_plan
from reference.ops.fourier_cache import make_fourier_cache

CUTS = {"whole": {}, "one score chunk": {"nz": 1}, "one spectrum chunk": {"nvp": 32, "nv": 32},
        "both cut": {"nz": 1, "nvp": 32, "nv": 32}}


def fused_us(sets: list[dict], cut: dict) -> float:
    """Microseconds of the fused pass alone (phases 1..2 minus phase 1) with the plan's attributes set to `cut`."""
    plans = {}

    def run(upto: int):
        def call(x: dict):
            plan = plans.get((id(x), upto))
            if plan is None:
                plan = plans[(id(x), upto)] = tiles_plan(**x)
                for name, value in cut.items():  # nvp is at least one chunk (32): min() cuts it to one
                    setattr(plan, name, min(getattr(plan, name), value))
            return plan.run(upto)
        return call

    return 1000 * (graph_ms(run(2), sets) - graph_ms(run(1), sets))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1x32768,8x32768")
    ap.add_argument("--out", default=None)
    ap.add_argument("--kept-align", type=int, default=8, help="the cache's kept runs aligned to this (the bench's "
                    "--kept-align; 1: random kept sets)")
    args = ap.parse_args()
    rows = []
    for case in args.cases.split(","):
        batch, context = map(int, case.split("x"))
        cache = make_fourier_cache(batch, 32, 8, 128, context, 512, dtype=torch.bfloat16, device="cuda", kept_pad=64,
                                   kept_align=args.kept_align)
        rot = RotatingInputs(cache, copies=copies_needed(tensor_bytes(cache)))
        plan = tiles_plan(**cache)
        knobs = {"block_t": plan.block_t, "range_t": plan.range_t, "num_warps": plan.num_warps,
                 "programs": plan.b * plan.hkv * plan.splits}
        for name, cut in CUTS.items():
            us = fused_us(rot.sets, cut)
            rows.append({"batch": batch, "context": context, "kept_align": args.kept_align, "cut": name, "fused_us": us, **knobs})
            print(f"{batch}x{context} {knobs}: fused pass, {name}: {us:.1f} us", flush=True)
        del cache, rot
        torch.cuda.empty_cache()
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"device": torch.cuda.get_device_name(0), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
