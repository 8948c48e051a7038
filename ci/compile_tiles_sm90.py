"""Compile the token-major FlashFourierAttention kernels for an H100 (sm_90) on a machine without a GPU.

Triton's wheel carries ptxas, so `triton.compile` with an explicit target builds the cubin offline: this catches what
the CPU interpreter cannot (tensor-core shape rules, layout conversions of the (row, tile) reshapes, bfloat16
operands) and reports each kernel's registers, spill stack and shared memory before a GPU visit. LLaMA-3-8B decode
shapes (G = 4, D = 128), the plan's GPU defaults (64-token tiles, 16-tile ranges, 32-frequency chunks, kept runs of
64, aligned to 8), bfloat16 and float32 inputs.
Usage: python ci/compile_tiles_sm90.py [--warps 4,8] [--block-t 64] [--range-t 16] [--dtypes bf16,fp32]
(comma lists: every combination is built, as ci/tune_fourier_tiles.py sweeps them on a GPU)
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimized import triton_fourier_tiles as tiles  # noqa: E402
from optimized.sm90_build import build_sm90, resources  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warps", default="4,8")
    parser.add_argument("--block-t", default="64")
    parser.add_argument("--range-t", default="16")
    parser.add_argument("--dtypes", default="bf16,fp32")
    args = parser.parse_args()
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    kinds = {"bf16": (tl.bfloat16, tl.bfloat16, None, None), "fp32": (tl.float32, tl.float32, "ieee", "tf32x3")}
    merge = dict(G=4, LQ=1, D=128, VARLEN=False, BLOCK_M=16, BLOCK_R=4, BLOCK_D=128, BLOCK_N=32, NVP=512, BLOCK_S=32,
                 BLOCK_SO=8, CPREC="tf32x3", FOLD=True)
    for w in ints(args.warps):  # the merge reads float32 scratch and coefficients: one build per warp count
        k = build_sm90(tiles.KERNELS["spectrum merge"], merge, "fp32", w)
        print(f"spectrum merge {w} warps: {resources(k)}, Triton shared memory {k.metadata.shared} B")
    for dtype in args.dtypes.split(","):
        dt, operand, prec, cprec = kinds[dtype]
        for w in ints(args.warps):
            for block_t, range_t in itertools.product(ints(args.block_t), ints(args.range_t)):
                fused = dict(G=4, LQ=1, D=128, VARLEN=False, DT=dt, BT_DT=operand, PREC=prec, CPREC=cprec,
                             BLOCK_M=16, BLOCK_R=4, BLOCK_D=128, BLOCK_T=block_t, RANGE_T=range_t, BLOCK_N=32,
                             BLOCK_KD=64, BLOCK_VD=64, NVP=512, ALIGN=8,
                             FAST_TRIG=dtype == "bf16", EMUL_BF16=False)
                k = build_sm90(tiles.KERNELS["fused"], fused, dtype, w)
                print(f"{dtype:5s} fused block_t {block_t:3d} range_t {range_t:2d} {w} warps: {resources(k)}, "
                      f"Triton shared memory {k.metadata.shared} B", flush=True)


if __name__ == "__main__":
    main()
