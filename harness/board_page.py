"""What every leaderboard board is made of: the `Board` a board function returns, and the writers its Markdown and
HTML fragments and figures share (a table, a paragraph, a warning, a figure as PNG bytes and as an inline <img>).

The boards (board_*.py) and the leaderboard that assembles them (leaderboard.py) import this module; it imports
none of them.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tabulate import tabulate  # noqa: E402

from reference.kv import variant_params  # noqa: E402

__all__ = ["Board", "plt", "fig_png", "img_html", "table_html", "add_table", "add_text", "add_warning", "method_label"]


@dataclass
class Board:
    title: str
    markdown: str = ""
    html: str = ""
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    records: list[dict] | None = None  # the records the board shows (after its own filtering and dedup)
    page: str | None = None  # also written alone to this file of the leaderboard directory


def fig_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (110 dpi, tight); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def img_html(name: str, png: bytes, alt: str) -> str:
    """A figure inlined in HTML (base64 PNG) with `alt` as its alt text and caption."""
    data = base64.b64encode(png).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def table_html(headers: list[str], rows: list[list]) -> str:
    """An HTML table, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def add_table(md: list[str], hp: list[str], headers: list[str], rows: list[list]) -> None:
    """Append one table to a board's Markdown (GitHub style, cells as written) and HTML parts."""
    md.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) + "\n")
    hp.append(table_html(headers, rows))


def add_text(md: list[str], hp: list[str], text: str) -> None:
    """Append one paragraph to a board's Markdown and HTML parts."""
    md.append(text + "\n")
    hp.append(f"<p>{html.escape(text)}</p>")


def add_warning(md: list[str], hp: list[str], text: str) -> None:
    """Append a warning: a quote in Markdown, a highlighted paragraph in HTML."""
    md.append(f"> {text}\n")
    hp.append(f'<p class="warn">{html.escape(text)}</p>')


def method_label(r: dict) -> str:
    """A KV record's method as boards show it: the name, plus the variant options it was run with (the method's
    `VARIANT_PARAMS` away from their defaults), e.g. "fourier (period=pow2)"."""
    variants = variant_params(r["method"])
    mp = (r.get("params") or {}).get("method_params") or {}
    extra = [f"{k}={mp[k]}" for k in variants if k in mp and mp[k] != variants[k]]
    return r["method"] + (f" ({', '.join(extra)})" if extra else "")
