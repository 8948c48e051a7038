"""What the KV suites' command-line adapters share: --methods and --param checked against the registry, and the
RULER / LongBench adapter (one class, two registered names)."""
from __future__ import annotations

from tabulate import tabulate

from harness.kv.run_tasks import TaskConfig, TaskSuite
from reference.kv import METHODS


def kv_methods_and_params(args) -> tuple[tuple[str, ...], dict]:
    """--methods (default: every registered KV method) and --param METHOD.NAME=VALUE, checked."""
    methods = tuple(args.methods or METHODS.names())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; registered: {METHODS.names()}")
    method_params: dict = {}
    for method, key, value in args.param:
        if method not in methods:
            raise ValueError(f"--param {method}.{key}: {method!r} is not among --methods {list(methods)}")
        method_params.setdefault(method, {})[key] = value
    return methods, method_params


class TaskRun(TaskSuite):
    """The command-line side of RULER and LongBench: the config from `harness run`'s options, a score table."""

    def config_from_args(self, args) -> TaskConfig:
        methods, method_params = kv_methods_and_params(args)
        return TaskConfig(suite=self.name, model=args.model, methods=tuple(methods),
                          compression_ratio=args.compression_ratio, tasks=tuple(args.tasks or ()),
                          lengths=tuple(args.lengths), trials=args.trials, data_dir=args.data_dir,
                          longbench_e=args.longbench_e, limit=args.limit, max_length=args.max_length,
                          question_aware=args.question_aware, impl=args.impl, seed=args.seed, results=args.results,
                          rerun=args.rerun, method_params=method_params)

    def summarize(self, config, store, cells, pending) -> dict:
        summary = super().summarize(config, store, cells, pending)
        tasks = sorted({t for ts in summary["scores"].values() for t in ts})
        rows = [(m, *(f"{100 * ts[t]:.1f}" if t in ts else "-" for t in tasks),
                 f"{100 * sum(ts.values()) / len(ts):.1f}") for m, ts in sorted(summary["scores"].items())]
        summary["table"] = tabulate(rows, headers=["method", *tasks, "average"])
        return summary
