"""The schedulers family on the headline page: per workload at its highest load, the policy with the lowest mean
latency and LAPS-SD against the best non-clairvoyant baseline (paired over seeds, with its interval); and mean
latency vs load with 95% intervals over seeds, one panel per workload."""
from __future__ import annotations

import math

from harness.boards.page import Headline, add_figure, add_table, add_text, fig_png, plt
from harness.scheduling.board import (BASELINES, LAPS, ORACLE, by_load, draw_vs_load, headings, laps_comparison,
                                      load_label, paired_ratios, policy_order, workload_points)
from harness.stats import t_interval

KEY_POLICIES = (*BASELINES, LAPS, ORACLE)  # the plot's lines (the sweep variants are on the family page)


def _pct(v) -> str:
    return "—" if v is None else f"{v[0]:+.1f} [{v[1]:+.1f}, {v[2]:+.1f}]"


def winner_rows(groups: dict, names: dict) -> list[list[str]]:
    rows = []
    for key, points in sorted(groups.items()):
        top = max(rate for rate, _ in points)
        here = {m: pt for (rate, m), pt in points.items() if rate == top and m != ORACLE and pt["by_seed"]}
        if not here:
            continue
        best = min(here, key=lambda m: (here[m]["metrics"]["mean_latency_s"], policy_order(m)))
        mean = t_interval(here[best]["by_seed"].values())
        vs = next((v for v in laps_comparison(points) if v["rate"] == top), None)
        paired = next((p for p in paired_ratios(points) if p["rate"] == top and p["method"] == LAPS), None)
        vs_base = paired["refs"].get(vs["baseline"]) if paired and vs and vs["baseline"] else None
        gap = f"{vs['gap_pct']:+.1f}" if vs and vs["gap_pct"] is not None else "—"
        rows.append([names[key], load_label(here[best]["load"], top), best,
                     f"{mean[0]:.3g} [{mean[1]:.3g}, {mean[2]:.3g}]",
                     f"{_pct(vs_base)} vs {vs['baseline']}" if vs_base else "—", gap])
    return rows


def _figure(groups: dict, names: dict) -> bytes | None:
    keys = [k for k in sorted(groups) if len({rate for rate, _ in groups[k]}) > 1]
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.1 * cols, 3.0 * nrows + 0.6), squeeze=False, layout="constrained")
    for ax, key in zip(axes.flat, keys):
        points = groups[key]
        draw_vs_load(ax, points, "mean_latency_s", [m for m in KEY_POLICIES if any(m == p for _, p in points)])
        ax.set_ylabel("mean latency (s)", fontsize=8)
        ax.set_title(names[key] + ("" if by_load(points) else " (by arrival rate)"), fontsize=9)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat[:len(keys)]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=7,
               frameon=False)
    fig.suptitle("Mean latency vs load (95% CI over seeds)", fontsize=10)
    return fig_png(fig)


def scheduling_headline(records: list[dict]) -> Headline | None:
    groups = workload_points([r for r in records if r["suite"] == "scheduling"])
    if not groups:
        return None
    names = headings((task, "sim", model, setting, proto) for task, model, setting, proto in groups)
    names = {k: names[(k[0], "sim", *k[1:])] for k in groups}
    h = Headline()
    md, hp = [], []
    add_text(md, hp, "Simulated serving, at each workload's highest load: the policy with the lowest mean latency "
                     f"({ORACLE}, which knows every output length, left out), its mean [95% t-interval over seeds]; "
                     f"{LAPS}'s mean latency against the best non-clairvoyant baseline, % change paired seed by seed "
                     f"[95% t-interval]; its gap to {ORACLE} in %. Load: arrival rate as a fraction of capacity.")
    add_table(md, hp, ["workload", "load", "lowest mean latency", "mean s [95% CI]", f"{LAPS} vs best baseline %",
                       f"gap to {ORACLE} %"], winner_rows(groups, names))
    png = _figure(groups, names)
    if png:
        add_figure(h, md, hp, "headline_scheduling_load.png", png,
                   "Mean latency vs load with 95% CIs over seeds, one panel per workload")
    h.markdown, h.html = "\n".join(md), "\n".join(hp)
    return h
