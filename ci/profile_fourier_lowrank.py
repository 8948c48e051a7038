"""Per-kernel GPU times of the low-rank FlashFourierAttention decode, from the CUDA profiler.

The benchmark's phase times are differences of CUDA-graph timings of phases 1..k, which fold launch gaps and
overlap into whichever phase comes last. This script runs the plan eagerly under `torch.profiler` and reports each
launched kernel's own device time (mean per call over the rotated input sets), their sum, and the same call's
graph-timed latency: the difference is what no kernel accounts for (gaps between launches).

The cases are the tuning script's (`target_case`: LLaMA-3-8B decode shapes, bf16, the paper's period, kept rows
padded to 64 and runs aligned to 8). Timing only: conformance checks the output.

    PYTHONPATH=. python ci/profile_fourier_lowrank.py [--cases 1x32768,8x32768] [--out profile_lowrank.json] \
        [--attrs a_t=True,esplits=8]

`--attrs` sets plan attributes (as the tuning sweep's shapes) on every plan, graph-timed and profiled alike.

With `--ncu-pass` it only runs one warm call per case between cudaProfilerStart/Stop, for Nsight Compute's hardware
counters (each kernel's DRAM bytes and throughput, occupancy, registers):

    PYTHONPATH=. ncu --clock-control none --profile-from-start off --csv --metrics NCU_METRICS \
        python ci/profile_fourier_lowrank.py --cases 8x32768 --ncu-pass
"""
from __future__ import annotations

import argparse
import ast
from collections import defaultdict

import torch
import triton
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from ci.tune_fourier_lowrank import save, shaped_plan, target_case
from harness.gpu_timing import graph_ms
from optimized.fourier_plans import planned

ROUNDS = 5  # profiled passes over the rotated input sets
NCU_METRICS = ",".join((  # what `--ncu-pass` is for
    "gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__warps_active.avg.pct_of_peak_sustained_active", "launch__registers_per_thread", "launch__grid_size",
    "launch__occupancy_limit_registers", "launch__occupancy_limit_shared_mem", "lts__t_sector_hit_rate.pct"))


def ncu_pass(cases: list[str], make) -> None:
    """One warm call per case inside cudaProfilerStart/Stop (the window `ncu --profile-from-start off` profiles)."""
    for case in cases:
        _, _, cache, rot = target_case(case)
        plan = make(**rot.sets[0])
        plan.run()
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStart()
        plan.run()
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()
        del cache, rot, plan


def kernel_times(plans: list, rounds: int = ROUNDS) -> dict[str, dict]:
    """{kernel name: {"calls", "us_per_step"}} of `rounds` passes of plan.run() over `plans`."""
    for plan in plans:  # compiled and warm before the profiler starts
        plan.run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(rounds):
            for plan in plans:
                plan.run()
        torch.cuda.synchronize()
    steps = rounds * len(plans)
    total, calls = defaultdict(float), defaultdict(int)
    for ev in prof.events():
        if ev.device_type == DeviceType.CUDA:
            total[ev.name] += ev.device_time_total
            calls[ev.name] += 1
    return {name: {"calls_per_step": calls[name] / steps, "us_per_step": total[name] / steps}
            for name in sorted(total, key=total.get, reverse=True)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1x32768,8x32768,1x131072")
    ap.add_argument("--out", default=None)
    ap.add_argument("--ncu-pass", action="store_true", help="one profiled call per case for ncu (module docstring)")
    ap.add_argument("--print-ncu-metrics", action="store_true", help="print NCU_METRICS and exit")
    ap.add_argument("--attrs", default="", help="plan attributes NAME=VALUE,... (Python literals)")
    args = ap.parse_args()
    attrs = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in filter(None, args.attrs.split(",")))}
    make = shaped_plan(attrs)
    if args.print_ncu_metrics:
        print(NCU_METRICS)
        return
    if args.ncu_pass:
        ncu_pass(args.cases.split(","), make)
        return
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
              "attrs": attrs, "cases": []}
    for case in args.cases.split(","):
        batch, context, cache, rot = target_case(case)
        graph_us = 1000 * graph_ms(planned(make), rot.sets)
        kernels = kernel_times([make(**x) for x in rot.sets])
        summed = sum(k["us_per_step"] for k in kernels.values())
        result["cases"].append({"batch": batch, "context": context, "graph_us": graph_us, "kernels_us": summed,
                                "kernels": kernels})
        print(f"{case}: graph {graph_us:.1f} us, kernels summed {summed:.1f} us, unaccounted {graph_us - summed:.1f}")
        for name, k in kernels.items():
            print(f"  {k['us_per_step']:8.1f} us  x{k['calls_per_step']:.0f}  {name[:110]}")
        del cache, rot
        save(result, args.out)


if __name__ == "__main__":
    main()
