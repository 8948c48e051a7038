"""The scheduling family's rows of the cross-family Pareto page (`harness/boards/pareto_board.py`): one panel per
workload, impl, trace, setting and protocol; one row per load and policy, mean and p99 latency over seeds with their
t-intervals, fronts compared seed by seed."""
from __future__ import annotations

import json
from collections import defaultdict

from harness.boards.pareto import paired_front
from harness.boards.pareto_rows import devices_of, holding, protocol_key, units_of
from harness.scheduling.board import (ORACLE, OVERHEAD_TASK, headings, policy_order, setting_of, setting_text,
                                      with_device)
from harness.stats import t_interval
from harness.store import newest_records

SCHED_SUITE = "scheduling"
SCHED_METRICS = ("mean_latency_s", "p99_latency_s")


def _positive(value: float, lo: float, hi: float) -> tuple[float, float]:
    """A latency's interval, held above 0 (a symmetric t-interval of few seeds may reach below)."""
    lo, hi = holding(value, lo, hi)
    return max(0.0, lo), hi


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
               protocol_key(r))
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
                ["latency", SCHED_SUITE, ", ".join(SCHED_METRICS), units_of(rs, "mean_latency_s"), model, devices_of(rs),
                 f"mean over seeds with its 95% t-interval, per load and policy; fronts compare policies seed by "
                 f"seed (paired t-interval); {where}"]]})
    return panels, [r for key in groups for r in mine[key]]
