"""`run --suite scheduling`: the simulated sweep (harness/scheduling/run.py, default) or the real serving loop
(harness/scheduling/serve_real.py, `--mode real`)."""
from __future__ import annotations

from harness.scheduling.run import WORKLOADS, SchedConfig, SchedSuite
from harness.scheduling.serve_real import RealConfig, RealSuite
from harness.suite import SUITES, Suite


@SUITES.register("scheduling")
class Scheduling(SchedSuite):
    order = 3

    def config_from_args(self, args):
        if args.mode == "real":
            return RealConfig(policies=tuple(args.policies or ()), rates=tuple(args.rates or ()),
                              n_requests=10 if args.n_requests is None else args.n_requests, seed=args.seed,
                              results=args.results, rerun=args.rerun, max_batch=args.max_batch)
        seeds = tuple(args.seeds) if args.seeds else tuple(range(args.seed, args.seed + 5))
        return SchedConfig(policies=tuple(args.policies or ()), workloads=tuple(args.workloads or WORKLOADS),
                           loads=tuple(args.loads), rates=tuple(args.rates or ()),
                           n_requests=300 if args.n_requests is None else args.n_requests, seeds=seeds,
                           sweep=not args.no_sweep, results=args.results, rerun=args.rerun)

    def for_config(self, config, progress: bool = True, local: bool = True) -> Suite:
        return RealSuite(progress, local) if isinstance(config, RealConfig) else self
