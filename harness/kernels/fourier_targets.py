"""The FlashFourierAttention kernels' speed targets, checked on kernel-benchmark records of one run.

Targets (LLaMA-3-8B decode shapes, docs/fourier-attention.md): against SDPA-flash on the full cache, measured in the same
run on the same device, a coefficient-space kernel (the spectral, token-major and low-rank ones) is not slower at 1 x 4k,
>= 2x faster at 1 x 32k and 8 x 32k and >= 2.5x faster at 1 x 128k; at 1 x 128k and 8 x 32k it moves the bytes of
its cache at >= 85% of the copy bandwidth measured in that run. Rows are built from records only, one per kernel and
cell: of the runs at the newest commit that measured the cell, the median one by speedup (the lower middle of an even
count), with the speedups of all of them beside it, so one fast or slow run does not decide a verdict alone.
"""
from __future__ import annotations

SHAPE = "llama3-8b"
SPEEDUP = {(1, 4096): 1.0, (1, 32768): 2.0, (8, 32768): 2.0, (1, 131072): 2.5}  # (batch, context) -> x vs SDPA
ROOFLINE = {(1, 131072): 0.85, (8, 32768): 0.85}  # fraction of the copy bandwidth on the bytes read
SPECTRAL, TILES = ("fourier_decode_attention", "triton_spectral"), ("fourier_decode_attention", "triton_tiles")
LOWRANK = ("fourier_decode_attention", "triton_lowrank")
REBUILD, SDPA = ("fourier_decode_attention", "triton"), ("sdpa_flash", "torch-sdpa-flash")
# The kernels with targets: their name in the table, and their phases (in launch order) with short labels.
KERNELS = {
    SPECTRAL: ("spectral", (("query_spectrum", "z"), ("irfft", "irfft"), ("stream", "stream"), ("probabilities", "p"),
                            ("rfft", "rfft"), ("output", "out"))),
    TILES: ("token-major", (("query_spectrum", "z"), ("fused", "fused"), ("spectrum_merge", "merge"),
                            ("output", "out"))),
    LOWRANK: ("low-rank", (("query_spectrum", "z"), ("score_blocks", "A"), ("stream", "stream"), ("spectrum", "F"),
                           ("output", "out"))),
}
HEADERS = ["device", "dtype", "kernel", "cache", "batch x context", "SDPA µs", "Fourier µs", "rebuild µs",
           "speedup vs SDPA", "speedup target", "runs at the commit", "% of copy bw", "bandwidth target",
           "phases µs"]


def cache_variant(params: dict) -> str:
    """The Fourier cache a record measured: its period mode, and the heads' kept-run alignment when set."""
    align = params.get("kept_align", 1)
    return params.get("period", "span") + (f", runs aligned to {align}" if align != 1 else "")


def _latest(records: list[dict]) -> dict:
    """{(device, dtype, run, batch, context, kernel, cache): {metric: record}} for the target shape, newest last
    (cache: `cache_variant`, "" for SDPA)."""
    out: dict = {}
    for r in sorted(records, key=lambda r: r["time"]):
        p = r.get("params", {})
        if r["suite"] != "kernels_bench" or r["model"] != SHAPE or (r["task"], r["impl"]) not in (*KERNELS, REBUILD, SDPA):
            continue
        key = (r["device"], p.get("dtype"), (r.get("extra") or {}).get("run"), p.get("batch"), p.get("context"),
               (r["task"], r["impl"]), "" if (r["task"], r["impl"]) == SDPA else cache_variant(p))
        out.setdefault(key, {})[r["metric"]] = r
    return out


def ratio_text(x: float, target: float) -> str:
    """x as "1.91x"; with a third decimal where two would round a miss up to the target or a pass down below it
    (350.2 / 175.2 = 1.999x, not 2.00x beside a MISS)."""
    text = f"{x:.2f}x"
    if (x >= target) != (round(x, 2) >= target):
        text = f"{x:.3f}x" if (x >= target) == (round(x, 3) >= target) else f"{x:.4f}x"
    return text


def _median_run(runs: list[tuple]) -> tuple[tuple, list[float]]:
    """Of (run, metrics, sdpa, kernel) tuples, those at the commit of the newest run: the one of median speedup (the
    lower middle of an even count) and every one's speedup, ascending."""
    sha = max(runs, key=lambda r: r[0] or "")[1]["latency_ms"].get("git_sha")
    same = sorted(((r[2]["value"] / r[1]["latency_ms"]["value"], r[0] or "", r) for r in runs
                   if r[1]["latency_ms"].get("git_sha") == sha), key=lambda t: t[:2])
    return same[(len(same) - 1) // 2][2], [t[0] for t in same]


def runs_text(speedups: list[float], target: float) -> str:
    """"1 run", or "3 runs: 1.99-2.03x (2 pass)" with each end as `ratio_text` writes it."""
    if len(speedups) == 1:
        return "1 run"
    passes = sum(x >= target for x in speedups)
    return (f"{len(speedups)} runs: {ratio_text(speedups[0], target)}-{ratio_text(speedups[-1], target)}"
            f" ({passes} pass)")


def target_rows(records: list[dict]) -> list[list[str]]:
    """One row per (device, dtype, kernel, cache variant, batch x context) with a target, from the runs that measured
    both SDPA and that kernel there at the newest such run's commit (`_median_run`); empty when no run did."""
    cells = _latest(records)
    found: dict = {}
    for (device, dtype, run, batch, context, kernel, cache), metrics in cells.items():
        if kernel not in KERNELS or (batch, context) not in SPEEDUP or "latency_ms" not in metrics:
            continue
        sdpa = cells.get((device, dtype, run, batch, context, SDPA, ""), {}).get("latency_ms")
        if sdpa is None:
            continue
        found.setdefault((device, dtype, KERNELS[kernel][0], cache, batch, context), []).append(
            (run, metrics, sdpa, kernel))
    rows = []
    for (device, dtype, name, cache, batch, context), runs in sorted(found.items(), key=lambda kv: str(kv[0])):
        (run, metrics, sdpa, kernel), speedups = _median_run(runs)
        ms = metrics["latency_ms"]["value"]
        rebuild = cells.get((device, dtype, run, batch, context, REBUILD, cache), {}).get("latency_ms")
        speedup = sdpa["value"] / ms
        frac = metrics.get("roofline_fraction", {}).get("value") if "roofline_fraction" in metrics else None
        phases = metrics["latency_ms"].get("extra", {}).get("phase_ms") or {}
        need_x, need_bw = SPEEDUP[(batch, context)], ROOFLINE.get((batch, context))
        rows.append([device, dtype, name, cache, f"{batch} x {context // 1024}k", f"{1000 * sdpa['value']:.1f}",
                     f"{1000 * ms:.1f}", f"{1000 * rebuild['value']:.0f}" if rebuild else "—",
                     ratio_text(speedup, need_x),
                     f"≥ {need_x:g}x {'pass' if speedup >= need_x else 'MISS'}", runs_text(speedups, need_x),
                     f"{100 * frac:.0f}%" if frac is not None else "—",
                     (f"≥ {100 * need_bw:.0f}% {'pass' if frac is not None and frac >= need_bw else 'MISS'}"
                      if need_bw else "—"),
                     ", ".join(f"{label} {1000 * phases[k]:.1f}" for k, label in KERNELS[kernel][1] if k in phases)
                     or "—"])
    return rows
