"""`python -m harness ...`: thin argument parsing over the library, one subcommand per job, all in one style.

COMMANDS lists them: each is a pair (register its parser on the subparsers, run it on the parsed arguments), the
parser built from harness/argtypes.py types (a malformed value exits 2 naming its option before anything loads),
the command raising ValueError & co. for what only its config can check (printed on one line, exit 2):

  run           a registered suite into the results store, then the leaderboard (harness/suite.py)
  leaderboard   the leaderboard from the store (harness/boards/leaderboard.py)
  methods, ops  what is registered
  conform       a kernel against its op's reference (harness/kernels/conform_cli.py)
  mutate        a kernel's single-point mutants under conformance: how much it checks (harness/kernels/mutate_cli.py)
  bench         GPU benchmarks: --suite kernels (harness/kernels/bench.py) or --suite dllm (harness/dllm/bench.py)
  train-dllm    the small dLLM the dLLM suite decodes with (harness/dllm/train.py)
  calibrate-sd  GPU step times of the speculative-decoding cost model (harness/scheduling/calibrate_sd.py)
  compare       a method variant against its default on the same cells (harness/kv/variant_compare.py)

`python -m harness.dllm.train` and `python -m harness.scheduling.calibrate_sd` run the same two jobs with the same
options.
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import sys

from harness import argtypes
from harness.cpu_load import set_threads
from harness.dllm import bench as dllm_bench, train as train_dllm
from harness.executors import ExecutorConfig
from harness.kernels import bench as kernels_bench
from harness.kernels.conform_cli import add_conform_parser, cmd_conform
from harness.kernels.impls import bench_impls
from harness.kernels.mutate_cli import add_mutate_parser, cmd_mutate
from harness.kv import variant_compare
from harness.scheduling import calibrate_sd
from harness.suite import SUITES, get_suite, run_suite, suite_names
from reference.registry import PLUGINS_ENV, load_plugins, plugin_names

DEFAULT_RESULTS = "results"
DEFAULT_BOARD = "leaderboard"


def _list(kind, name: str):
    """A comma-separated, non-empty list of `kind` (int, float: finite, str); argparse names the option."""
    parse = {int: argtypes.int_list(), float: argtypes.float_list(), str: argtypes.name_list()}[kind]
    parse.__name__ = f"{name} list"
    return parse


def _param(text: str) -> tuple[str, str, object]:
    """--param snapkv.window=16 -> ("snapkv", "window", 16); the value is JSON when it parses (NaN and inf refused),
    else the string itself."""
    try:
        target, value = text.split("=", 1)
        method, key = target.split(".", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE, got {text!r}") from None
    if not method.strip() or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE with all three non-empty, got {text!r}")
    try:
        parsed = json.loads(value, parse_constant=lambda c: float(c))
    except (json.JSONDecodeError, RecursionError):
        parsed = value
    except ValueError:  # an integer too long to convert
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not a usable number") from None
    try:
        finite = math.isfinite(float(parsed)) if not isinstance(parsed, (bool, dict, list)) else True
    except (TypeError, ValueError, OverflowError):
        finite = True  # a string value
    if not finite:
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be a finite number")
    return method, key, parsed


def _gen_option(text: str) -> tuple[str, object]:
    """--gen temperature=0.5 -> ("temperature", 0.5): a decoding option of the dLLM loop (the value parsed as
    --param's)."""
    name, _, value = text.partition("=")
    if not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with both non-empty, got {text!r}")
    return name.strip(), _param(f"gen.{text}")[2]


def add_run_parser(sub, with_suites: bool = True) -> argparse.ArgumentParser:
    """`run`: the common options, each suite's group, and the suites' own options (plugins' too)."""
    run = sub.add_parser("run", help="run a suite into the results store (no options: the quick NIAH sweep of every method)")
    run.add_argument("--suite", default="niah", choices=suite_names() if with_suites else None,
                     help="a registered suite (harness/suites/, or a plugin's); default niah")
    run.add_argument("--model", default="smollm2", type=argtypes.text("model name"), help="'smollm2' (embedded), a local directory or .gguf file, or a hub id")
    run.add_argument("--methods", type=_list(str, "--methods"), default=None, help="comma-separated; default: every registered method")
    run.add_argument("--compression-ratio", type=argtypes.number(), default=0.5, help="fraction of KV bytes removed (0 = full cache)")
    run.add_argument("--lengths", type=_list(int, "--lengths"), default=(1024, 2048))
    run.add_argument("--depths", type=_list(float, "--depths"), default=(0.0, 0.5, 1.0))
    run.add_argument("--trials", type=argtypes.integer(), default=1)
    run.add_argument("--question-aware", action="store_true", help="prefill the question with the context (kept exactly); default: question-agnostic")
    run.add_argument("--impl", default="reference", type=argtypes.text("implementation name"), help="attention implementation: reference, torch, triton or package.module:function")
    run.add_argument("--seed", type=argtypes.integer(), default=0)
    run.add_argument("--haystack", default=None, type=argtypes.text("path"), help="text file whose sentences replace the default filler")
    run.add_argument("--max-new-tokens", type=argtypes.integer(), default=10)
    run.add_argument("--param", type=_param, action="append", default=[], help="method parameter, e.g. snapkv.window=16 (repeatable)")
    run.add_argument("--results", default=DEFAULT_RESULTS, type=argtypes.output_dir, help="results store directory")
    run.add_argument("--out", default=None, type=argtypes.output_dir,
                     help="leaderboard directory written after the run (default: leaderboard/ for the committed store "
                     "results/, else DIR/leaderboard under --results DIR: a run never rewrites the committed board "
                     "from another store)")
    run.add_argument("--no-leaderboard", action="store_true")
    run.add_argument("--rerun", action="store_true", help="measure cells again even if the store has them")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--threads", type=argtypes.integer(minimum=1), default=None,
                     help="CPU threads for torch (default: $OMP_NUM_THREADS, else the physical cores this process may "
                     "use less those busy with other work); recorded with every timing, whose records say whether "
                     "the CPU was oversubscribed")
    tasks = run.add_argument_group("--suite ruler / longbench (same flow as niah: --model, --methods, --compression-ratio, ...)")
    tasks.add_argument("--tasks", type=_list(str, "--tasks"), default=None, help="comma-separated (default: all of the suite)")
    tasks.add_argument("--data-dir", default=None, type=argtypes.existing_dir, help="longbench: directory of LongBench-format <task>.jsonl files (default: the hub via datasets)")
    tasks.add_argument("--longbench-e", action="store_true", help="longbench: LongBench-E (length buckets 0-4k, 4-8k, 8k+)")
    tasks.add_argument("--limit", type=argtypes.integer(), default=None, help="longbench: rows per task")
    tasks.add_argument("--max-length", type=argtypes.integer(), default=None, help="longbench: middle-truncate prompts to this many tokens (default: the model's limit)")
    sched = run.add_argument_group("--suite scheduling (speculative-decoding serving: LAPS-SD and baselines)")
    sched.add_argument("--policies", type=_list(str, "--policies"), default=None, help="comma-separated; default: all")
    sched.add_argument("--workloads", type=_list(str, "--workloads"), default=None, help="paper-like, sharegpt, draft-sharegpt, draft-heavy, mixed-sharegpt (default: all)")
    sched.add_argument("--seeds", type=_list(int, "--seeds"), default=None, help="sim: workload seeds, each a cell (default: 5 seeds from --seed)")
    sched.add_argument("--rates", type=_list(float, "--rates"), default=None, help="arrival rates, requests/s (default: --loads)")
    sched.add_argument("--loads", type=_list(float, "--loads"), default=(0.5, 0.7, 0.9), help="arrival rates as fractions of capacity")
    sched.add_argument("--n-requests", type=argtypes.integer(), default=None, help="requests per cell (default: sim 300, real 10)")
    sched.add_argument("--mode", default="sim", choices=("sim", "real"), help="simulate, or really serve with the embedded model")
    sched.add_argument("--no-sweep", action="store_true", help="skip the LAPS-SD parameter sweep")
    sched.add_argument("--max-batch", type=argtypes.integer(), default=1, help="real mode: requests per iteration (continuous batching when > 1)")

    dllm = run.add_argument_group("--suite dllm (masked-diffusion decoding: Sparse-dLLM and baselines on our trained dLLM; "
                                  "--methods, --lengths, --tasks, --impl apply)")
    dllm.add_argument("--checkpoint", default="fixtures/dllm/tiny_dllm.pt", type=argtypes.text("path"), help="a checkpoint of `train-dllm`")
    dllm.add_argument("--keep-ratios", type=_list(float, "--keep-ratios"), default=(0.5,), help="sparse_dllm keep ratios")
    dllm.add_argument("--n", type=argtypes.integer(), default=16, help="held-out prompts per task and length")
    dllm.add_argument("--device", default="cpu", type=argtypes.device, help="cpu, cuda or cuda:N")
    dllm.add_argument("--gen", type=_gen_option, action="append", default=[],
                      help="a decoding option of the loop, e.g. temperature=0.5, threshold=0.9, cfg_scale=1, "
                      "tempered_confidence=true (repeatable; recorded in each record's params and protocol). Cache "
                      "options go through --param LABEL.NAME=VALUE, e.g. fast_dllm_prefix.extra_forward=true")

    ex = run.add_argument_group("executor (where each cell of the sweep runs; records are the same either way)")
    ex.add_argument("--executor", default="local", choices=("local", "ray"),
                    help="local: this process (default); ray: one Ray task per cell (method x task x length x model)")
    ex.add_argument("--ray-address", default=None,
                    help="a Ray cluster address (default: $RAY_ADDRESS, else a local Ray instance started for the run)")
    ex.add_argument("--cell-cpus", type=float, default=1.0, help="CPUs each Ray task requests (default 1)")
    ex.add_argument("--cell-gpus", type=float, default=None,
                    help="GPUs each Ray task requests (default: 1 when the suite runs on CUDA, else 0)")

    for name in suite_names() if with_suites else ():  # each suite's own options (plugins' suites add theirs)
        SUITES.get(name).add_arguments(run)
    return run


def add_leaderboard_parser(sub) -> argparse.ArgumentParser:
    board = sub.add_parser("leaderboard", help="build the leaderboard (headline README.md / index.html and a page per "
                           "family) from the store")
    board.add_argument("--results", default=DEFAULT_RESULTS, type=argtypes.existing_dir, help="results store directory")
    board.add_argument("--out", default=DEFAULT_BOARD, type=argtypes.output_dir, help="directory to write the board into")
    return board


def add_bench_parser(sub) -> argparse.ArgumentParser:
    """`bench --suite kernels` (harness/kernels/bench.py) or `--suite dllm` (harness/dllm/bench.py): one command,
    each suite's options from its own module."""
    bench = sub.add_parser("bench", help="GPU benchmarks into the results store (kernels: decode attention vs the copy "
                           "roofline)")
    bench.add_argument("--suite", default="kernels", choices=("kernels", "dllm"))
    kernels_bench.add_arguments(bench)
    dllm_bench.add_arguments(bench)
    return bench


def cmd_bench(args) -> int:
    return dllm_bench.cmd_bench_dllm(args) if args.suite == "dllm" else kernels_bench.cmd_bench(args)


def build_parser(with_suites: bool = True) -> argparse.ArgumentParser:
    """The parser of every subcommand (COMMANDS); `with_suites=False` skips importing the suites (their modules
    load models' libraries), for commands other than `run`."""
    parser = argparse.ArgumentParser(prog="python -m harness", description="longctx-bench harness")
    parser.add_argument("--plugins", default=None, metavar="MODULES",
                        help="comma-separated modules or packages to import before anything is looked up (methods, "
                        "kernels, policies, suites of your own; a package's modules are all imported); added to "
                        f"${PLUGINS_ENV}, which worker processes inherit")
    sub = parser.add_subparsers(dest="command")
    for name, (add, _) in COMMANDS.items():
        add(sub, with_suites) if name == "run" else add(sub)
    parser.set_defaults(commands=sub.choices)  # each subcommand's parser, for its own usage on an unknown option
    return parser


def reject_unknown(args, extra: list[str]) -> None:
    """Exit 2 through the subcommand's parser (its usage, not the top level's), suggesting the closest option."""
    command = args.commands.get(args.command)
    if command is None:
        return
    known = [o for a in command._actions for o in a.option_strings]
    hints = [f"{x} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(x.split("=")[0], known, n=1)) else x
             for x in extra if x.startswith("-")]
    command.error(f"unrecognized arguments: {' '.join(extra)}" + (f"; {', '.join(hints)}" if hints else ""))


def _executor(args):
    """--executor, --ray-address, --cell-cpus, --cell-gpus as an ExecutorConfig, checked."""
    config = ExecutorConfig(args.executor, args.ray_address, args.cell_cpus, args.cell_gpus)
    config.validate()
    return config


def board_dir(results: str, out: str | None) -> str:
    """Where `run` writes its leaderboard: `out` if given; the committed leaderboard/ only for the committed store."""
    if out is not None:
        return out
    same = os.path.normpath(os.path.abspath(results)) == os.path.normpath(os.path.abspath(DEFAULT_RESULTS))
    return DEFAULT_BOARD if same else os.path.join(results, "leaderboard")


def cmd_run(args) -> int:
    """`run --suite NAME`: the registered suite's config from the options, its cells through run_suite, its table."""
    args.out = board_dir(args.results, args.out)
    set_threads(args.threads)
    executor = _executor(args)
    suite = get_suite(args.suite)
    config = suite.config_from_args(args)
    suite = suite.for_config(config, progress=not args.no_progress, local=executor.name == "local")
    summary = run_suite(suite, config, progress=not args.no_progress, executor=executor)
    if summary.get("table"):
        print(summary["table"])
    print(f"ran {summary['ran']} cells, skipped {summary['skipped']}; records in {summary['store']}")
    if not args.no_leaderboard:
        return cmd_leaderboard(argparse.Namespace(results=args.results, out=args.out))
    return 0


def cmd_leaderboard(args) -> int:
    from harness.boards.leaderboard import build_leaderboard

    paths = build_leaderboard(args.results, args.out)
    for p in paths.values():
        print(f"wrote {p}")
    return 0


def add_methods_parser(sub) -> argparse.ArgumentParser:
    return sub.add_parser("methods", help="list the registered KV methods and their parameters")


def add_ops_parser(sub) -> argparse.ArgumentParser:
    return sub.add_parser("ops", help="list the registered ops and their implementations")


def cmd_methods(args) -> int:
    from reference.kv import METHODS
    from reference.kv import make_method

    import dataclasses

    for name in METHODS.names():
        # Every settable parameter with its default (params() may leave defaults out of records, e.g. fourier's).
        method = make_method(name, 0.0)
        params = {f.name: getattr(method, f.name) for f in dataclasses.fields(method)
                  if f.init and f.name not in ("compression_ratio", "dims")}
        print(f"{name:15s} {params}")
    return 0


def cmd_ops(args) -> int:
    from reference.registry import all_ops, implementations

    timed: dict[str, list[str]] = {}
    for entry in bench_impls().values():
        timed.setdefault(entry.op, []).append(entry.name)
    for name in all_ops():
        bench = f"; benchmarked (bench --impls): {timed[name]}" if name in timed else ""
        print(f"{name:28s} implementations: {['reference', *implementations(name)]}{bench}")
    return 0


# name -> (register its parser on the subparsers, run it): every subcommand, in `--help` order.
COMMANDS = {
    "run": (add_run_parser, cmd_run),
    "leaderboard": (add_leaderboard_parser, cmd_leaderboard),
    "methods": (add_methods_parser, cmd_methods),
    "ops": (add_ops_parser, cmd_ops),
    "conform": (add_conform_parser, cmd_conform),
    "mutate": (add_mutate_parser, cmd_mutate),
    "bench": (add_bench_parser, cmd_bench),
    "train-dllm": (train_dllm.add_parser, train_dllm.cmd_train),
    "calibrate-sd": (calibrate_sd.add_parser, calibrate_sd.cmd_calibrate),
    "compare": (variant_compare.add_parser, variant_compare.cmd_compare),
}


def show_progress() -> None:
    """Print the library's progress lines (INFO of the "longctx.*" loggers: model loading, the Fourier search) on
    stderr, each before the step it announces."""
    from tqdm.auto import tqdm

    class AboveTheBars(logging.Handler):  # a line printed between redraws of the sweep's progress bar
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    log = logging.getLogger("longctx")
    if not log.handlers:
        log.addHandler(AboveTheBars())
    log.setLevel(logging.INFO)


def take_plugins(argv: list[str]) -> list[str]:
    """Remove `--plugins X` / `--plugins=X` (anywhere in argv), add X to PLUGINS_ENV (so workers import them too)
    and import every plugin before the parsers, whose choices (suites) come from the registries, are built."""
    rest, given = [], []
    it = iter(argv)
    for a in it:
        if a == "--plugins":
            given.append(next(it, ""))
        elif a.startswith("--plugins="):
            given.append(a.split("=", 1)[1])
        else:
            rest.append(a)
    if given:
        names = plugin_names() + [n for g in given for n in plugin_names(g)]
        os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys(names))
    load_plugins()
    return rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = take_plugins(argv)
    except ImportError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    parser = build_parser(with_suites="run" in argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        reject_unknown(args, extra)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "no_progress", False):
        show_progress()
    if args.command is None:  # `python -m harness` alone prints help
        parser.print_help()
        return 0
    handler = COMMANDS[args.command][1]
    try:
        return handler(args)
    except (ValueError, TypeError, KeyError, OSError, ImportError, RuntimeError) as exc:
        # One line, no traceback: these are the errors bad input raises (configs' validate(), loaders).
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2
