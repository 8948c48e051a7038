"""Latency metrics users read (vLLM benchmark_serving's set): end-to-end latency mean / p50 / p99, time to first
token, normalized latency (latency per output token, for mixed lengths) and throughput."""
from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(arrivals: list[float], first_tokens: list[float], finishes: list[float], output_lens: list[int]) -> dict:
    """{metric: value} over requests; every list has one entry per request. Sums are exactly rounded (fsum), so a
    metric does not depend on the order the requests are listed in (which may differ between processes)."""
    n = len(arrivals)
    if n == 0 or not (len(first_tokens) == len(finishes) == len(output_lens) == n):
        raise ValueError("summarize needs one arrival, first token, finish and output length per request")
    lat = [f - a for f, a in zip(finishes, arrivals)]
    ttft = [t - a for t, a in zip(first_tokens, arrivals)]
    span = max(finishes) - min(arrivals)
    return {
        "mean_latency_s": math.fsum(lat) / n,
        "p50_latency_s": percentile(lat, 50),
        "p99_latency_s": percentile(lat, 99),
        "mean_ttft_s": math.fsum(ttft) / n,
        "p99_ttft_s": percentile(ttft, 99),
        "mean_norm_latency_s": math.fsum(x / max(o, 1) for x, o in zip(lat, output_lens)) / n,
        "throughput_tok_s": sum(output_lens) / span if span > 0 else float("nan"),
    }


UNITS = {"mean_latency_s": "s", "p50_latency_s": "s", "p99_latency_s": "s", "mean_ttft_s": "s", "p99_ttft_s": "s",
         "mean_norm_latency_s": "s/token", "throughput_tok_s": "tok/s", "decision_overhead_us": "us"}
