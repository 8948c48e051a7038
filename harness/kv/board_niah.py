"""The NIAH board (suite "niah"): accuracy with its CI and paired difference vs the full cache, KV bytes held and a
depth x length heatmap per method, per (model, compression ratio, question mode, protocol). Accuracy against bytes
(and latency) with CI-aware fronts is on the Pareto page (harness/boards/pareto_board.py)."""
from __future__ import annotations

import html
import json
from collections import defaultdict

from harness.boards.page import Board, add_figure, add_heading, add_table, add_warning, fig_png, method_label, plt
from harness.stats import bootstrap_ci, paired_delta

HEATMAP_COLUMNS = 5


def _niah_cells(records: list[dict]) -> dict[str, dict]:
    """Merge the per-metric records of each NIAH cell into one row."""
    cells: dict[str, dict] = {}
    for r in records:
        c = cells.setdefault(r["cell"], {"record": r, "metrics": {}})
        c["metrics"][r["metric"]] = r["value"]
    return cells


def heatmaps(rows_by_method: dict[str, list[dict]], title: str) -> bytes:
    """One depth (rows, 0% on top) x length (columns) map per method, HEATMAP_COLUMNS to a row; cell = mean exact
    match over trials."""
    methods = list(rows_by_method)
    cols = min(HEATMAP_COLUMNS, len(methods))
    nrows = (len(methods) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(2.35 * cols + 0.9, 2.3 * nrows + 0.4), squeeze=False,
                             layout="constrained")
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
                    ax.text(j, i, f"{grid[i][j]:.2f}".rstrip("0").rstrip("."), ha="center", va="center", fontsize=7)
        acc = sum(r["score"] for r in rows) / len(rows)
        ax.set_title(f"{method}: {100 * acc:.0f}%", fontsize=8)
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], fontsize=7)
        ax.set_yticks(range(len(depths)), [f"{100 * d:.0f}%" for d in depths], fontsize=7)
        ax.set_xlabel("context (tokens)", fontsize=7)
        ax.set_ylabel("needle depth", fontsize=7)
    fig.suptitle(title, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="fraction retrieved")
    return fig_png(fig)


def niah_settings(records: list[dict]) -> list[dict]:
    """The NIAH records per (model, compression ratio, question mode, protocol), each a dict: "key", "heading",
    "mixed" (other protocols share its setting), "summary" (per method, best accuracy first: accuracy, its bootstrap
    CI, paired Δ vs full, KV bytes) and "by_method" (the cells behind each method's heatmap)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in _niah_cells([r for r in records if r["suite"] == "niah"]).values():
        r = cell["record"]
        key = (r["model"], r["params"]["compression_ratio"], r["params"]["question_aware"],
               json.dumps(r.get("protocol", {}), sort_keys=True))
        groups[key].append(cell)
    protocols_per_setting = defaultdict(set)
    for model, ratio, qa, proto in groups:
        protocols_per_setting[(model, ratio, qa)].add(proto)
    out = []
    for (model, ratio, qa, proto), cells in sorted(groups.items(), key=lambda kv: kv[0][:3]):
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
        mode = "question-aware" if qa else "question-agnostic"
        out.append({"key": (model, ratio, qa, proto), "heading": f"{model}, compression ratio {ratio}, {mode}",
                    "mixed": len(protocols_per_setting[(model, ratio, qa)]) > 1, "summary": summary,
                    "by_method": {s["method"]: by_method[s["method"]] for s in summary}})
    return out


def kv_methods_board(records: list[dict]) -> Board:
    """NIAH accuracy and KV bytes per method, per (model, compression ratio, question mode, protocol)."""
    board = Board("KV-cache methods: needle in a haystack")
    niah = [r for r in records if r["suite"] == "niah"]
    board.records = [r for r in niah if r["metric"] in ("exact_match", "kv_bytes", "kv_bytes_full")]
    if not niah:
        board.markdown = "_No NIAH records yet: run `python -m harness run`._\n"
        board.html = f"<p>{html.escape(board.markdown.strip('_'))}</p>"
        return board
    md, hp = [], []
    headers = ["rank", "method", "accuracy %", "95% CI", "Δ vs full (paired, 95% CI)", "KV MiB (mean)", "KV % of full",
               "cells"]
    for n_group, setting in enumerate(niah_settings(records)):
        heading = setting["heading"]
        add_heading(md, hp, heading)
        if setting["mixed"]:
            add_warning(md, hp, "Warning: records of this setting were measured under different protocols; they are "
                                "shown in separate tables and not ranked together. This table's protocol: "
                                f"`{setting['key'][3]}`")
        rows = []
        for i, s in enumerate(setting["summary"], 1):
            d = s["delta"]
            delta = "—" if d is None else f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"
            rows.append([i, s["method"], f"{100 * s['acc']:.1f}", f"[{100 * s['lo']:.1f}, {100 * s['hi']:.1f}]", delta,
                         f"{s['kv'] / 2**20:.2f}", f"{s['kv_pct']:.1f}", s["n"]])
        add_table(md, hp, headers, rows, key=2)
        add_figure(board, md, hp, f"niah_{n_group}_heatmaps.png", heatmaps(setting["by_method"], f"NIAH: {heading}"),
                   f"NIAH heatmaps (needle depth x context length, fraction retrieved), {heading}")
    board.markdown = "\n".join(md)
    board.html = "\n".join(hp)
    return board
