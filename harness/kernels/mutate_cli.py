"""`python -m harness mutate --impl pkg.module:function [--op OP]`: how strong is conformance on this kernel?

Generates single-point mutants of the implementation's source (harness/kernels/mutate.py), runs conformance on each
(harness/kernels/mutation_run.py) and prints the report: killed / survived / crashed / timeout, the score and each
survivor's diff (harness/kernels/mutation_report.py); `--results DIR` also stores it in DIR/mutation.jsonl, which the
kernels board shows as the "conformance strength" column. Exit codes: 0 done (and the score is at least
--fail-under when given), 1 the score is below --fail-under, 2 usage error (as `conform`, plus an implementation
that fails conformance unmutated). `--rescore --results DIR` reruns nothing: it applies the reasons file, written
after a run, to the runs stored in DIR.
"""
from __future__ import annotations

import os
import sys

from harness import argtypes
from harness.store import ResultsStore

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def add_mutate_parser(sub) -> None:
    """Register the `mutate` subcommand on the subparsers of harness.cli."""
    p = sub.add_parser("mutate", help="mutation-test conformance on a kernel: killed/survived mutants and the score")
    p.add_argument("--impl", default=None, metavar="PKG.MOD:FN", type=argtypes.text("function path"),
                   help="the function, importable from the current directory, or the name of a registered "
                   "implementation of --op")
    p.add_argument("--op", default=None, type=argtypes.text("op name"),
                   help="the op it implements (default: the op it is registered for, else the one op whose "
                   "arguments it takes)")
    p.add_argument("--profile", default="ci", choices=("ci", "dev", "gpu"), help="conformance inputs (default ci)")
    p.add_argument("--max-mutants", type=argtypes.integer(minimum=1), default=40,
                   help="mutants sampled from all of them (default 40)")
    p.add_argument("--seed", type=argtypes.integer(minimum=0), default=0, help="which mutants are sampled (default 0)")
    p.add_argument("--max-examples", type=argtypes.integer(minimum=1), default=None,
                   help="drawn examples per dtype and mutant (default: by profile, 10 for ci)")
    p.add_argument("--timeout", type=argtypes.number(above=0), default=None,
                   help="seconds per mutant (default: 3 x the unmutated run + 30)")
    p.add_argument("--reasons", default=None, type=argtypes.text("path"),
                   help="JSON file of survivors' verdicts and reasons (default: results/mutation_reasons.json "
                   "when it exists)")
    p.add_argument("--fail-under", type=argtypes.number(minimum=0, maximum=100), default=None,
                   help="exit 1 when the score (%%) is below this")
    p.add_argument("--results", default=None, type=argtypes.output_dir,
                   help="store the report in DIR/mutation.jsonl (default: print it only)")
    p.add_argument("--rescore", action="store_true",
                   help="run nothing: re-score the newest run of each kernel stored in --results DIR with the survivors' "
                   "verdicts of --reasons (written after the run), appending the updated score records")


def _usage(msg: str) -> int:
    print(f"error: {' '.join(str(msg).split())}", file=sys.stderr)
    return EXIT_USAGE


def _which_op(fn, given: str | None) -> str:
    from reference.registry import all_ops, check_signature, implementations

    if given is not None:
        if given not in all_ops():
            raise ValueError(f"--op {given!r} is not a registered op; known: {sorted(all_ops())}")
        return given
    registered = [op for op in sorted(all_ops()) if any(f is fn for f in implementations(op).values())]
    if len(registered) == 1:
        return registered[0]
    takes = []
    for op in sorted(all_ops()):
        try:
            check_signature(op, fn)
            takes.append(op)
        except TypeError:
            pass
    if len(takes) != 1:
        raise ValueError(f"--op is needed: the function takes the arguments of {takes or 'no registered op'}")
    return takes[0]


def cmd_rescore(args) -> int:
    from harness.kernels.mutation_report import DEFAULT_REASONS, SUITE, load_reasons, rescore

    if args.results is None:
        return _usage("--rescore needs --results DIR, the store whose runs are re-scored")
    try:
        reasons = load_reasons(args.reasons if args.reasons is not None else DEFAULT_REASONS)
    except ValueError as exc:
        return _usage(str(exc))
    store = ResultsStore(args.results)
    updated = rescore(store.records(SUITE), reasons)
    store.append(updated)
    for r in updated:
        if r["metric"] == "score":
            print(f"{r['task']} / {r['impl']}: score {100 * r['value']:.1f}%")
    print(f"re-scored {sum(r['metric'] == 'score' for r in updated)} runs in {store.path(SUITE)}")
    return EXIT_PASS


def cmd_mutate(args) -> int:
    if args.rescore:
        return cmd_rescore(args)
    if args.impl is None:
        return _usage("--impl is required (the function to mutate), unless --rescore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)  # each mutant runs in a forked child: no thread pool to inherit half-built
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())

    from harness.kernels.conformance_report import PROFILE_EXAMPLES
    from harness.kernels.mutation_report import DEFAULT_REASONS, format_report, load_reasons, store, summarize, to_records
    from harness.kernels.mutation_run import mutate_impl
    from reference.registry import all_ops, get_impl, load_callable

    try:
        if ":" in args.impl:
            fn = load_callable(args.impl)
        elif args.op is None:
            return _usage(f"--impl {args.impl!r} is a registered name: give --op too (or pkg.module:function)")
        else:
            if args.op not in all_ops():
                return _usage(f"--op {args.op!r} is not a registered op; known: {sorted(all_ops())}")
            fn = get_impl(args.op, args.impl)
        op = _which_op(fn, args.op)
        reasons = load_reasons(args.reasons if args.reasons is not None else DEFAULT_REASONS)
    except (ImportError, KeyError, ValueError) as exc:
        return _usage(str(exc).strip("'\""))
    max_examples = args.max_examples or PROFILE_EXAMPLES[args.profile]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"mutate {op} / {args.impl} (profile {args.profile}, {max_examples} examples per dtype, device {device})",
          flush=True)
    try:
        campaign = mutate_impl(op, fn, args.impl, profile=args.profile, max_mutants=args.max_mutants, seed=args.seed,
                               max_examples=max_examples, timeout_s=args.timeout, device=device,
                               progress=lambda line: print(line, flush=True))
    except ValueError as exc:
        return _usage(str(exc))
    summary = summarize(campaign, reasons)
    print(format_report(campaign, summary))
    if args.results is not None:
        params = {"profile": args.profile, "max_mutants": args.max_mutants, "seed": args.seed,
                  "max_examples": max_examples}
        print(f"wrote to {store(to_records(campaign, summary, params, device), args.results)}")
    if args.fail_under is not None and 100 * summary["score"] < args.fail_under:
        return EXIT_FAIL
    return EXIT_PASS
