"""`python -m harness conform --op OP --impl pkg.module:function`: check a submitted kernel, store its report.

Exit codes: 0 the kernel conforms, 1 it does not, 2 usage error (unknown op, the function cannot be imported or
does not take the op's arguments, CUDA asked for but absent). The work is in harness.kernels.conformance_report.
"""
from __future__ import annotations

import os
import sys

from harness import argtypes

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def add_conform_parser(sub) -> None:
    """Register the `conform` subcommand on the subparsers of harness.cli."""
    p = sub.add_parser("conform", help="check a kernel against an op's reference and store the conformance report")
    p.add_argument("--op", required=True, type=argtypes.text("op name"),
                   help="the op the function implements (`python -m harness ops` lists them)")
    p.add_argument("--impl", required=True, metavar="PKG.MOD:FN", type=argtypes.text("function path"),
                   help="the function, importable from the current directory, or the name of a registered "
                   "implementation of the op (plugins included)")
    p.add_argument("--profile", default="ci", choices=("ci", "dev", "gpu"),
                   help="input shapes (ci/dev small, gpu LLaMA-3-8B heads) and default examples (10/50/200)")
    p.add_argument("--max-examples", type=argtypes.integer(minimum=1), default=None,
                   help="examples per dtype (default: by profile)")
    p.add_argument("--seed", type=argtypes.integer(minimum=0), default=None,
                   help="fix the drawn cases (the same seed draws the same cases); default: derandomized under "
                   "--profile ci (reproducible), fresh draws under dev and gpu")
    p.add_argument("--dtypes", default=None, type=argtypes.text("dtype list"), help="comma-separated, e.g. float32,float16 (default: every dtype the "
                   "op supports; no bfloat16 for Triton off the GPU)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--results", default=None, type=argtypes.output_dir,
                   help="store the report in DIR/conformance.jsonl (default: print it only; the committed results/ "
                   "is written only when named)")


def _usage(msg: str) -> int:
    print(f"error: {' '.join(str(msg).split())}", file=sys.stderr)  # one line, whatever the message holds
    return EXIT_USAGE


def cmd_conform(args) -> int:
    if args.max_examples is not None and args.max_examples < 1:
        return _usage(f"--max-examples must be >= 1, got {args.max_examples}")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        return _usage("--device cuda: no CUDA device is available")
    if device == "cpu":
        # Triton kernels run on the CPU only through the interpreter, which must be chosen before @triton.jit runs.
        os.environ.setdefault("TRITON_INTERPRET", "1")
        from harness.kernels.interpreter import overflow_checks_wanted, set_overflow_checks

        try:
            set_overflow_checks(overflow_checks_wanted())  # dropped unchecked by default: ~40% of the interpreter's time
        except ValueError as exc:
            return _usage(str(exc))
    if os.getcwd() not in sys.path:  # the submitted module usually lives where the command is run
        sys.path.insert(0, os.getcwd())

    from harness.kernels.conformance_report import parse_dtypes, property_rows, run_and_record
    from reference.registry import all_ops, check_signature, get_impl, implementations, load_callable

    if args.op not in all_ops():
        return _usage(f"--op {args.op!r} is not a registered op; known: {sorted(all_ops())}")
    registered = ":" not in args.impl and args.impl in implementations(args.op)
    if not registered and args.impl.count(":") != 1:  # before importing anything of the user's
        return _usage(f"--impl must look like 'package.module:function', got {args.impl!r}")
    try:
        dtypes = parse_dtypes(args.dtypes) if args.dtypes is not None else None
        # A registered name (built-in or a plugin's), else `pkg.mod:fn`, whose errors name the part that failed.
        fn = get_impl(args.op, args.impl) if registered else load_callable(args.impl)
    except (ImportError, ValueError) as exc:
        return _usage(str(exc))
    try:
        check_signature(args.op, fn)
    except TypeError as exc:
        return _usage(f"--impl {args.impl}: {exc}")

    from tabulate import tabulate

    print(f"conform {args.op} / {args.impl} (profile {args.profile}, device {device})", flush=True)
    report, speed, records = run_and_record(
        args.op, fn, args.impl, profile=args.profile, device=device, max_examples=args.max_examples, dtypes=dtypes,
        results=args.results, progress=lambda line: print(line, flush=True),
        seed=args.seed)
    print(tabulate(property_rows(report), headers=["property", "result", "worst error", "allowed", "dtype"]))
    print(report.summary())
    if speed and "impl_ms" in speed:
        print(f"speed ({speed['dtype']}, case {speed['case']}): {speed['impl_ms']:.4g} ms vs reference "
              f"{speed['reference_ms']:.4g} ms ({speed['speedup']:.2f}x); {speed['bandwidth_gbs']:.1f} GB/s = "
              f"{100 * speed['roofline_fraction']:.1f}% of the copy bandwidth ({speed['copy_bandwidth_gbs']:.0f} GB/s)")
    elif speed and "error" in speed:
        print(f"speed: not measured ({speed['error']})")
    if args.results is not None:
        print(f"wrote {len(records)} records to {os.path.join(args.results, 'conformance.jsonl')}")
    return EXIT_PASS if report.passed else EXIT_FAIL
