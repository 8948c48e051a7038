"""The rows of the cross-family Pareto page (`harness/board_pareto.py`), one per method and family, from the store.

Each family measures accuracy, bytes and latency differently; a panel is a dict with its rows (objectives "acc",
"bytes", "lat", None where not measured, and the table's cells), the table headers, the axis labels, and one
"source" row per axis (suite, metric, unit, model, device, aggregation). Each builder also returns the records it
used, which the leaderboard links under the board.
"""
from __future__ import annotations

import json
from collections import defaultdict

from harness.board_dllm import (ACCURACY_SUITE, THROUGHPUT_SUITE, newest_per_device, throughput_cells, variant_labels,
                                variant_of, variant_order)
from harness.board_scheduling import ORACLE, OVERHEAD_TASK, policy_order, setting_of, setting_text, with_device
from harness.pareto import pareto_front
from harness.board_page import method_label
from harness.store import newest_records

KV_SUITES = {"niah": ("exact_match", "NIAH"), "ruler": ("score", "RULER"), "longbench": ("score", "LongBench")}
KV_LATENCY = ("decode_ms_per_token", "compress_ms")
SCHED_SUITE = "scheduling"
SCHED_METRICS = ("mean_latency_s", "p99_latency_s")
SENSES = {"acc": "max", "bytes": "min", "lat": "min"}
PAIRS = (("bytes", "acc"), ("lat", "acc"), ("lat", "bytes"))  # (x, y) of each scatter
ALL = ("acc", "bytes", "lat")
FRONT_HEADERS = ["front acc×bytes", "front acc×latency", "front bytes×latency", "front all three"]
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


def mark_fronts(rows: list[dict], combos=(*PAIRS, ALL)) -> None:
    """row["fronts"][combo]: whether the row is on the Pareto front of those objectives among the rows that have
    them all; None when the row lacks one of them (latency not measured, say)."""
    for combo in combos:
        have = [i for i, r in enumerate(rows) if all(r.get(k) is not None for k in combo)]
        on = {have[j] for j in pareto_front([[rows[i][k] for k in combo] for i in have], [SENSES[k] for k in combo])}
        for i, r in enumerate(rows):
            r.setdefault("fronts", {})[combo] = (i in on) if i in have else None


def timing_reliable(record: dict) -> bool:
    """False for a timing measured while the machine had more runnable tasks than cores (harness/cpu_load.py);
    records from before that was measured count as reliable."""
    return (record.get("extra") or {}).get("load", {}).get("reliable") is not False


def front_cells(row: dict) -> list[str]:
    return ["n/a" if v is None else "yes" if v else "no" for v in (row["fronts"][c] for c in (*PAIRS, ALL))]


# ---------------------------------------------------------------- KV compression
def kv_panels(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """One panel per (suite, model, device, question mode, protocol); one row per (method, compression ratio, impl)."""
    panels, used = [], []
    for suite, (metric, name) in KV_SUITES.items():
        recs = [r for r in newest_records(records, suite)
                if r["metric"] in (metric, "kv_bytes", "kv_bytes_full", *KV_LATENCY)]
        groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        for r in recs:
            setting = (r["model"], r["device"], bool(r["params"].get("question_aware")), _proto(r))
            groups[setting][(method_label(r), r["params"].get("compression_ratio"), r["impl"])][r["metric"]].append(r)
        protos = defaultdict(set)
        for model, device, qa, proto in groups:
            protos[(model, device, qa)].add(proto)
        for (model, device, qa, proto), by_row in sorted(groups.items()):
            by_row = {k: m for k, m in by_row.items() if metric in m}  # no accuracy, no row
            if not by_row:
                continue
            ratios, impls = {k[1] for k in by_row}, {k[2] for k in by_row}
            rows = []
            for (method, ratio, impl), m in by_row.items():
                vals = {k: [r["value"] for r in m[k] if k not in KV_LATENCY or timing_reliable(r)]
                        for k in (metric, "kv_bytes", "kv_bytes_full", *KV_LATENCY)}
                n, kv, full = len(vals[metric]), vals["kv_bytes"], vals["kv_bytes_full"]
                dec = vals["decode_ms_per_token"]
                pct = 100 * sum(kv) / sum(full) if kv and sum(full) else None
                acc = 100 * _mean(vals[metric])
                dropped = len(m["decode_ms_per_token"]) - len(dec)
                part = (f" ({len(dec)} of {n} cells" + (f"; {dropped} on an oversubscribed CPU left out" if dropped else "")
                        + ")") if dec and len(dec) < n or dropped else ""
                label = method + (f" @{ratio}" if len(ratios) > 1 else "") + (f" [{impl}]" if len(impls) > 1 else "")
                rows.append({"label": label, "acc": acc, "bytes": pct, "lat": _mean(dec), "cols": [
                    method, ratio, impl, f"{acc:.1f}", n, _fmt(_mean(kv) / 2**20 if kv else None, ".2f"),
                    _fmt(pct, ".1f"),
                    _fmt(_mean(dec), ".3g") + part, _fmt(_mean(vals["compress_ms"]), ".4g")]})
            rows.sort(key=lambda r: (-r["acc"], r["bytes"] if r["bytes"] is not None else float("inf"), r["label"]))
            mark_fronts(rows)
            mine = [r for m in by_row.values() for rs in m.values() for r in rs]
            used += mine
            lat = [r for r in mine if r["metric"] in KV_LATENCY]
            mode = "question-aware" if qa else "question-agnostic"
            title = f"{name}: {model}, {mode}, {device}"
            if len(protos[(model, device, qa)]) > 1:
                title += f", protocol {proto}"
            panels.append({
                "family": "KV compression", "title": title, "short": f"{name}: {model}, {mode}", "rows": rows,
                "headers": ["method", "compression ratio", "impl", "accuracy %", "cells", "KV MiB (mean)",
                            "KV % of full", "decode ms/token", "compress ms", *FRONT_HEADERS],
                "axes": {"acc": f"{name} accuracy (%)", "bytes": "KV bytes held (% of full cache)",
                         "lat": "decode ms per generated token"},
                "sources": [
                    ["accuracy", suite, metric, _units(mine, metric) + " (x100)", model, device,
                     "mean over the row's cells"],
                    ["bytes", suite, "kv_bytes, kv_bytes_full", _units(mine, "kv_bytes"), model, device,
                     "mean kv_bytes; the front uses Σ kv_bytes / Σ kv_bytes_full"],
                    ["latency", suite, "decode_ms_per_token (the front's), compress_ms",
                     _units(lat, "decode_ms_per_token", "ms"), model, _devices(lat) if lat else device,
                     "mean over the cells that have it" if lat else
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


def dllm_panel(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """One panel, one row per method variant (method, impl, params such as keep_ratio)."""
    acc = [r for r in newest_records(records, ACCURACY_SUITE) if r["metric"] in ("accuracy", "cache_bytes_peak")]
    groups = throughput_cells(records)
    pick = pick_throughput(groups)
    speed, tp_used = {}, []  # variant -> (tokens/s, the throughput cell's label)
    if pick:
        (device, tp_model, tp_proto), L = pick
        cells = groups[pick[0]]
        tlabels, _ = variant_labels(sorted({v for v, _ in cells}))
        for (v, n), c in cells.items():
            tps = c["metrics"].get("tokens_per_s")
            if n == L and not c["status"] and tps and (v[:3] not in speed or tps > speed[v[:3]][0]):
                speed[v[:3]] = (tps, tlabels[v], v)
        chosen = {s[2] for s in speed.values()}
        tp_used = [r for r in newest_per_device(records, THROUGHPUT_SUITE) if r["device"] == device
                   and r["model"] == tp_model and _proto(r) == tp_proto and r["metric"] == "tokens_per_s"
                   and int(r["params"].get("prompt_len", 0)) == L and variant_of(r) in chosen]
    if not acc and not speed:
        return [], []
    by_variant: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for r in acc:
        by_variant[variant_of(r)[:3]][r["metric"]].append(r["value"])
    variants = sorted(set(by_variant) | set(speed), key=lambda v: variant_order((*v, False)))
    labels, _ = variant_labels([(*v, False) for v in variants])
    n_max = max((len(m["accuracy"]) for m in by_variant.values()), default=0)
    rows = []
    for v in variants:
        m, s, label = by_variant.get(v, {}), speed.get(v), labels[(*v, False)]
        a, b, n = _mean(m.get("accuracy", [])), _mean(m.get("cache_bytes_peak", [])), len(m.get("accuracy", []))
        part = f" ({n} of {n_max} cells)" if a is not None and n < n_max else ""
        rows.append({"label": label.replace(" (", "\n("), "acc": a, "bytes": b, "lat": 1000 / s[0] if s else None,
                     "cols": [label, _fmt(a, ".1f") + part,
                              _fmt(None if b is None else b / 2**20, ".1f"), _fmt(1000 / s[0] if s else None, ".1f"),
                              _fmt(s[0] if s else None, ".2f"), s[1] if s else "—"]})
    mark_fronts(rows)
    models = ", ".join(sorted({r["model"] for r in acc})) or "—"
    caption = ("Accuracy and cache bytes come from our tiny trained dLLM (suite dllm, exact match on held-out "
               "examples); latency comes from LLaDA-8B shapes with random weights (suite dllm_throughput). They are "
               "different models: the page sets them side by side per method variant.")
    if pick:
        caption += (f" Latency: {device}, {L}-token prompt, the (device, prompt length) with the most variants "
                    f"measured ({len(speed)}); where a variant ran with and without CUDA graphs the faster counts "
                    "(\"graphs\" in its throughput cell).")
    panel = {
        "family": "dLLM decoding", "title": f"dLLM decoding: {models} (accuracy, bytes), "
                                            f"{pick[0][1] if pick else '—'} (latency)",
        "short": "dLLM decoding", "caption": caption, "rows": rows, "bytes_scale": 2**-20,
        "headers": ["method", "accuracy %", "cache MiB (peak, mean)", "ms/token", "tokens/s", "throughput cell",
                    *FRONT_HEADERS],
        "axes": {"acc": "accuracy (%)", "bytes": "cache MiB (peak)", "lat": "ms per generated token"},
        "sources": [
            ["accuracy", ACCURACY_SUITE, "accuracy", _units(acc, "accuracy"), models, _devices(acc),
             "mean over the variant's task x length cells"],
            ["bytes", ACCURACY_SUITE, "cache_bytes_peak", _units(acc, "cache_bytes_peak"), models, _devices(acc),
             "mean over the same cells (vanilla holds no cache: 0)"],
            ["latency", THROUGHPUT_SUITE, "tokens_per_s (ms/token = 1000 / tokens_per_s)",
             _units(tp_used, "tokens_per_s"), pick[0][1] if pick else "—", pick[0][0] if pick else "—",
             f"one cell per variant at prompt_len {L}" if pick else NOT_MEASURED]]}
    return [panel], acc + tp_used


# ---------------------------------------------------------------- scheduling
def sched_panels(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """One panel per (workload, impl, trace, setting, protocol); one row per (rate, policy), values averaged over
    seeds; row["front"]: on the (mean, p99) front of its rate, None for the oracle (shown, not ranked)."""
    recs = [r for r in newest_records(records, SCHED_SUITE)
            if r["metric"] in SCHED_METRICS and r["task"] != OVERHEAD_TASK]
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    mine: dict[tuple, list] = defaultdict(list)
    for r in recs:
        key = (r["task"], r["impl"], r["model"], json.dumps(setting_of(with_device(r["params"], r)), sort_keys=True), _proto(r))
        groups[key][(float(r["params"].get("rate", float("nan"))), r["method"])][r["metric"]].append(r["value"])
        mine[key].append(r)
    panels = []
    for key, points in sorted(groups.items()):
        task, impl, model, setting, proto = key
        rows = []
        for (rate, method), m in sorted(points.items(), key=lambda kv: (kv[0][0], policy_order(kv[0][1]))):
            if not all(m.get(k) for k in SCHED_METRICS):
                continue
            rows.append({"rate": rate, "label": method, "mean": _mean(m["mean_latency_s"]),
                         "p99": _mean(m["p99_latency_s"]), "seeds": len(m["mean_latency_s"])})
        for rate in sorted({r["rate"] for r in rows}):
            ranked = [r for r in rows if r["rate"] == rate and r["label"] != ORACLE]
            on = {id(ranked[i]) for i in pareto_front([(r["mean"], r["p99"]) for r in ranked], ("min", "min"))}
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
            "family": "Scheduling", "title": f"Scheduling: {task} ({impl}), trace {model}, {setting_text(params)}",
            "short": f"{task} ({impl})", "rows": rows, "where": where, "protocol": proto,
            "sources": [
                ["accuracy", "—", "—", "—", model, "—",
                 "unchanged (lossless): speculative decoding's verification keeps the target model's outputs"],
                ["bytes", "—", "—", "—", "—", "—",
                 "no KV axis: every policy serves the same requests and tokens"],
                ["latency", SCHED_SUITE, ", ".join(SCHED_METRICS), _units(rs, "mean_latency_s"), model, _devices(rs),
                 f"mean over seeds, per rate and policy; {where}"]]})
    return panels, [r for key in groups for r in mine[key]]
