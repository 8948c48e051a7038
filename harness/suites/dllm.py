"""`run --suite dllm`: harness/dllm/run.py from the command line (--methods, --lengths, --tasks, --impl apply)."""
from __future__ import annotations

from tabulate import tabulate

from harness.dllm.methods import labels
from harness.dllm.run import DLLMAccuracyConfig, DLLMSuite
from harness.suite import SUITES


@SUITES.register("dllm")
class DLLM(DLLMSuite):
    order = 4

    def config_from_args(self, args) -> DLLMAccuracyConfig:
        impl = "torch" if args.impl == "reference" else args.impl
        methods = tuple(args.methods or labels())
        method_params: dict = {}
        for label, key, value in args.param:
            if label not in methods:
                raise ValueError(f"--param {label}.{key}: {label!r} is not among the dLLM --methods {list(methods)}")
            method_params.setdefault(label, {})[key] = value
        return DLLMAccuracyConfig(checkpoint=args.checkpoint, methods=methods,
                                  keep_ratios=tuple(args.keep_ratios), impls=(impl,),
                                  tasks=tuple(args.tasks or ()) or DLLMAccuracyConfig.tasks,
                                  lengths=tuple(args.lengths), n=args.n, device=args.device, results=args.results,
                                  rerun=args.rerun, gen_params=dict(args.gen), method_params=method_params)

    def summarize(self, config, store, cells, pending) -> dict:
        summary = super().summarize(config, store, cells, pending)
        rows = [(m, f"{sum(v) / len(v):.1f}", len(v)) for m, v in sorted(summary["accuracy"].items())]
        summary["table"] = tabulate(rows, headers=["method", "accuracy % (mean over cells run)", "cells"])
        return summary
