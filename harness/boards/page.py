"""What every leaderboard board is made of: the `Board` a board function returns, the `Headline` a family puts on the
headline page, and the writers their Markdown and HTML fragments and figures share (a table, a paragraph, a
warning, a figure as PNG bytes and as an <img> beside the page).

Every page is read in a 1400-px window (`PAGE_PX`): `add_table` splits a table whose estimated width (`table_px`,
a character-count heuristic) exceeds what such a page leaves it into column groups that fit, each repeating the
key columns; `fig_png` never returns a figure wider than the page.

The families' boards and headlines (harness/<family>/board*.py, headline.py) and the leaderboard that assembles them
(harness/boards/leaderboard.py) import this module; it imports none of them.
"""
from __future__ import annotations

import html
import io
import struct
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tabulate import tabulate  # noqa: E402

from reference.kv import variant_params  # noqa: E402

__all__ = ["Board", "Headline", "plt", "fig_png", "png_size", "img_html", "table_html", "add_table", "add_text",
           "add_warning", "add_figure", "add_heading", "method_label", "table_px", "split_columns", "PAGE_PX", "TABLE_PX",
           "CSS"]

PAGE_PX = 1400  # the window a page is read in
TABLE_PX = 1300  # what CSS leaves a table in that window: body max-width 1340 px less 2 x 1 em padding, rounded down
CHAR_PX = 7.5  # mean advance of a character of the tables' 14-px sans-serif font (digits 7.8, lower case ~7)
CELL_PAD_PX = 18  # a cell's padding (2 x 8 px) and border
WRAP_CH = 28  # a longer cell wraps at its spaces, to lines of about this many characters (never below its longest word)
FIG_DPI = 110

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1340px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}.warn{background:#fff3cd;padding:.5em;border:1px solid #e0c36a}
.scroll{overflow-x:auto}figure{margin:1em 0}img{max-width:100%;height:auto}code{background:#f3f3f3;padding:1px 4px}
.meta{color:#555;font-size:.9em}"""


@dataclass
class Headline:
    """A family's part of the headline page: its winner table(s) and key plot, as Markdown and HTML, and the figures
    they show (file name -> PNG bytes)."""

    markdown: str = ""
    html: str = ""
    figures: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Board:
    title: str
    markdown: str = ""
    html: str = ""
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    records: list[dict] | None = None  # the records the board shows (after its own filtering and dedup)
    page: str | None = None  # a suite's board: the name of its own page (<page>.md, .html; default suite-<name>)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


def fig_png(fig, max_px: int = PAGE_PX) -> bytes:
    """A matplotlib figure as PNG bytes (110 dpi, tight), never wider than `max_px` (saved again at a lower dpi when
    the tight box comes out wider); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI, bbox_inches="tight")
    width = png_size(buf.getvalue())[0]
    if width > max_px:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=FIG_DPI * (max_px - 2) / width, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def img_html(name: str, png: bytes, alt: str) -> str:
    """A figure of the page's directory (`name`, written beside the page) with `alt` as its alt text and caption."""
    w, h = png_size(png)
    return (f'<figure><img alt="{html.escape(alt)}" src="{html.escape(name)}" width="{w}" height="{h}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _cell_px(text: str) -> float:
    text = str(text)
    longest_word = max((len(w) for w in text.split()), default=0)
    return min(len(text), max(longest_word, WRAP_CH)) * CHAR_PX + CELL_PAD_PX


def column_px(header: str, cells: list) -> float:
    """Estimated width of one column: its widest cell, long cells wrapped at spaces (`WRAP_CH`)."""
    return max(_cell_px(c) for c in [header, *cells])


def table_px(headers: list[str], rows: list[list]) -> float:
    """Estimated width in pixels of the HTML table: the sum of its columns' estimates (`column_px`)."""
    return sum(column_px(h, [r[i] for r in rows if i < len(r)]) for i, h in enumerate(headers))


def split_columns(headers: list[str], rows: list[list], key: int = 1, limit: float = TABLE_PX) -> list[tuple[list, list]]:
    """The table as column groups that each fit `limit` pixels: the first `key` columns repeated in every group, the
    others in order. A table that fits is returned whole; a single column wider than the limit gets a group alone."""
    if table_px(headers, rows) <= limit or len(headers) <= key + 1:
        return [(headers, rows)]
    widths = [column_px(h, [r[i] for r in rows]) for i, h in enumerate(headers)]
    base = sum(widths[:key])
    groups, current, used = [], [], base
    for i in range(key, len(headers)):
        if current and used + widths[i] > limit:
            groups.append(current)
            current, used = [], base
        current.append(i)
        used += widths[i]
    groups.append(current)
    keep = list(range(key))
    return [([headers[i] for i in keep + g], [[r[i] for i in keep + g] for r in rows]) for g in groups]


def table_html(headers: list[str], rows: list[list]) -> str:
    """An HTML table, every cell escaped, in a box that scrolls rather than clips should a browser draw it wider."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def add_table(md: list[str], hp: list[str], headers: list[str], rows: list[list], key: int = 1) -> None:
    """Append one table to a board's Markdown (GitHub style, cells as written) and HTML parts; a table too wide for
    the page is split into column groups repeating its first `key` columns (`split_columns`)."""
    parts = split_columns([str(h) for h in headers], [[str(c) for c in r] for r in rows], key)
    for n, (h, r) in enumerate(parts, 1):
        if len(parts) > 1:
            add_text(md, hp, f"(columns, part {n} of {len(parts)})")
        md.append(tabulate(r, headers=h, tablefmt="github", disable_numparse=True) + "\n")
        hp.append(table_html(h, r))


def add_heading(md: list[str], hp: list[str], text: str, level: int = 3) -> None:
    """Append one heading to a board's Markdown (`### text`) and HTML (`<h3>text</h3>`) parts; a board's own
    sections are level 3 (the page gives the board a level-2 heading)."""
    md.append(f"{'#' * level} {text}\n")
    hp.append(f"<h{level}>{html.escape(text)}</h{level}>")


def add_text(md: list[str], hp: list[str], text: str) -> None:
    """Append one paragraph to a board's Markdown and HTML parts."""
    md.append(text + "\n")
    hp.append(f"<p>{html.escape(text)}</p>")


def add_warning(md: list[str], hp: list[str], text: str) -> None:
    """Append a warning: a quote in Markdown, a highlighted paragraph in HTML."""
    md.append(f"> {text}\n")
    hp.append(f'<p class="warn">{html.escape(text)}</p>')


def add_figure(target, md: list[str], hp: list[str], name: str, png: bytes, alt: str) -> None:
    """Keep a figure in `target.figures` (a Board or Headline) and show it in both parts."""
    target.figures[name] = png
    md.append(f"![{alt}]({name})\n")
    hp.append(img_html(name, png, alt))


def method_label(r: dict) -> str:
    """A KV record's method as boards show it: the name, plus the variant options it was run with (the method's
    `VARIANT_PARAMS` away from their defaults), e.g. "fourier (period=pow2)"."""
    variants = variant_params(r["method"])
    mp = (r.get("params") or {}).get("method_params") or {}
    extra = [f"{k}={mp[k]}" for k in variants if k in mp and mp[k] != variants[k]]
    return r["method"] + (f" ({', '.join(extra)})" if extra else "")
