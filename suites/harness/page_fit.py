"""Reading the leaderboard's HTML back for the page-fit tests: each table's cells, each figure's file, and an
estimate of how tall the page is in a 1400-px window (no browser here: figures by their pixel size, table rows and
paragraphs by line counts)."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from harness.boards.page import CHAR_PX, TABLE_PX, png_size

ROW_PX = 26  # a table row of 14-px text
LINE_PX = 24  # a line of body text
HEADING_PX = 48


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.paragraphs: list[str] = []
        self.headings = 0
        self._cell: list[str] | None = None
        self._para: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag in ("p", "li"):
            self._para = []
        elif tag in ("h1", "h2", "h3"):
            self.headings += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag in ("p", "li") and self._para is not None:
            self.paragraphs.append("".join(self._para))
            self._para = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._para is not None:
            self._para.append(data)


def read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def height_px(page: _Page, folder: Path) -> float:
    """Figures at their pixel height (scaled to the text width when wider), rows, text lines and headings."""
    figures = 0.0
    for src in page.images:
        w, h = png_size((folder / src).read_bytes())
        figures += h * min(1.0, TABLE_PX / w)
    rows = sum(len(t) for t in page.tables)
    lines = sum(max(1, len(p) * CHAR_PX // TABLE_PX + 1) for p in page.paragraphs)
    return figures + rows * ROW_PX + lines * LINE_PX + page.headings * HEADING_PX
