"""The schedulers board: speculative-decoding request scheduling (suite "scheduling"), LAPS-SD against its baselines.

LAPS-SD: Li, Chen, Li, "Semi-Clairvoyant Scheduling of Speculative Decoding Requests to Minimize LLM Inference
Latency", arXiv 2505.17074 (IJCAI 2025). Records (one per metric and cell, written by the scheduling suite):
task = workload (or "decision-overhead"), method = policy, impl = "sim" (discrete-event simulator) or "real"
(executed serving loop), model = acceptance-trace source, params = {rate, n_requests, max_batch, draft_len, seed,
cost_device, ...}. The "mean_latency_s" record carries extra = {"latencies": [...], "ttfts": [...]} for the CDFs.
"""
from __future__ import annotations

import html
import json
import math
from collections import defaultdict
import numpy as np
from matplotlib.ticker import FuncFormatter

from harness.boards.page import Board, add_figure, add_heading, add_table, add_text, add_warning, fig_png, plt
from harness.stats import t_interval
from harness.store import key_device, newest_records
from reference.scheduling.policies import policy_names

BASELINES = ("fcfs", "sjf_predicted", "las_mlfq")  # non-clairvoyant: the ones LAPS-SD must beat
PAIRED_REFS = ("fcfs", "sjf_predicted", "las_mlfq", "srpt_oracle")  # columns of the paired-ratio table
# What each workload's acceptance comes from (params["acceptance"]); the board says it in every heading.
ACCEPTANCE_LABELS = {
    "ngram-traces": "measured n-gram prompt-lookup traces (SmolLM2): 81% of steps accept no draft token, about half "
                    "propose none; not a small draft model as in the paper",
    "draft-model": "parametric, small-draft-model-like (Beta(4, 2) rates, geometric accepted tokens, early drift)",
    "mixed-tasks": "parametric, two prompt kinds (Beta(9, 1.5) code-like and Beta(2, 3) chat-like rates, early drift)",
}
ORACLE = "srpt_oracle"
LAPS = "laps_sd"
OVERHEAD_TASK = "decision-overhead"
OVERHEAD_TARGET_US = 50.0
SIM_REAL_TARGET = 0.15
LATENCY_METRICS = ("mean_latency_s", "p50_latency_s", "p99_latency_s", "mean_ttft_s", "p99_ttft_s",
                   "mean_norm_latency_s", "throughput_tok_s")
# A cell's point: rate (x axis) and seed (averaged over) vary inside one table; every other param names the table.
VARYING = ("rate", "seed")


def policy_order(method: str) -> tuple:
    """Sort key of a policy: the registry's order (each policy's `order`), then any other policy by name."""
    names = policy_names()
    return (names.index(method), "") if method in names else (len(names), method)


def _proto(r: dict) -> str:
    return json.dumps(r.get("protocol", {}), sort_keys=True)


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "—" if v is None or not math.isfinite(v) else format(v, spec)


def setting_of(params: dict) -> dict:
    """The params that name a workload's table: all but those varying inside it (rate, seed)."""
    return {k: v for k, v in sorted(params.items()) if k not in VARYING}


def with_device(params: dict, r: dict) -> dict:
    """`params`, plus {"device": kind} for a timing whose cell key names its device (`key_device`): two devices'
    timings of one cell stay in separate rows and tables, never merged or averaged as seeds."""
    device = key_device(r)
    return {**params, "device": device} if device else params


def setting_text(params: dict) -> str:
    """A workload's setting as text, the most telling params first."""
    first = ("n_requests", "max_batch", "draft_len")
    keys = sorted(setting_of(params), key=lambda k: (k not in first, k == "cost_device", first.index(k) if k in first else k))
    return ", ".join(f"{k} {params[k]}" for k in keys)


def at_load(load: float | None, rate: float) -> str:
    """"load 0.5", or "0.15 req/s" where the load is not known (see `load_label`)."""
    return f"load {load:g}" if load is not None else f"{rate:g} req/s"


def load_label(load: float | None, rate: float) -> str:
    """How a point's offered load is printed: its fraction of the server's capacity (records' `extra.load`), or the
    arrival rate in requests/s for records that do not carry it (absolute `--rates`, the real serving loop)."""
    return f"{load:g}" if load is not None else f"{rate:g} req/s"


def workload_points(records: list[dict]) -> dict[tuple, dict]:
    """Simulated latency records -> {(task, model, setting, protocol): {(rate, method): point}}.

    A point averages each metric over the seeds measured and pools their per-request latencies and TTFTs; "load"
    is its fraction of capacity (None when the records do not say).
    """
    per_seed: dict[tuple, dict] = defaultdict(lambda: {"metrics": defaultdict(dict), "latencies": [], "ttfts": [],
                                                       "load": None})
    # "by_seed": {seed: mean latency}, for the confidence intervals and the paired ratios
    for r in records:
        if r["impl"] != "sim" or r["task"] == OVERHEAD_TASK or r["metric"] not in LATENCY_METRICS:
            continue
        p = r["params"]
        key = (r["task"], r["model"], json.dumps(setting_of(with_device(p, r)), sort_keys=True), _proto(r))
        pt = per_seed[(key, float(p.get("rate", float("nan"))), r["method"])]
        pt["metrics"][r["metric"]][p.get("seed")] = r["value"]
        pt["load"] = (r.get("extra") or {}).get("load", pt.get("load"))
        if r["metric"] == "mean_latency_s":
            pt["latencies"] += list((r.get("extra") or {}).get("latencies", []))
            pt["ttfts"] += list((r.get("extra") or {}).get("ttfts", []))
    groups: dict[tuple, dict] = defaultdict(dict)
    for (key, rate, method), pt in per_seed.items():
        seeds = set().union(*(s.keys() for s in pt["metrics"].values()))
        groups[key][(rate, method)] = {
            "metrics": {m: sum(s.values()) / len(s) for m, s in pt["metrics"].items()},
            "seeds": len(seeds), "latencies": pt["latencies"], "ttfts": pt["ttfts"], "load": pt["load"],
            "by_seed": dict(pt["metrics"].get("mean_latency_s", {})),
            "per_seed": {m: dict(v) for m, v in pt["metrics"].items()}}
    return groups


def laps_comparison(points: dict[tuple, dict]) -> list[dict]:
    """Per rate where LAPS-SD ran: the best (lowest mean latency) non-clairvoyant baseline, LAPS-SD's reduction of
    it and its gap to the SRPT oracle, both in % of the other's mean latency."""
    rows = []
    for rate in sorted({rate for rate, _ in points}):
        mean = {m: pt["metrics"]["mean_latency_s"] for (r, m), pt in points.items()
                if r == rate and "mean_latency_s" in pt["metrics"]}
        if LAPS not in mean:
            continue
        base = min((m for m in BASELINES if m in mean), key=lambda m: mean[m], default=None)
        laps, srpt = mean[LAPS], mean.get(ORACLE)
        rows.append({
            "rate": rate, "baseline": base, "baseline_mean": mean[base] if base else None, "laps_mean": laps,
            "reduction_pct": 100 * (mean[base] - laps) / mean[base] if base and mean[base] else None,
            "srpt_mean": srpt, "gap_pct": 100 * (laps - srpt) / srpt if srpt else None})
    return rows


def _is_paired_row(method: str) -> bool:
    return method in (LAPS, "srpt_len_late", ORACLE) or method.startswith(LAPS + "(")


def paired_ratios(points: dict[tuple, dict]) -> list[dict]:
    """Per rate and LAPS-SD-like method (laps_sd, its sweep variants, srpt_len_late) and the SRPT oracle (the bound:
    how far below a baseline any policy can get): its mean latency over each reference's (PAIRED_REFS), seed by
    seed (same requests), as 100 (ratio - 1): mean and 95% t-interval over the paired seeds. Negative: lower
    latency than the reference."""
    rows = []
    for rate, method in sorted((k for k in points if _is_paired_row(k[1])), key=lambda k: (k[0], policy_order(k[1]))):
        mine = points[(rate, method)]["by_seed"]
        row = {"rate": rate, "method": method, "refs": {}, "seeds": 0}
        for ref in PAIRED_REFS:
            theirs = points.get((rate, ref), {}).get("by_seed", {})
            common = sorted(set(mine) & set(theirs), key=str)
            if common and all(theirs[k] > 0 for k in common):
                row["refs"][ref] = t_interval([100 * (mine[k] / theirs[k] - 1) for k in common])
                row["seeds"] = max(row["seeds"], len(common))
        rows.append(row)
    return rows


def _pct_ci(v: tuple[float, float, float] | None) -> str:
    return "—" if v is None else f"{v[0]:+.1f} [{v[1]:+.1f}, {v[2]:+.1f}]"


def by_load(points: dict[tuple, dict]) -> bool:
    """Whether every point of a workload knows its load (fraction of capacity): then plots and tables use it."""
    return all(pt.get("load") is not None for pt in points.values())


def draw_vs_load(ax, points: dict[tuple, dict], metric: str, methods: list[str]) -> None:
    """One line per policy of `metric` (mean over seeds) against the load (else the arrival rate), with its 95%
    t-interval over seeds as error bars; log y when the values span over a decade."""
    x_of = (lambda rate, pt: pt["load"]) if by_load(points) else (lambda rate, pt: rate)
    values = []
    for method in methods:
        pts = sorted((x_of(rate, pt), t_interval(pt["per_seed"][metric].values())) for (rate, m), pt in points.items()
                     if m == method and pt["per_seed"].get(metric))
        if not pts:
            continue
        xs, cis = [x for x, _ in pts], [ci for _, ci in pts]
        ys = [ci[0] for ci in cis]
        err = [[max(0.0, c[0] - c[1]) for c in cis], [max(0.0, c[2] - c[0]) for c in cis]]
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=2, label=method, lw=2.2 if method == LAPS else 1.1,
                    ls="--" if method == ORACLE else "-")
        values += [c[1] for c in cis] + [c[2] for c in cis]
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("load (fraction of capacity)" if by_load(points) else "arrival rate (requests/s)", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.tick_params(labelsize=7)


def _load_plot(points: dict[tuple, dict], title: str) -> bytes:
    """Mean and p99 latency vs load, one line per policy with its CI over seeds; one legend under both panels."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    methods = sorted({m for _, m in points}, key=policy_order)
    for ax, metric, label in zip(axes, ("mean_latency_s", "p99_latency_s"), ("mean latency (s)", "p99 latency (s)")):
        draw_vs_load(ax, points, metric, methods)
        ax.set_ylabel(label, fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(5, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig_png(fig)


def _cdf_plot(points: dict[tuple, dict], rate: float, title: str) -> bytes:
    """Empirical CDFs of per-request latency and TTFT at one rate, one line per policy."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    methods = sorted((m for r, m in points if r == rate), key=policy_order)
    for ax, field, label in zip(axes, ("latencies", "ttfts"), ("end-to-end latency (s)", "time to first token (s)")):
        values = []
        for method in methods:
            xs = np.sort(np.asarray(points[(rate, method)][field], dtype=float))
            if xs.size:
                ax.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post", label=method,
                        lw=2.2 if method == LAPS else 1.1, ls="--" if method == ORACLE else "-")
                values += [xs[0], xs[-1]]
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 100:
            ax.set_xscale("log")
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("fraction of requests", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    if labels:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(5, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig_png(fig)


def headings(keys) -> dict[tuple, str]:
    """A short heading per workload table, keys being (workload, impl, trace, setting JSON, protocol): the workload,
    its impl, and only what tells its tables apart (the setting params that differ between tables of that workload
    and impl, the trace, the protocol's number); the full setting is printed under the heading, not in it."""
    by_task: dict[tuple, list[tuple]] = defaultdict(list)
    for key in keys:
        by_task[key[:2]].append(key)
    out = {}
    for (task, impl), ks in by_task.items():
        settings = {k: json.loads(k[3]) for k in ks}
        names = set().union(*settings.values())
        differ = sorted(n for n in names if len({json.dumps(s.get(n)) for s in settings.values()}) > 1)
        parts = {k: ([f"trace {k[2]}"] if len({key[2] for key in ks}) > 1 else [])
                 + [f"{n} {settings[k].get(n)}" for n in differ] for k in ks}
        for k in ks:
            twins = sorted(j[4] for j in ks if parts[j] == parts[k])  # the same setting under other protocols
            extra = [f"protocol {twins.index(k[4]) + 1} of {len(twins)}"] if len(twins) > 1 else []
            out[k] = f"{task} ({impl})" + (f": {', '.join(parts[k] + extra)}" if parts[k] + extra else "")
    return out


def _workload_sections(board, groups: dict[tuple, dict], md: list[str], hp: list[str]) -> None:
    protocols = defaultdict(set)
    for task, model, setting, proto in groups:
        protocols[(task, model, setting)].add(proto)
    titles = headings((task, "sim", model, setting, proto) for task, model, setting, proto in groups)
    for n, ((task, model, setting, proto), points) in enumerate(sorted(groups.items())):
        setting_params = json.loads(setting)
        heading = titles[(task, "sim", model, setting, proto)]
        add_heading(md, hp, heading)
        acceptance = setting_params.get("acceptance")
        rates = sorted({(rate, pt["load"]) for (rate, _), pt in points.items()})
        add_text(md, hp, f"Trace {model}; {setting_text(setting_params)}. "
                 + ("Loads " + ", ".join(f"{load:g}" for _, load in rates) + " of capacity = "
                    + ", ".join(f"{rate:.3g}" for rate, _ in rates) + " requests/s. " if by_load(points) else "")
                 + (f"Acceptance: {ACCEPTANCE_LABELS.get(acceptance, acceptance)}." if acceptance else
                    "Acceptance: the measured n-gram prompt-lookup traces (records from before the acceptance label)."))
        if len(protocols[(task, model, setting)]) > 1:
            add_warning(md, hp, "Warning: records of this workload were measured under different protocols; they are shown "
                          f"in separate tables and not compared. This table's protocol: `{proto}`")
        label = {rate: load_label(pt["load"], rate) for (rate, _), pt in points.items()}
        headers = ["load", "policy", "mean s", "p50 s", "p99 s", "mean TTFT s", "p99 TTFT s",
                   "latency/token s", "throughput tok/s", "seeds", "mean s 95% CI"]
        rows = []
        for rate, method in sorted(points, key=lambda k: (k[0], policy_order(k[1]))):
            m = points[(rate, method)]["metrics"]
            by_seed = points[(rate, method)]["by_seed"]
            ci = t_interval(by_seed.values()) if len(by_seed) > 1 else None
            rows.append([label[rate], method, *(_fmt(m.get(k)) for k in LATENCY_METRICS[:6]),
                         _fmt(m.get("throughput_tok_s"), ".1f"), points[(rate, method)]["seeds"],
                         "—" if ci is None else f"[{ci[1]:.4g}, {ci[2]:.4g}]"])
        add_table(md, hp, headers, rows, key=2)
        vs = laps_comparison(points)
        if vs:
            add_table(md, hp, ["load", "best baseline", "its mean s", f"{LAPS} mean s", "LAPS-SD reduction %",
                               f"{ORACLE} mean s", "gap to SRPT %"],
                      [[label[v["rate"]], v["baseline"] or "—", _fmt(v["baseline_mean"]), _fmt(v["laps_mean"]),
                        _fmt(v["reduction_pct"], "+.1f"), _fmt(v["srpt_mean"]), _fmt(v["gap_pct"], "+.1f")] for v in vs])
        paired = paired_ratios(points)
        if paired:
            add_text(md, hp, "Paired ratios: each LAPS-SD-like policy's mean latency over the reference's on the same "
                          "requests (seed by seed), as % change; mean [95% t-interval] over the paired seeds. The "
                          f"{ORACLE} row is the bound: no policy gets further below a baseline than the oracle does.")
            add_table(md, hp, ["load", "policy", *(f"vs {ref} %" for ref in PAIRED_REFS), "paired seeds"],
                      [[label[p["rate"]], p["method"], *(_pct_ci(p["refs"].get(ref)) for ref in PAIRED_REFS),
                        p["seeds"]] for p in paired], key=2)
        tag = f"sched_{n}"
        if len({rate for rate, _ in points}) > 1 and any("mean_latency_s" in pt["metrics"] for pt in points.values()):
            add_figure(board, md, hp, f"{tag}_load.png", _load_plot(points, f"Latency vs load: {heading}"),
                       f"Mean and p99 latency vs load with 95% CIs over seeds, {heading}")
        top = max(rate for rate, _ in points)
        if any(pt["latencies"] or pt["ttfts"] for (rate, _), pt in points.items() if rate == top):
            where = f"load {label[top]}" if by_load(points) else label[top]
            add_figure(board, md, hp, f"{tag}_cdf.png", _cdf_plot(points, top, f"CDFs at {where}: {heading}"),
                       f"Latency and TTFT CDFs at {where}, {heading}")


def _overhead_section(records: list[dict], md: list[str], hp: list[str]) -> None:
    recs = [r for r in records if r["task"] == OVERHEAD_TASK and r["metric"] == "decision_overhead_us"]
    if not recs:
        return
    add_heading(md, hp, "Scheduling decision overhead")
    add_text(md, hp, f"Mean wall time of one scheduling decision (picking the batch of the next step) with `queued` "
                  f"requests waiting, in µs, against the {OVERHEAD_TARGET_US:g} µs target; measured on the device shown.")
    headers = ["queued", "policy", "impl", "µs per step", f"≤ {OVERHEAD_TARGET_US:g} µs", "other params", "device"]
    protocols = sorted({_proto(r) for r in recs})
    for proto in protocols:
        if len(protocols) > 1:
            add_warning(md, hp, f"Measurements under different protocols are listed apart. This table's protocol: `{proto}`")
        group = sorted((r for r in recs if _proto(r) == proto),
                       key=lambda r: (r["params"].get("queued", 0), policy_order(r["method"]), r["impl"], r["device"]))
        add_table(md, hp, headers, [
            [r["params"].get("queued", "?"), r["method"], r["impl"], f"{r['value']:.2f}",
             "yes" if r["value"] <= OVERHEAD_TARGET_US else "NO",
             ", ".join(f"{k} {v}" for k, v in sorted(r["params"].items()) if k != "queued") or "—", r["device"]]
            for r in group])


def sim_vs_real(records: list[dict]) -> list[dict]:
    """Mean latency of the same cell (task, policy, trace, params, protocol) simulated and really served.

    rel_diff = (sim - real) / real. Cells only simulated are left out; cells only served keep sim = None.
    """
    cells: dict[tuple, dict] = defaultdict(dict)
    for r in records:
        if r["metric"] == "mean_latency_s" and r["impl"] in ("sim", "real") and r["task"] != OVERHEAD_TASK:
            key = (r["task"], r["method"], r["model"], json.dumps(with_device(r["params"], r), sort_keys=True),
                   _proto(r))
            cells[key][r["impl"]] = r["value"]
    rows = []
    for (task, method, model, params, proto), v in cells.items():
        if "real" not in v:
            continue
        sim, real = v.get("sim"), v["real"]
        rows.append({"task": task, "method": method, "model": model, "params": json.loads(params), "protocol": proto,
                     "sim": sim, "real": real, "rel_diff": (sim - real) / real if sim is not None and real else None})
    return sorted(rows, key=lambda x: (x["task"], x["model"], x["params"].get("rate", 0), policy_order(x["method"]),
                                       json.dumps(x["params"], sort_keys=True)))


def _sim_vs_real_section(records: list[dict], md: list[str], hp: list[str]) -> None:
    rows = sim_vs_real(records)
    if not rows:
        return
    add_heading(md, hp, "Simulator vs real serving loop")
    add_text(md, hp, "Mean end-to-end latency of the same requests, policy and parameters in the discrete-event simulator "
                  "and in the executed serving loop; sim − real in % of real, against the "
                  f"±{100 * SIM_REAL_TARGET:g}% target.")
    headers = ["workload", "policy", "rate req/s", "seed", "trace", "sim mean s", "real mean s", "sim − real %",
               f"within {100 * SIM_REAL_TARGET:g}%", "other params"]
    protocols = sorted({x["protocol"] for x in rows})
    for proto in protocols:
        if len(protocols) > 1:
            add_warning(md, hp, f"Measurements under different protocols are listed apart. This table's protocol: `{proto}`")
        add_table(md, hp, headers, [
            [x["task"], x["method"], _fmt(x["params"].get("rate"), "g"), x["params"].get("seed", "—"), x["model"],
             _fmt(x["sim"]), _fmt(x["real"]), _fmt(None if x["rel_diff"] is None else 100 * x["rel_diff"], "+.1f"),
             "—" if x["rel_diff"] is None else ("yes" if abs(x["rel_diff"]) <= SIM_REAL_TARGET else "NO"),
             setting_text(x["params"]) or "—"]
            for x in rows if x["protocol"] == proto])


def schedulers_board(records: list[dict]) -> Board | None:
    """The scheduling suite's board, or None without scheduling records."""
    recs = newest_records(records, "scheduling")
    if not recs:
        return None
    board = Board("Schedulers: speculative-decoding serving (LAPS-SD)", records=recs)
    intro = ("Requests of each workload arrive as a Poisson process at `rate` requests/s, given as a load: the rate "
             "as a fraction of the server's capacity (the rate in requests/s where the records do not say), and are "
             "served with "
             "continuous batching and speculative decoding (`draft_len` tokens drafted per step, at most `max_batch` "
             "requests per step); the policy picks which queued requests run each step. Sim tables replay the "
             "trace's measured acceptances in the discrete-event simulator, with step times from the cost model "
             "measured on `cost_device`. Latency: arrival to last token; TTFT: arrival to first token; latency/token: "
             "each request's latency over its output tokens, averaged; values are means over seeds, with the 95% "
             "Student-t interval of the mean latency over seeds; the paired-ratio tables compare policies seed by "
             "seed on the same requests. LAPS-SD "
             f"reduction: how much lower LAPS-SD's mean latency is than the best (lowest) of the non-clairvoyant "
             f"baselines ({', '.join(BASELINES)}), in % of that baseline's; gap to SRPT: how much higher it is than "
             f"{ORACLE}'s (which knows every output length), in % of the oracle's. CDFs are at each workload's "
             "highest load, over the requests whose latencies the records keep (the first seed's). srpt_len_late is "
             "SRPT on the line-13 re-predicted length without acceptance (the ablation of LAPS-SD's acceptance "
             "awareness).")
    md, hp = [intro + "\n"], [f"<p>{html.escape(intro)}</p>"]
    _workload_sections(board, workload_points(recs), md, hp)
    _overhead_section(recs, md, hp)
    _sim_vs_real_section(recs, md, hp)
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board
