"""Deep conformance sweep: every implementation of every op, many drawn examples, several seeds. Outside CI.

CI's conformance draws 8 derandomized examples per dtype, so the same inputs every run. That is what keeps a verdict
reproducible, but it also means a bug that needs a rarer input is never drawn. Two kernel bugs and one defect of the
rule itself were found only by drawing more (docs/testing.md, "Deep conformance sweeps"). This script runs `python
-m harness conform` once per (op, implementation, seed), each in its own process under a time limit, and appends the
records to one store. A sweep that is cut short loses no finished run. Run again with the same arguments and it
resumes: a run whose verdict is already stored (same op, implementation, profile, examples and seed) is skipped.

    python ci/deep_conformance.py --seeds 11,12 --examples 150          # everything, about 1.5 h on 2 CPU cores
    python ci/deep_conformance.py --ops fourier_compress --seeds 3 --examples 400

Each failure prints its first failing case as a `check_case(...)` line that replays it. The exit status is 1 when
any run failed or was cut by its time limit.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The float32-coefficient wrappers of the low-rank kernel (ci/lowrank_f32_coefs.py): the paths the KV method's cache
# takes, which the registered ops' 16-bit coefficients never reach.
EXTRA = {"fourier_decode_attention": ("ci.lowrank_f32_coefs:uniform", "ci.lowrank_f32_coefs:uniform_folds"),
         "fourier_decode_attention_varlen": ("ci.lowrank_f32_coefs:varlen", "ci.lowrank_f32_coefs:varlen_folds")}


def planned_runs(ops: list[str] | None, impls: list[str] | None, seeds: list[int]) -> list[tuple[str, str, int]]:
    """(op, implementation, seed) for every registered implementation but the reference, and EXTRA, in registry
    order; `ops` and `impls` keep only the named ones (an unknown name raises, naming it)."""
    from reference.registry import all_ops, implementations

    known = all_ops()
    for op in ops or ():
        if op not in known:
            raise SystemExit(f"--ops: unknown op {op!r}; ops: {', '.join(sorted(known))}")
    runs = []
    for op in ops or sorted(known):
        for impl in [*(i for i in implementations(op) if i != "reference"), *EXTRA.get(op, ())]:
            if impls is None or impl in impls:
                runs += [(op, impl, seed) for seed in seeds]
    if impls is not None:
        unknown = set(impls) - {impl for _, impl, _ in runs}
        if unknown:
            raise SystemExit(f"--impls: {', '.join(sorted(unknown))} implement none of the chosen ops")
    return runs


def finished(results: Path, profile: str, examples: int) -> dict[tuple[str, str, int], bool]:
    """{(op, implementation, seed): passed} of the verdicts already in the store `results` for this profile and
    budget (read by the store, which skips a line cut by a crash with a warning: that run is simply run again)."""
    from harness.store import ResultsStore

    done = {}
    for r in ResultsStore(results).records("conformance"):
        p, draws = r["params"], r["extra"].get("draws", "")
        if (r["metric"] == "passed" and p.get("property") == "all" and p.get("profile") == profile
                and p.get("max_examples") == examples and draws.startswith("seed ")):
            done[(r["task"], r["impl"], int(draws.split()[1]))] = r["value"] == 1
    return done


def run_one(op: str, impl: str, seed: int, args: argparse.Namespace, log: Path) -> tuple[str, float]:
    """One conformance run in its own process: 'PASS', 'FAIL' or 'TIMEOUT', and its seconds."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    if args.device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    cmd = [sys.executable, "-m", "harness", "conform", "--op", op, "--impl", impl, "--profile", args.profile,
           "--seed", str(seed), "--max-examples", str(args.examples), "--device", args.device,
           "--results", str(args.results)]
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            return "TIMEOUT", time.monotonic() - start
    return ("PASS" if rc == 0 else "FAIL"), time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="11,12", help="comma-separated draw seeds (default 11,12)")
    ap.add_argument("--examples", type=int, default=150, help="drawn examples per dtype (default 150; CI draws 8)")
    ap.add_argument("--profile", default="ci", choices=("ci", "dev", "gpu"),
                    help="input shapes: ci (small, the default), dev, or gpu (LLaMA-3-8B heads)")
    ap.add_argument("--ops", help="comma-separated ops (default: all)")
    ap.add_argument("--impls", help="comma-separated implementations (default: every one but the reference)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run (default 1800)")
    ap.add_argument("--results", type=Path, default=ROOT / "runs" / "deep-conformance",
                    help="store directory: conformance.jsonl and logs/ (default runs/deep-conformance)")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds or args.examples < 1 or args.timeout <= 0:
        ap.error("--seeds needs at least one seed, --examples and --timeout must be positive")
    split = (lambda s: [x for x in s.split(",") if x] if s else None)
    runs = planned_runs(split(args.ops), split(args.impls), seeds)
    (args.results / "logs").mkdir(parents=True, exist_ok=True)
    done = finished(args.results, args.profile, args.examples)
    verdicts = {}
    for k, (op, impl, seed) in enumerate(runs, 1):
        name = f"{op}.{impl.replace(':', '.')}.seed{seed}"
        if (op, impl, seed) in done:
            verdicts[name] = "PASS" if done[(op, impl, seed)] else "FAIL"
            print(f"[{k}/{len(runs)}] {op} {impl} seed {seed}: {verdicts[name]} (stored)", flush=True)
            continue
        verdicts[name], secs = run_one(op, impl, seed, args, args.results / "logs" / f"{name}.log")
        print(f"[{k}/{len(runs)}] {op} {impl} seed {seed}: {verdicts[name]} ({secs:.0f} s)", flush=True)
    bad = {n: v for n, v in verdicts.items() if v != "PASS"}
    print(f"\n{len(verdicts) - len(bad)} of {len(verdicts)} runs passed ({args.examples} examples per dtype, "
          f"profile {args.profile}, seeds {args.seeds}); records in {args.results / 'conformance.jsonl'}")
    for name, verdict in bad.items():
        log = args.results / "logs" / f"{name}.log"
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        shown = [ln.strip() for ln in lines if ln.lstrip().startswith(("[", "replay:"))] or lines[-3:]
        print(f"{verdict}: {name}\n  " + "\n  ".join(shown[-4:]) + f"\n  (log: {log})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
