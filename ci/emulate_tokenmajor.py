"""Accuracy of the token-major plan at the benchmark's shapes, on a CPU: is a tensor-core basis product good enough?

The plan (optimized/torch_fourier_tiles.py) rounds the operands of its two basis products to bfloat16 for 16-bit
inputs, as a fused kernel's tensor cores would. Conformance checks it at small shapes; this script checks it where
the worry is, N = 512 frequencies (1024 basis terms per score) over a long middle span: LLaMA-3-8B decode shapes
(32 / 8 heads, D = 128, 4 sinks + 1020 local tokens, official kept fractions), one sequence, bfloat16 cache.

For each context it prints |output|max and the max absolute error against the float64 coefficient-space formulation
(equal to the rebuild oracle to ~1e-11 in float64, suites/methods/test_fourier_coefficients.py) of
  coefficients        the bfloat16 inputs through the PyTorch formulation, output rounded to bfloat16 (what any
                      bfloat16 kernel's output carries);
  coefficients f32    the same cache in float32 (no output rounding): the formulation's own arithmetic;
  tiles f32           the token-major plan in float32 with exact operands;
  tiles bf16 operands the plan with its basis products' operands rounded to bfloat16, as tensor cores would.
Usage: python ci/emulate_tokenmajor.py [--contexts 4096,32768] [--seeds 0,1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference.registry import get_impl  # noqa: E402
from reference.ops.fourier_cache import make_fourier_cache  # noqa: E402
from optimized.torch_fourier_tiles import BLOCK_T, RANGE_TILES, decode_tiles  # noqa: E402


def errors(context: int, seed: int) -> dict:
    args = make_fourier_cache(1, 32, 8, 128, context, 512, dtype=torch.bfloat16, device="cpu", seed=seed)
    wide = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in args.items()}
    want = get_impl("fourier_decode_attention", "coefficients")(**wide)
    out = {"output max": want.abs().max().item()}
    got = get_impl("fourier_decode_attention", "coefficients")(**args).double()
    out["coefficients"] = (got - want).abs().max().item()  # rounded to bfloat16 like any kernel's output
    # Before the output's rounding: the bfloat16 cache in float32, with and without bfloat16 operands.
    f32 = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in args.items()}
    ref32 = get_impl("fourier_decode_attention", "coefficients")(**f32).double()
    out["coefficients f32"] = (ref32 - want).abs().max().item()
    for key, rounded in (("tiles f32", False), ("tiles bf16 operands", True)):
        got = tiles_decode(f32, rounded).double()
        out[key] = (got - want).abs().max().item()
    return out


def tiles_decode(a: dict, round_operands: bool) -> torch.Tensor:
    """The plan's arithmetic on float32 inputs, its basis products' operands rounded to bfloat16 or not."""
    names = ("mid_kept", "kept_idx", "comp_idx", "cos", "sin", "scale", "shift")
    return decode_tiles(a["q"], a["k_exact"], a["v_exact"], a["n_init"], tuple(a[f"k_{n}"] for n in names),
                   tuple(a[f"v_{n}"] for n in names), a["mid_len"], a["period"], None, BLOCK_T, RANGE_TILES,
                   round_operands)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="4096,32768")
    parser.add_argument("--seeds", default="0,1")
    a = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cols = ("output max", "coefficients", "coefficients f32", "tiles f32", "tiles bf16 operands")
    print("context  seed  " + "  ".join(f"{c:>18}" for c in cols))
    for context in (int(c) for c in a.contexts.split(",")):
        for seed in (int(s) for s in a.seeds.split(",")):
            e = errors(context, seed)
            print(f"{context:7d}  {seed:4d}  " + "  ".join(f"{e[c]:18.3g}" for c in cols))


if __name__ == "__main__":
    main()
