"""The leaderboard, built only from the results store: a headline page and one page per family, each as Markdown
and HTML, and the figures they show.

- `README.md` / `index.html`, the headline: per family its winner table and key plot (NIAH heatmaps, kernel
  latency vs context with the roofline, dLLM throughput vs prompt length, scheduling latency vs load with CIs),
  each linking to the family's page; provenance at the bottom.
- `<family>.md` / `<family>.html`: the family's boards with every table (FAMILIES), each board ending with the
  line `records_line` writes from its records (results files as relative links, suites and metrics, record and
  cell counts, git shas and devices). `pareto.*` holds the Pareto fronts of every family.

A board is a function records -> Board (harness/boards/page.py) or None when it has nothing to show; a family lists
its boards and its headline function, so a new family adds one entry. A registered suite (harness/suite.py) may
return a Board from its `board` method: it gets a page of its own (`suite-<name>`) and a link on the headline, with
no edit here. Records whose protocols differ are never ranked together.
"""
from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.boards.page import CSS, Board, Headline, add_heading, add_text
from harness.boards.pareto_board import pareto_board
from harness.dllm.board import dllm_board
from harness.dllm.headline import dllm_headline
from harness.kernels.board import kernels_conformance_board, kernels_latency_board
from harness.kernels.headline import kernels_headline
from harness.kv.board_niah import kv_methods_board
from harness.kv.board_tasks import longbench_board, ruler_board
from harness.kv.headline import kv_headline
from harness.scheduling.board import schedulers_board
from harness.scheduling.headline import scheduling_headline
from harness.store import ResultsStore
from harness.suite import get_suite, suite_names

TITLE = "longctx-bench leaderboard"


@dataclass(frozen=True)
class Family:
    slug: str  # its page: <slug>.md and <slug>.html
    title: str
    boards: tuple[Callable[[list[dict]], Board | None], ...]
    headline: Callable[[list[dict]], Headline | None] | None = None  # None: a line and a link on the headline
    summary: str = ""  # that line (default: the boards' titles)


FAMILIES = (
    Family("kv", "KV-cache compression", (kv_methods_board, ruler_board, longbench_board), kv_headline),
    Family("kernels", "Kernels", (kernels_latency_board, kernels_conformance_board), kernels_headline),
    Family("dllm", "dLLM caches", (dllm_board,), dllm_headline),
    Family("scheduling", "Schedulers", (schedulers_board,), scheduling_headline),
    Family("pareto", "Pareto fronts", (pareto_board,),
           summary="Every method of every family on accuracy, bytes held and latency, fronts that respect the "
                   "confidence intervals"),
)


@dataclass
class Page:
    slug: str
    title: str
    boards: list[Board]
    headline: Headline | None
    summary: str = ""


def _short(sha: str) -> str:
    return sha[:12] + ("-dirty" if sha.endswith("-dirty") else "")


def provenance(records: list[dict]) -> list[str]:
    """The headline's closing lines: record count, git shas (short), devices, library versions."""
    shas = sorted({_short(str(r.get("git_sha", "?"))) for r in records})
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


def _html_page(title: str, body: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def pages(records: list[dict]) -> list[Page]:
    """Every page with something to show: the families' (FAMILIES order), then the registered suites' own boards."""
    out = []
    for family in FAMILIES:
        boards = [b for b in (fn(records) for fn in family.boards) if b is not None]
        if boards:
            out.append(Page(family.slug, family.title, boards, family.headline(records) if family.headline else None,
                            family.summary))
    for name in suite_names():  # plugins' suites: `Suite.board`
        board = get_suite(name).board(records)
        if board is not None:
            out.append(Page(board.page or f"suite-{name}", board.title, [board], None))
    return out


def _write_family(page: Page, out_dir: Path, rel: Path, built: str) -> dict[str, Path]:
    back = f"Part of the {TITLE}"
    md, hp = [], []
    add_heading(md, hp, page.title, level=1)
    md.append(f"{back} ([headline](README.md), [Pareto fronts](pareto.md)). {built}\n")
    hp.append(f"<p class='meta'>{html.escape(back)} (<a href='index.html'>headline</a>, <a href='pareto.html'>Pareto "
              f"fronts</a>). {html.escape(built)}</p>")
    for b in page.boards:
        foot_md, foot_html = records_line(b.records, rel)
        add_heading(md, hp, b.title, level=2)
        md += [b.markdown, foot_md]
        hp += [b.html, foot_html]
        for name, png in b.figures.items():
            (out_dir / name).write_bytes(png)
    paths = {f"{page.slug}.md": out_dir / f"{page.slug}.md", f"{page.slug}.html": out_dir / f"{page.slug}.html"}
    paths[f"{page.slug}.md"].write_text("\n".join(md), encoding="utf-8")
    paths[f"{page.slug}.html"].write_text(_html_page(page.title, hp), encoding="utf-8")
    return paths


def _headline(all_pages: list[Page], records: list[dict], out_dir: Path, rel: Path, built: str,
              sources: list[str]) -> tuple[list[str], list[str]]:
    intro = ("Who wins what, family by family: each section is a winner table and its key plot; the family's page "
             "has every table, and the Pareto page ranks every method on accuracy, bytes and latency. "
             f"Built from the results store as of its newest record ({built}); nothing is typed by hand.")
    md, hp = [], []
    add_heading(md, hp, TITLE, level=1)
    add_text(md, hp, intro)
    for page in all_pages:
        add_heading(md, hp, page.title, level=2)
        link_md, link_html = f"[{page.slug}.md]({page.slug}.md)", f"<a href='{page.slug}.html'>{page.slug}.html</a>"
        if page.headline is not None:
            md += [page.headline.markdown, f"Details: {link_md}.\n"]
            hp += [page.headline.html, f"<p>Details: {link_html}.</p>"]
            for name, png in page.headline.figures.items():
                (out_dir / name).write_bytes(png)
        else:
            line = page.summary or "; ".join(b.title for b in page.boards)
            md.append(f"{line}: {link_md}.\n")
            hp.append(f"<p>{html.escape(line)}: {link_html}.</p>")
    add_heading(md, hp, "Provenance", level=2)
    md += ["Results files: " + (", ".join(f"[{s}]({rel / s})" for s in sources) or "none") + ".\n",
           *[f"- {m}" for m in provenance(records)], ""]
    hp += ["<p class='meta'>Results files: "
           + (", ".join(f"<a href='{html.escape(str(rel / s))}'>{html.escape(s)}</a>" for s in sources) or "none")
           + ".</p><ul class='meta'>" + "".join(f"<li>{html.escape(m)}</li>" for m in provenance(records)) + "</ul>"]
    return md, hp


def build_leaderboard(results_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write the headline (README.md, index.html), each family's page (<slug>.md, <slug>.html) and every figure
    into out_dir; return the pages' paths ("markdown" and "html": the headline)."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results: directory {str(results_dir)!r} does not exist (run a suite first)")
    records = ResultsStore(results_dir).records()
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(results_dir.resolve(), out_dir.resolve()))  # links work wherever both are moved
    # Stamped with the newest record, not the clock: the same records build the same board, byte for byte, so
    # rebuilding the committed board from the committed store leaves the checkout clean.
    built = max((str(r.get("time", "")) for r in records), default="") or "(no records)"
    stamp = f"Built from the results store as of its newest record ({built})."
    all_pages = pages(records)
    paths = {"markdown": out_dir / "README.md", "html": out_dir / "index.html"}
    for page in all_pages:
        paths.update(_write_family(page, out_dir, rel, stamp))
    md, hp = _headline(all_pages, records, out_dir, rel, built, sorted(p.name for p in results_dir.glob("*.jsonl")))
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    paths["html"].write_text(_html_page(TITLE, hp), encoding="utf-8")
    return paths
