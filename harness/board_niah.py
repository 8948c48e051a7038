"""The NIAH board (suite "niah"): accuracy with its CI and paired difference vs the full cache, KV bytes held, a
depth x length heatmap per method and an accuracy-vs-bytes plot, per (model, compression ratio, question mode,
protocol)."""
from __future__ import annotations

import html
import json
from collections import defaultdict

from tabulate import tabulate

from harness.board_page import Board, fig_png, img_html, method_label, plt, table_html
from harness.stats import bootstrap_ci, paired_delta


def _niah_cells(records: list[dict]) -> dict[str, dict]:
    """Merge the per-metric records of each NIAH cell into one row."""
    cells: dict[str, dict] = {}
    for r in records:
        c = cells.setdefault(r["cell"], {"record": r, "metrics": {}})
        c["metrics"][r["metric"]] = r["value"]
    return cells


def _heatmaps(rows_by_method: dict[str, list[dict]], title: str, ratio: float) -> bytes:
    """One depth (rows, 0% on top) x length (columns) map per method; cell = mean exact match over trials."""
    methods = list(rows_by_method)
    cols = min(4, len(methods))
    nrows = (len(methods) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.2 * nrows), squeeze=False, layout="constrained")
    image = None
    for ax in axes.flat[len(methods):]:
        ax.axis("off")
    for ax, method in zip(axes.flat, methods):
        rows = rows_by_method[method]
        lengths = sorted({r["length"] for r in rows})
        depths = sorted({r["depth"] for r in rows})
        grid = [[float("nan")] * len(lengths) for _ in depths]
        for i, d in enumerate(depths):
            for j, n in enumerate(lengths):
                vals = [r["score"] for r in rows if r["depth"] == d and r["length"] == n]
                if vals:
                    grid[i][j] = sum(vals) / len(vals)
        image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if grid[i][j] == grid[i][j]:
                    ax.text(j, i, f"{grid[i][j]:.2f}".rstrip("0").rstrip("."), ha="center", va="center", fontsize=8)
        acc = sum(r["score"] for r in rows) / len(rows)
        ax.set_title(f"{method} @ ratio {ratio}: {100 * acc:.0f}%", fontsize=10)
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], fontsize=8)
        ax.set_yticks(range(len(depths)), [f"{100 * d:.0f}%" for d in depths], fontsize=8)
        ax.set_xlabel("context length (tokens)", fontsize=8)
        ax.set_ylabel("needle depth", fontsize=8)
    fig.suptitle(title, fontsize=11)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="fraction retrieved")
    return fig_png(fig)


def _tradeoff(summary: list[dict], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    placed: list[tuple[float, float]] = []
    for s in sorted(summary, key=lambda s: -s["acc"]):
        x, y = s["kv_pct"], 100 * s["acc"]
        ax.errorbar(x, y, yerr=[[100 * (s["acc"] - s["lo"])], [100 * (s["hi"] - s["acc"])]], fmt="o", capsize=3)
        # Labels of methods at the same point are stacked downwards so none hides another.
        ly = y
        while any(abs(px - x) < 15 and abs(py - ly) < 6 for px, py in placed):
            ly -= 6
        placed.append((x, ly))
        ax.annotate(s["method"], (x, y), xytext=(x + 4, ly), fontsize=8, va="center",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6})
    ax.set_xlabel("KV bytes held (% of full cache)")
    ax.set_ylabel("NIAH accuracy (%)")
    ax.set_ylim(-5, 105)
    ax.set_xlim(0, 125)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return fig_png(fig)


def kv_methods_board(records: list[dict]) -> Board:
    """NIAH accuracy and KV bytes per method, per (model, compression ratio, question mode, protocol)."""
    board = Board("KV-cache methods: needle in a haystack")
    niah = [r for r in records if r["suite"] == "niah"]
    board.records = [r for r in niah if r["metric"] in ("exact_match", "kv_bytes", "kv_bytes_full")]
    if not niah:
        board.markdown = "_No NIAH records yet: run `python -m harness run`._\n"
        board.html = f"<p>{html.escape(board.markdown.strip('_'))}</p>"
        return board
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in _niah_cells(niah).values():
        r = cell["record"]
        key = (r["model"], r["params"]["compression_ratio"], r["params"]["question_aware"],
               json.dumps(r.get("protocol", {}), sort_keys=True))
        groups[key].append(cell)
    protocols_per_setting = defaultdict(set)
    for model, ratio, qa, proto in groups:
        protocols_per_setting[(model, ratio, qa)].add(proto)
    md, hp = [], []
    for n_group, ((model, ratio, qa, proto), cells) in enumerate(sorted(groups.items(), key=lambda kv: kv[0][:3])):
        mode = "question-aware" if qa else "question-agnostic"
        heading = f"{model}, compression ratio {ratio}, {mode}"
        md.append(f"### {heading}\n")
        hp.append(f"<h3>{html.escape(heading)}</h3>")
        if len(protocols_per_setting[(model, ratio, qa)]) > 1:
            warn = ("Warning: records of this setting were measured under different protocols; they are shown in "
                    f"separate tables and not ranked together. This table's protocol: `{proto}`")
            md.append(f"> {warn}\n")
            hp.append(f'<p class="warn">{html.escape(warn)}</p>')
        by_method: dict[str, list[dict]] = defaultdict(list)
        for c in cells:
            p, m = c["record"]["params"], c["metrics"]
            if "exact_match" not in m:
                continue
            by_method[method_label(c["record"])].append({
                "length": p["length"], "depth": p["depth"], "match": (p["length"], p["depth"], p["trial"], p.get("seed")),
                "score": m["exact_match"], "kv": m.get("kv_bytes"), "kv_full": m.get("kv_bytes_full"),
            })
        full = {r["match"]: r["score"] for r in by_method.get("full", [])}
        summary = []
        for method, rows in by_method.items():
            scores = [r["score"] for r in rows]
            lo, hi = bootstrap_ci(scores)
            kv = [r["kv"] for r in rows if r["kv"] is not None]
            kv_full = [r["kv_full"] for r in rows if r["kv_full"] is not None]
            paired = [(r["score"], full[r["match"]]) for r in rows if r["match"] in full]
            delta = paired_delta(*zip(*paired)) if paired and method != "full" else None
            summary.append({
                "method": method, "acc": sum(scores) / len(scores), "lo": lo, "hi": hi, "n": len(rows),
                "kv": sum(kv) / len(kv) if kv else float("nan"),
                "kv_pct": 100 * sum(kv) / sum(kv_full) if kv and sum(kv_full) else float("nan"),
                "delta": delta,
            })
        summary.sort(key=lambda s: (-s["acc"], s["kv"]))
        headers = ["rank", "method", "accuracy %", "95% CI", "Δ vs full (paired, 95% CI)", "KV MiB (mean)", "KV % of full", "cells"]
        rows = []
        for i, s in enumerate(summary, 1):
            d = s["delta"]
            delta = "—" if d is None else f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"
            rows.append([i, s["method"], f"{100 * s['acc']:.1f}", f"[{100 * s['lo']:.1f}, {100 * s['hi']:.1f}]", delta,
                         f"{s['kv'] / 2**20:.2f}", f"{s['kv_pct']:.1f}", s["n"]])
        md.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) + "\n")
        hp.append(table_html(headers, rows))
        tag = f"niah_{n_group}"
        heat = _heatmaps({s["method"]: by_method[s["method"]] for s in summary}, f"NIAH — {heading}", ratio)
        trade = _tradeoff(summary, f"accuracy vs KV bytes — {heading}")
        board.figures[f"{tag}_heatmaps.png"] = heat
        board.figures[f"{tag}_tradeoff.png"] = trade
        md.append(f"![NIAH heatmaps]({tag}_heatmaps.png)\n\n![accuracy vs KV bytes]({tag}_tradeoff.png)\n")
        hp.append(img_html(f"{tag}_heatmaps.png", heat, f"NIAH heatmaps (depth x length), {heading}"))
        hp.append(img_html(f"{tag}_tradeoff.png", trade, f"Accuracy vs KV bytes, {heading}"))
    board.markdown = "\n".join(md)
    board.html = "\n".join(hp)
    return board
