"""The leaderboard, built only from the results store: `README.md` (tables) and `index.html` (tables + plots).

One board per family; a board is a function records -> Board (Markdown and HTML fragments plus figures, and the
records it was built from), or None when it has no records to show, listed in BOARDS, so a new family adds one
function; a registered suite (harness/suite.py) may also return one from its `board` method, with no edit here. Every board section ends with the line `records_line` writes from the board's records: the results files
(relative links), suites and metrics, record and cell counts, git shas and devices. A board with a `page` is also
written alone to that file. Records whose protocols differ are never ranked together.

This module only assembles: each board is a board_*.py module, and what boards share (Board, tables, figures)
is harness/board_page.py.
"""
from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from pathlib import Path

from harness.board_dllm import dllm_board
from harness.board_kernels import kernels_conformance_board, kernels_latency_board
from harness.board_niah import kv_methods_board
from harness.board_page import Board
from harness.board_pareto import pareto_board
from harness.board_scheduling import schedulers_board
from harness.board_tasks import longbench_board, ruler_board
from harness.store import ResultsStore
from harness.suite import get_suite, suite_names

BOARDS = [pareto_board, kv_methods_board, ruler_board, longbench_board, kernels_conformance_board,
          kernels_latency_board, dllm_board, schedulers_board]

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


def records_line(records: list[dict] | None, rel: Path) -> tuple[str, str]:
    """(Markdown, HTML) of the line that ends a board: per results file its board used, a relative link to it, the
    filter (suite, metrics), the number of records and of cells (a cell per device: an accuracy cell's key does not
    name the device), and the git shas and devices of those records."""
    if records is None:
        text = "Records used: not reported by this board."
        return text + "\n", f"<p class='meta'>{html.escape(text)}</p>"
    if not records:
        text = "Records used: none."
        return text + "\n", f"<p class='meta'>{html.escape(text)}</p>"
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_suite[r["suite"]].append(r)
    md, hp = [], []
    for suite, recs in sorted(by_suite.items()):
        name = ResultsStore(rel).path(suite).name  # the store's file of that suite
        metrics = ", ".join(sorted({r["metric"] for r in recs}))
        cells = len({(r["cell"], r.get("device")) for r in recs})
        shas = ", ".join(sorted({str(r.get("git_sha", "?")) for r in recs}))
        devices = "; ".join(sorted({str(r.get("device", "?")) for r in recs}))
        tail = (f" — suite {suite}, metrics {metrics} — {len(recs)} records, {cells} cell{'s' * (cells != 1)} — "
                f"git {shas} — devices: {devices}")
        md.append(f"[{name}]({rel / name}){tail}")
        hp.append(f"<a href='{html.escape(str(rel / name))}'>{html.escape(name)}</a>{html.escape(tail)}")
    if len(md) == 1:
        return f"Records used: {md[0]}\n", f"<p class='meta'>Records used: {hp[0]}</p>"
    return ("Records used:\n\n" + "\n".join(f"- {x}" for x in md) + "\n",
            "<p class='meta'>Records used:</p><ul class='meta'>" + "".join(f"<li>{x}</li>" for x in hp) + "</ul>")


def _standalone(b: Board, foot_html: str, built: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(b.title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(b.title)}</h1><p class='meta'>{html.escape(built)} "
            "Part of the <a href='index.html'>longctx-bench leaderboard</a>.</p>" + b.html + foot_html
            + "</body></html>")


def build_leaderboard(results_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write README.md, index.html, the boards' own pages and every figure into out_dir; return their paths."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results: directory {str(results_dir)!r} does not exist (run a suite first)")
    records = ResultsStore(results_dir).records()
    out_dir.mkdir(parents=True, exist_ok=True)
    boards = [b for b in (fn(records) for fn in BOARDS) if b is not None]  # None: no records for that board
    # Suites with a board of their own (`Suite.board`; plugins' suites): after the families' boards.
    boards += [b for b in (get_suite(n).board(records) for n in suite_names()) if b is not None]
    sources = sorted(p.name for p in results_dir.glob("*.jsonl"))
    rel = Path(os.path.relpath(results_dir.resolve(), out_dir.resolve()))  # links work wherever both are moved
    paths = {"markdown": out_dir / "README.md", "html": out_dir / "index.html"}
    links = ", ".join(f"[{s}]({rel / s})" for s in sources) or "none"
    meta = _provenance(records)
    # Stamped with the newest record, not the clock: the same records build the same board, byte for byte, so
    # rebuilding the committed board from the committed store leaves the checkout clean.
    built = max((str(r.get("time", "")) for r in records), default="") or "(no records)"
    md = ["# longctx-bench leaderboard\n", f"Built from the results store as of its newest record ({built}) ({links}); "
          "every number below comes from those records.\n", *[f"- {m}" for m in meta], ""]
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>longctx-bench leaderboard</title>"
            f"<style>{CSS}</style></head><body><h1>longctx-bench leaderboard</h1>",
            f"<p class='meta'>Built from the results store as of its newest record ({html.escape(built)}): "
            + ", ".join(f"<a href='{html.escape(str(rel / s))}'>{html.escape(s)}</a>" for s in sources)
            + "; every number comes from those records.</p><ul class='meta'>"
            + "".join(f"<li>{html.escape(m)}</li>" for m in meta) + "</ul>"]
    for b in boards:
        foot_md, foot_html = records_line(b.records, rel)
        md += [f"## {b.title}\n"]
        page += [f"<h2>{html.escape(b.title)}</h2>"]
        if b.page:
            md.append(f"Also on its own page: [{b.page}]({b.page}).\n")
            page.append(f"<p class='meta'>Also on its own page: <a href='{html.escape(b.page)}'>"
                        f"{html.escape(b.page)}</a>.</p>")
            paths[b.page] = out_dir / b.page
            paths[b.page].write_text(_standalone(b, foot_html, f"Built from the results store as of its newest record ({built})."),
                                     encoding="utf-8")
        md += [b.markdown, foot_md]
        page += [b.html, foot_html]
        for name, png in b.figures.items():
            (out_dir / name).write_bytes(png)
    page.append("</body></html>")
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    paths["html"].write_text("\n".join(page), encoding="utf-8")
    return paths
