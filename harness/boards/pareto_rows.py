"""The rows of the cross-family Pareto page (`harness/boards/pareto_board.py`), one per method and family, from the store.

A panel is a dict: its rows (objectives "acc", "bytes", "lat" with their intervals in row["ci"], None where not
measured, and the table's cells), the table headers, the axes it has (label of each) and the model each axis was
measured on, and one "source" row per axis (suite, metric, unit, model, device, aggregation). Fronts are ranked
only over axes measured on one model (`panel_combos`): a latency of LLaDA-8B shapes is never set against the
accuracy of our tiny dLLM. They are CI-aware (`harness/boards/pareto.py`): accuracy with its bootstrap interval,
bytes within 1%, a single timing within 5%, latencies over seeds with their t-interval. Each builder also returns
the records it used, which the leaderboard links under the board.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict

from harness.boards.page import method_label
from harness.boards.pareto import BYTES_TOLERANCE, TIMING_TOLERANCE, band, ci_front, paired_front
from harness.dllm.board import (ACCURACY_SUITE, THROUGHPUT_SUITE, newest_per_device, throughput_cells, variant_labels,
                                variant_of, variant_order)
from harness.scheduling.board import (ORACLE, OVERHEAD_TASK, headings, policy_order, setting_of, setting_text,
                                      with_device)
from harness.stats import bootstrap_ci, stratified_bootstrap_ci, t_interval
from harness.store import newest_records

KV_SUITES = {"niah": ("exact_match", "NIAH"), "ruler": ("score", "RULER"), "longbench": ("score", "LongBench")}
KV_LATENCY = ("decode_ms_per_token", "compress_ms")
SCHED_SUITE = "scheduling"
SCHED_METRICS = ("mean_latency_s", "p99_latency_s")
SENSES = {"acc": "max", "bytes": "min", "lat": "min"}
PAIRS = (("bytes", "acc"), ("lat", "acc"), ("lat", "bytes"))  # (x, y) of each scatter
ALL = ("acc", "bytes", "lat")
CODES = {("bytes", "acc"): "A×B", ("lat", "acc"): "A×L", ("lat", "bytes"): "B×L", ALL: "all 3"}
FRONT_HEADER = "on the front of"
FRONT_KEY = ("On the front of: A×B accuracy and bytes, A×L accuracy and latency, B×L bytes and latency, all 3 the "
             "three together; — on none (or a value not measured).")
NOT_MEASURED = "not measured"


def _proto(r: dict) -> str:
    return json.dumps(r.get("protocol", {}), sort_keys=True)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _fmt(v: float | None, spec: str) -> str:
    return NOT_MEASURED if v is None else format(v, spec)


def _units(recs: list[dict], metric: str, default: str = "—") -> str:
    return ", ".join(sorted({r["unit"] for r in recs if r["metric"] == metric})) or default


def _devices(recs: list[dict]) -> str:
    return "; ".join(sorted({r["device"] for r in recs})) or "—"


def holding(value: float, lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) widened, if rounding left it so, to hold the value."""
    return min(lo, value), max(hi, value)


def with_ci(value: float, lo: float, hi: float, spec: str = ".1f") -> str:
    return f"{value:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def panel_combos(models: dict[str, str]) -> list[tuple]:
    """The objective sets a panel ranks: each pair of its axes (as PAIRS orders them) and all three, only those whose
    axes were measured on one model."""
    out = [p for p in PAIRS if all(k in models for k in p) and models[p[0]] == models[p[1]]]
    if all(k in models for k in ALL) and len({models[k] for k in ALL}) == 1:
        out.append(ALL)
    return out


def mark_fronts(rows: list[dict], combos=(*PAIRS, ALL)) -> None:
    """row["fronts"][combo]: whether the row is on the CI-aware Pareto front of those objectives among the rows that
    have them all (intervals from row["ci"], exact where a row has none); None when the row lacks one of them."""
    for combo in combos:
        have = [i for i, r in enumerate(rows) if all(r.get(k) is not None for k in combo)]
        points = [[rows[i][k] for k in combo] for i in have]
        intervals = [[(rows[i].get("ci") or {}).get(k) or (rows[i][k], rows[i][k]) for k in combo] for i in have]
        on = {have[j] for j in ci_front(points, intervals, [SENSES[k] for k in combo])}
        for i, r in enumerate(rows):
            r.setdefault("fronts", {})[combo] = (i in on) if i in have else None


def front_cell(row: dict, combos) -> str:
    """The table cell naming the fronts a row is on (CODES), or —."""
    return ", ".join(CODES[c] for c in combos if row["fronts"].get(c)) or "—"


def timing_reliable(record: dict) -> bool:
    """False for a timing measured while the machine had more runnable tasks than cores (harness/cpu_load.py);
    records from before that was measured count as reliable."""
    return (record.get("extra") or {}).get("load", {}).get("reliable") is not False


def _positive(value: float, lo: float, hi: float) -> tuple[float, float]:
    """A latency's interval, held above 0 (a symmetric t-interval of few seeds may reach below)."""
    lo, hi = holding(value, lo, hi)
    return max(0.0, lo), hi


def _interval(values: list[float], tolerance: float) -> tuple[float, float]:
    """A bootstrap CI of the mean of several values; a band around a single one."""
    mean = sum(values) / len(values)
    return holding(mean, *bootstrap_ci(values)) if len(values) > 1 else band(mean, tolerance)


# ---------------------------------------------------------------- KV compression
def _kv_row(label: str, m: dict, metric: str, lat_device: str | None) -> tuple[dict, int]:
    """One method's row from its records by metric; also how many timings an oversubscribed CPU cost it."""
    acc = [100 * r["value"] for r in m[metric]]
    kv, full = [r["value"] for r in m["kv_bytes"]], [r["value"] for r in m["kv_bytes_full"]]
    timed = [r for r in m["decode_ms_per_token"] if r["device"] == lat_device]
    dec = [r["value"] for r in timed if timing_reliable(r)]
    comp = [r["value"] for r in m["compress_ms"] if r["device"] == lat_device and timing_reliable(r)]
    pct = 100 * sum(kv) / sum(full) if kv and sum(full) else None
    a, lat = _mean(acc), _mean(dec)
    ci = {"acc": holding(a, *bootstrap_ci(acc))}
    if pct is not None:
        ci["bytes"] = band(pct, BYTES_TOLERANCE)
    if lat is not None:
        ci["lat"] = _interval(dec, TIMING_TOLERANCE)
    elsewhere = not timed and m["decode_ms_per_token"]
    lat_text = (with_ci(lat, *ci["lat"], ".3g") if lat is not None else
                "timed on another device" if elsewhere else NOT_MEASURED)
    row = {"label": label, "acc": a, "bytes": pct, "lat": lat, "ci": ci, "cols": [
        label, with_ci(a, *ci["acc"]), f"{len(acc)} ({len(dec)})", _fmt(_mean(kv) / 2**20 if kv else None, ".2f"),
        _fmt(pct, ".1f"), lat_text, _fmt(_mean(comp), ".4g")]}
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
            setting = (r["model"], bool(r["params"].get("question_aware")), _proto(r))
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
            acc_devices = _devices([r for r in mine if r["metric"] == metric])
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
                    ["accuracy", suite, metric, _units(mine, metric) + " (x100)", model, acc_devices,
                     "mean over the row's cells; 95% bootstrap CI"],
                    ["bytes", suite, "kv_bytes, kv_bytes_full", _units(mine, "kv_bytes"), model, acc_devices,
                     "Σ kv_bytes / Σ kv_bytes_full; within 1% counts as equal"],
                    ["latency", suite, "decode_ms_per_token (ranked), compress_ms", "ms", model, lat_device or "—",
                     "mean over the timed cells; 95% bootstrap CI" if lat_device else
                     "not measured: these records predate the metrics"]]})
    return panels, used


# ---------------------------------------------------------------- dLLM decoding
def pick_throughput(groups: dict) -> tuple | None:
    """((device, model, protocol), prompt length) with the most variants measured; ties: longer prompt, then name."""
    counts = defaultdict(set)
    for key, cells in groups.items():
        for (v, L), c in cells.items():
            if not c["status"] and "tokens_per_s" in c["metrics"]:
                counts[(key, L)].add(v[:3])
    return max(counts, key=lambda k: (len(counts[k]), k[1], k[0]), default=None)


def _accuracy_panel(acc: list[dict]) -> dict | None:
    """Our trained dLLM: accuracy (stratified bootstrap over each cell's examples) x peak cache bytes."""
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for r in acc:
        cells[variant_of(r)[:3]][r["metric"]].append(r)
    variants = sorted((v for v in cells if cells[v]["accuracy"]), key=lambda v: variant_order((*v, False)))
    if not variants:
        return None
    labels, _ = variant_labels([(*v, False) for v in variants])
    n_max = max(len(cells[v]["accuracy"]) for v in variants)
    rows = []
    for v in variants:
        accs = cells[v]["accuracy"]
        a = _mean([r["value"] for r in accs])
        strata = [[100.0 * bool(x) for x in (r.get("extra") or {}).get("correct") or []] or [r["value"]] for r in accs]
        ci = {"acc": holding(a, *stratified_bootstrap_ci(strata))}
        b = _mean([r["value"] / 2**20 for r in cells[v]["cache_bytes_peak"]])
        if b is not None:
            ci["bytes"] = band(b, BYTES_TOLERANCE)
        part = f" ({len(accs)} of {n_max} cells)" if len(accs) < n_max else ""
        rows.append({"label": labels[(*v, False)], "acc": a, "bytes": b, "lat": None, "ci": ci,
                     "cols": [labels[(*v, False)], with_ci(a, *ci["acc"]) + part, _fmt(b, ".1f")]})
    models = ", ".join(sorted({r["model"] for r in acc}))
    axes = {"acc": "accuracy (%)", "bytes": "cache MiB (peak)"}
    combos = panel_combos({k: models for k in axes})
    mark_fronts(rows, combos)
    return {"family": "dLLM decoding", "title": f"dLLM decoding, accuracy × cache: {models}", "short": "dLLM accuracy",
            "rows": rows, "combos": combos, "axes": axes, "models": {k: models for k in axes},
            "caption": "Our small trained dLLM (suite dllm): exact match on held-out examples, mean over the task x "
                       "length cells with a 95% bootstrap interval (examples resampled within each cell), and the "
                       "peak bytes the method's cache held (vanilla holds none).",
            "headers": ["method", "accuracy % [95% CI]", "cache MiB (peak, mean)", FRONT_HEADER],
            "sources": [["accuracy", ACCURACY_SUITE, "accuracy", _units(acc, "accuracy"), models, _devices(acc),
                         "mean over the variant's task x length cells; stratified bootstrap CI"],
                        ["bytes", ACCURACY_SUITE, "cache_bytes_peak", "MiB", models, _devices(acc),
                         "mean over the same cells; within 1% counts as equal"]]}


def _speed_panel(records: list[dict]) -> tuple[dict | None, list[dict]]:
    """LLaDA-8B shapes with random weights at the (device, prompt length) with the most variants: ms per token x
    peak memory, both of that one run."""
    groups = throughput_cells(records)
    pick = pick_throughput(groups)
    if not pick:
        return None, []
    (device, model, proto), L = pick
    cells = groups[pick[0]]
    tlabels, _ = variant_labels(sorted({v for v, _ in cells}))
    best: dict[tuple, tuple] = {}  # variant -> (tokens/s, peak GiB, its throughput cell's label, full variant)
    for (v, n), c in cells.items():
        tps = c["metrics"].get("tokens_per_s")
        if n == L and not c["status"] and tps and (v[:3] not in best or tps > best[v[:3]][0]):
            best[v[:3]] = (tps, c["metrics"].get("peak_mem_gib"), tlabels[v], v)
    variants = sorted(best, key=lambda v: variant_order((*v, False)))
    labels, _ = variant_labels([(*v, False) for v in variants])
    rows = []
    for v in variants:
        tps, mem, cell_label, _ = best[v]
        lat = 1000 / tps
        ci = {"lat": band(lat, TIMING_TOLERANCE)}
        if mem is not None:
            ci["bytes"] = band(mem, BYTES_TOLERANCE)
        rows.append({"label": labels[(*v, False)], "acc": None, "bytes": mem, "lat": lat, "ci": ci,
                     "cols": [labels[(*v, False)], f"{lat:.1f}", f"{tps:.2f}", _fmt(mem, ".2f"), cell_label]})
    chosen = {b[3] for b in best.values()}
    used = [r for r in newest_per_device(records, THROUGHPUT_SUITE) if r["device"] == device and r["model"] == model
            and _proto(r) == proto and r["metric"] in ("tokens_per_s", "peak_mem_gib")
            and int(r["params"].get("prompt_len", 0)) == L and variant_of(r) in chosen]
    axes = {"bytes": "peak memory (GiB, weights included)", "lat": "ms per generated token"}
    combos = panel_combos({k: model for k in axes})
    mark_fronts(rows, combos)
    panel = {"family": "dLLM decoding", "title": f"dLLM decoding, speed × memory: {model}, {device}, {L}-token prompt",
             "short": f"dLLM speed @{L}", "rows": rows, "combos": combos, "axes": axes,
             "models": {k: model for k in axes},
             "caption": f"LLaDA-8B shapes with random weights (suite dllm_throughput) on {device} at a {L}-token "
                        f"prompt, the (device, prompt length) with the most variants measured ({len(rows)}); where a "
                        "variant ran with and without CUDA graphs the faster counts. A random-weight model has no "
                        "accuracy: this panel ranks speed and memory only.",
             "headers": ["method", "ms/token", "tokens/s", "peak GiB", "throughput cell", FRONT_HEADER],
             "sources": [["latency", THROUGHPUT_SUITE, "tokens_per_s (ms/token = 1000 / tokens_per_s)",
                          _units(used, "tokens_per_s"), model, device,
                          f"one cell per variant at prompt_len {L}; within 5% counts as equal"],
                         ["bytes", THROUGHPUT_SUITE, "peak_mem_gib", _units(used, "peak_mem_gib"), model, device,
                          "the same cell; within 1% counts as equal"]]}
    return panel, used


def dllm_panels(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Up to two panels, each of one model: accuracy x cache bytes of our trained dLLM, and ms/token x peak memory
    of LLaDA-8B shapes."""
    acc = [r for r in newest_records(records, ACCURACY_SUITE) if r["metric"] in ("accuracy", "cache_bytes_peak")]
    accuracy = _accuracy_panel(acc)
    speed, used = _speed_panel(records)
    return [p for p in (accuracy, speed) if p], (acc if accuracy else []) + used


# ---------------------------------------------------------------- scheduling
def sched_panels(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """One panel per (workload, impl, trace, setting, protocol); one row per (load, policy), values averaged over
    seeds with their t-interval; row["front"]: on the (mean, p99) front of its load, policies compared seed by seed
    (`paired_front`: the same requests), None for the oracle (shown, not ranked)."""
    recs = [r for r in newest_records(records, SCHED_SUITE)
            if r["metric"] in SCHED_METRICS and r["task"] != OVERHEAD_TASK]
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    loads: dict[tuple, float | None] = {}
    mine: dict[tuple, list] = defaultdict(list)
    for r in recs:
        key = (r["task"], r["impl"], r["model"], json.dumps(setting_of(with_device(r["params"], r)), sort_keys=True),
               _proto(r))
        rate = float(r["params"].get("rate", float("nan")))
        groups[key][(rate, r["method"])][r["metric"]][r["params"].get("seed")] = r["value"]
        loads[(key, rate)] = (r.get("extra") or {}).get("load", loads.get((key, rate)))
        mine[key].append(r)
    names = headings(groups)
    panels = []
    for key, points in sorted(groups.items()):
        task, impl, model, setting, proto = key
        rows = []
        for (rate, method), m in sorted(points.items(), key=lambda kv: (kv[0][0], policy_order(kv[0][1]))):
            if not all(m.get(k) for k in SCHED_METRICS):
                continue
            mean, p99 = t_interval(m["mean_latency_s"].values()), t_interval(m["p99_latency_s"].values())
            rows.append({"rate": rate, "load": loads.get((key, rate)), "label": method, "mean": mean[0],
                         "p99": p99[0], "mean_ci": _positive(*mean), "p99_ci": _positive(*p99),
                         "seeds": len(m["mean_latency_s"]), "samples": [m[k] for k in SCHED_METRICS]})
        for rate in sorted({r["rate"] for r in rows}):
            ranked = [r for r in rows if r["rate"] == rate and r["label"] != ORACLE]
            on = {id(ranked[i]) for i in paired_front([r["samples"] for r in ranked], ("min", "min"))}
            for r in rows:
                if r["rate"] == rate:
                    r["front"] = None if r["label"] == ORACLE else id(r) in on
        if not rows:
            continue
        params = json.loads(setting)
        where = f"simulated with the cost model of {params.get('cost_device', '?')}" if impl == "sim" else \
            "executed serving loop"
        rs = mine[key]
        panels.append({
            "family": "Scheduling", "title": f"Scheduling: {names[key]}",
            "setting": f"Trace {model}; {setting_text(params)}", "short": names[key], "rows": rows, "where": where,
            "protocol": proto,
            "sources": [
                ["accuracy", "—", "—", "—", model, "—",
                 "unchanged (lossless): speculative decoding's verification keeps the target model's outputs"],
                ["bytes", "—", "—", "—", "—", "—",
                 "no KV axis: every policy serves the same requests and tokens"],
                ["latency", SCHED_SUITE, ", ".join(SCHED_METRICS), _units(rs, "mean_latency_s"), model, _devices(rs),
                 f"mean over seeds with its 95% t-interval, per load and policy; fronts compare policies seed by "
                 f"seed (paired t-interval); {where}"]]})
    return panels, [r for key in groups for r in mine[key]]

