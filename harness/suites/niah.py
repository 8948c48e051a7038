"""`run --suite niah` (the default): the NIAH sweep of harness/kv/run_niah.py from the command line."""
from __future__ import annotations

from tabulate import tabulate

from harness.kv.run_niah import NiahConfig, NiahSuite
from harness.suite import SUITES
from harness.suites.common import kv_methods_and_params


@SUITES.register("niah")
class Niah(NiahSuite):
    order = 0

    def config_from_args(self, args) -> NiahConfig:
        methods, method_params = kv_methods_and_params(args)
        return NiahConfig(model=args.model, methods=tuple(methods), compression_ratio=args.compression_ratio,
                          lengths=args.lengths, depths=args.depths, trials=args.trials,
                          question_aware=args.question_aware, impl=args.impl, seed=args.seed, haystack=args.haystack,
                          max_new_tokens=args.max_new_tokens, results=args.results, rerun=args.rerun,
                          method_params=method_params)

    def summarize(self, config, store, cells, pending) -> dict:
        summary = super().summarize(config, store, cells, pending)
        rows = [(m, f"{100 * s['accuracy']:.1f}", s["cells"], f"{s['kv_bytes'] / 2**20:.2f}",
                 f"{100 * s['kv_fraction_of_full']:.1f}")
                for m, s in sorted(summary["methods"].items(), key=lambda kv: -kv[1]["accuracy"])]
        summary["table"] = tabulate(rows, headers=["method", "accuracy %", "cells", "KV MiB (mean)", "KV % of full"])
        return summary
