"""The leaderboard, built only from the results store: `README.md` (tables) and `index.html` (tables + plots).

One board per family; a board is a function records -> Board (Markdown and HTML fragments plus figures) listed
in BOARDS, so a new family adds one function. Records whose protocols differ are never ranked together.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tabulate import tabulate  # noqa: E402

from harness.provenance import now_iso  # noqa: E402
from harness.stats import bootstrap_ci, paired_delta  # noqa: E402
from harness.store import ResultsStore  # noqa: E402


@dataclass
class Board:
    title: str
    markdown: str = ""
    html: str = ""
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _table_html(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
    return _png(fig)


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
    return _png(fig)


def kv_methods_board(records: list[dict]) -> Board:
    """NIAH accuracy and KV bytes per method, per (model, compression ratio, question mode, protocol)."""
    board = Board("KV-cache methods: needle in a haystack")
    niah = [r for r in records if r["suite"] == "niah"]
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
            by_method[c["record"]["method"]].append({
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
        hp.append(_table_html(headers, rows))
        tag = f"niah_{n_group}"
        heat = _heatmaps({s["method"]: by_method[s["method"]] for s in summary}, f"NIAH — {heading}", ratio)
        trade = _tradeoff(summary, f"accuracy vs KV bytes — {heading}")
        board.figures[f"{tag}_heatmaps.png"] = heat
        board.figures[f"{tag}_tradeoff.png"] = trade
        md.append(f"![NIAH heatmaps]({tag}_heatmaps.png)\n\n![accuracy vs KV bytes]({tag}_tradeoff.png)\n")
        hp.append(_img(f"{tag}_heatmaps.png", heat, f"NIAH heatmaps (depth x length), {heading}"))
        hp.append(_img(f"{tag}_tradeoff.png", trade, f"Accuracy vs KV bytes, {heading}"))
    board.markdown = "\n".join(md)
    board.html = "\n".join(hp)
    return board


BOARDS = [kv_methods_board]

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:nth-child(2){text-align:left}.warn{background:#fff3cd;padding:.5em;border:1px solid #e0c36a}
figure{margin:1em 0}img{max-width:100%}code{background:#f3f3f3;padding:1px 4px}.meta{color:#555;font-size:.9em}"""


def _provenance(records: list[dict]) -> list[str]:
    shas = sorted({r.get("git_sha", "?") for r in records})
    devices = sorted({r.get("device", "?") for r in records})
    versions = sorted({json.dumps(r.get("versions", {}), sort_keys=True) for r in records})
    return [f"records: {len(records)}", f"git: {', '.join(shas) or '—'}", f"devices: {'; '.join(devices) or '—'}",
            *(f"versions: {v}" for v in versions)]


def build_leaderboard(results_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write README.md, index.html and the figures of every board into out_dir; return their paths."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results: directory {str(results_dir)!r} does not exist (run a suite first)")
    records = ResultsStore(results_dir).records()
    out_dir.mkdir(parents=True, exist_ok=True)
    boards = [fn(records) for fn in BOARDS]
    sources = sorted(p.name for p in results_dir.glob("*.jsonl"))
    try:
        rel = Path("..") / results_dir.resolve().relative_to(out_dir.resolve().parent)
    except ValueError:
        rel = results_dir.resolve()
    links = ", ".join(f"[{s}]({rel / s})" for s in sources) or "none"
    meta = _provenance(records)
    md = ["# longctx-bench leaderboard\n", f"Built {now_iso()} from the results store ({links}); "
          "every number below comes from those records.\n", *[f"- {m}" for m in meta], ""]
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>longctx-bench leaderboard</title>"
            f"<style>{CSS}</style></head><body><h1>longctx-bench leaderboard</h1>",
            f"<p class='meta'>Built {now_iso()} from "
            + ", ".join(f"<a href='{html.escape(str(rel / s))}'>{html.escape(s)}</a>" for s in sources)
            + "; every number comes from those records.</p><ul class='meta'>"
            + "".join(f"<li>{html.escape(m)}</li>" for m in meta) + "</ul>"]
    for b in boards:
        md += [f"## {b.title}\n", b.markdown]
        page += [f"<h2>{html.escape(b.title)}</h2>", b.html]
        for name, png in b.figures.items():
            (out_dir / name).write_bytes(png)
    page.append("</body></html>")
    paths = {"markdown": out_dir / "README.md", "html": out_dir / "index.html"}
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    paths["html"].write_text("\n".join(page), encoding="utf-8")
    return paths
