"""Run every registered Triton kernel once on small cases, for `compute-sanitizer` (ci/gpu.sh, step "sanitize").

The Triton interpreter runs a kernel's programs one after another, so a write race between programs (two programs
storing to one element, as a store-mask mutant that leaves its tile does) is invisible to the CPU tier. Under
`compute-sanitizer --tool racecheck` (shared-memory hazards) and `--tool memcheck` (out-of-bounds and misaligned
accesses) the compiled kernels run for real. The cases: each op's explicit examples (OpSpec.examples: tile and
split boundaries, odd head dims, score offsets) in float16, each checked against the conformance rule too, so a
kernel the sanitizer passes is also right on them. Exits 1 when a case fails the rule; the sanitizer's own
verdict is its exit code (--error-exitcode in ci/gpu.sh).

Usage: compute-sanitizer --tool memcheck python ci/sanitize_kernels.py [--ops a,b] [--examples N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default=None, help="comma-separated ops (default: every op with a Triton kernel)")
    parser.add_argument("--examples", type=int, default=None, help="explicit examples per kernel (default all)")
    args = parser.parse_args(argv)

    import torch

    from harness.kernels.conformance import check_case, uses_triton
    from reference.registry import all_ops, implementations

    if not torch.cuda.is_available():
        print("sanitize_kernels: no CUDA device; nothing to run")
        return 0
    wanted = set(args.ops.split(",")) if args.ops else None
    failed = 0
    for op, spec in sorted(all_ops().items()):
        if wanted is not None and op not in wanted:
            continue
        for name, fn in sorted(implementations(op).items()):
            if not uses_triton(fn):
                continue
            for case in spec.examples[:args.examples]:
                result = check_case(op, fn, case, torch.float16, "cuda")
                torch.cuda.synchronize()
                print(f"{op} / {name} {case}: {'ok' if result.passed else 'FAIL ' + result.detail[:200]}", flush=True)
                failed += not result.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
