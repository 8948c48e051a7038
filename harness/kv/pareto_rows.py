"""The KV-cache family's rows of the cross-family Pareto page (`harness/boards/pareto_board.py`): one panel per
suite (NIAH, RULER, LongBench), model, question mode and protocol; one row per method, compression ratio and impl
(accuracy with its bootstrap interval, KV bytes as % of the full cache, decode latency)."""
from __future__ import annotations

from collections import Counter, defaultdict

from harness.boards.page import method_label
from harness.boards.pareto import BYTES_TOLERANCE, TIMING_TOLERANCE, band
from harness.boards.pareto_rows import (FRONT_HEADER, NOT_MEASURED, devices_of, fmt_measured, holding, mark_fronts,
                                        mean_of, panel_combos, protocol_key, timing_reliable, units_of, with_ci)
from harness.stats import bootstrap_ci
from harness.store import newest_records

KV_SUITES = {"niah": ("exact_match", "NIAH"), "ruler": ("score", "RULER"), "longbench": ("score", "LongBench")}
KV_LATENCY = ("decode_ms_per_token", "compress_ms")


def _interval(values: list[float], tolerance: float) -> tuple[float, float]:
    """A bootstrap CI of the mean of several values; a band around a single one."""
    mean = sum(values) / len(values)
    return holding(mean, *bootstrap_ci(values)) if len(values) > 1 else band(mean, tolerance)


def _kv_row(label: str, m: dict, metric: str, lat_device: str | None) -> tuple[dict, int]:
    """One method's row from its records by metric; also how many timings an oversubscribed CPU cost it."""
    acc = [100 * r["value"] for r in m[metric]]
    kv, full = [r["value"] for r in m["kv_bytes"]], [r["value"] for r in m["kv_bytes_full"]]
    timed = [r for r in m["decode_ms_per_token"] if r["device"] == lat_device]
    dec = [r["value"] for r in timed if timing_reliable(r)]
    comp = [r["value"] for r in m["compress_ms"] if r["device"] == lat_device and timing_reliable(r)]
    pct = 100 * sum(kv) / sum(full) if kv and sum(full) else None
    a, lat = mean_of(acc), mean_of(dec)
    ci = {"acc": holding(a, *bootstrap_ci(acc))}
    if pct is not None:
        ci["bytes"] = band(pct, BYTES_TOLERANCE)
    if lat is not None:
        ci["lat"] = _interval(dec, TIMING_TOLERANCE)
    elsewhere = not timed and m["decode_ms_per_token"]
    lat_text = (with_ci(lat, *ci["lat"], ".3g") if lat is not None else
                "timed on another device" if elsewhere else NOT_MEASURED)
    row = {"label": label, "acc": a, "bytes": pct, "lat": lat, "ci": ci, "cols": [
        label, with_ci(a, *ci["acc"]), f"{len(acc)} ({len(dec)})",
        fmt_measured(mean_of(kv) / 2**20 if kv else None, ".2f"), fmt_measured(pct, ".1f"), lat_text,
        fmt_measured(mean_of(comp), ".4g")]}
    return row, len(timed) - len(dec)


def kv_panels(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """One panel per (suite, model, question mode, protocol), whatever device measured the accuracy (a KV method's
    output does not depend on it); latency from the device that timed the most rows, "timed on another device" for
    the others. One row per (method, compression ratio, impl)."""
    panels, used = [], []
    for suite, (metric, name) in KV_SUITES.items():
        recs = [r for r in newest_records(records, suite)
                if r["metric"] in (metric, "kv_bytes", "kv_bytes_full", *KV_LATENCY)]
        groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        for r in recs:
            setting = (r["model"], bool(r["params"].get("question_aware")), protocol_key(r))
            groups[setting][(method_label(r), r["params"].get("compression_ratio"), r["impl"])][r["metric"]].append(r)
        protos = Counter((model, qa) for model, qa, _ in groups)
        for (model, qa, proto), by_row in sorted(groups.items()):
            by_row = {k: m for k, m in by_row.items() if metric in m}  # no accuracy, no row
            if not by_row:
                continue
            timers = Counter()
            for m in by_row.values():
                timers.update({r["device"] for r in m["decode_ms_per_token"]})
            lat_device = min(timers, key=lambda d: (-timers[d], d)) if timers else None
            ratios, impls = {k[1] for k in by_row}, {k[2] for k in by_row}
            rows, dropped = [], 0
            for (method, ratio, impl), m in by_row.items():
                label = method + (f" @{ratio}" if len(ratios) > 1 else "") + (f" [{impl}]" if len(impls) > 1 else "")
                row, n = _kv_row(label, m, metric, lat_device)
                rows.append(row)
                dropped += n
            rows.sort(key=lambda r: (-r["acc"], r["bytes"] if r["bytes"] is not None else float("inf"), r["label"]))
            mine = [r for m in by_row.values() for rs in m.values() for r in rs]
            used += mine
            acc_devices = devices_of([r for r in mine if r["metric"] == metric])
            axes = {"acc": f"{name} accuracy (%)", "bytes": "KV bytes held (% of full cache)"}
            if any(r["lat"] is not None for r in rows):
                axes["lat"] = "decode ms per generated token"
            combos = panel_combos({k: model for k in axes})
            mark_fronts(rows, combos)
            mode = "question-aware" if qa else "question-agnostic"
            title = f"{name}: {model}, {mode}" + (f", protocol {proto}" if protos[(model, qa)] > 1 else "")
            caption = (f"Compression ratio {', '.join(map(str, sorted(ratios, key=str)))}, attention "
                       f"{', '.join(sorted(impls))}. Cells (timed): the cells averaged, and how many of them have a "
                       f"decode timing" + (f" on {lat_device}" if lat_device else "") + "."
                       + (f" {dropped} timings taken while the CPU was oversubscribed are left out." if dropped else ""))
            panels.append({
                "family": "KV compression", "title": title, "short": f"{name}: {model}, {mode}", "rows": rows,
                "caption": caption, "combos": combos, "axes": axes, "models": {k: model for k in axes},
                "headers": ["method", "accuracy % [95% CI]", "cells (timed)", "KV MiB (mean)", "KV % of full",
                            "decode ms/token [95% CI]", "compress ms", FRONT_HEADER],
                "sources": [
                    ["accuracy", suite, metric, units_of(mine, metric) + " (x100)", model, acc_devices,
                     "mean over the row's cells; 95% bootstrap CI"],
                    ["bytes", suite, "kv_bytes, kv_bytes_full", units_of(mine, "kv_bytes"), model, acc_devices,
                     "Σ kv_bytes / Σ kv_bytes_full; within 1% counts as equal"],
                    ["latency", suite, "decode_ms_per_token (ranked), compress_ms", "ms", model, lat_device or "—",
                     "mean over the timed cells; 95% bootstrap CI" if lat_device else
                     "not measured: these records predate the metrics"]]})
    return panels, used
