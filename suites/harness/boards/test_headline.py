"""The headline page and the family pages: a headline of a few screens with each family's winner table and key
plot linking to its page, provenance at the bottom; every table and figure fits a 1400-px page. Checked on a
leaderboard built from planted records of every family and on the committed leaderboard/ (built from results/).
No browser runs here: widths are the character-count estimate of harness/boards/page.py and the PNGs' pixel sizes,
heights the estimate of suites/harness/page_fit.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.boards.leaderboard import FAMILIES, build_leaderboard
from harness.boards.page import PAGE_PX, TABLE_PX, add_table, png_size, split_columns, table_px
from harness.store import ResultsStore
from suites.harness.boards.test_pareto_board import records_of_every_family, sched_cell
from suites.harness.page_fit import height_px, read_page

ROOT = Path(__file__).resolve().parents[3]
SCREEN_PX = 900
HEADLINE_SCREENS = 5
FAMILY_SLUGS = [f.slug for f in FAMILIES]


def _store() -> list[dict]:
    recs = records_of_every_family()
    for seed in (0, 1, 2):  # a third load and seed: the scheduling plot has lines, not points
        recs += sched_cell("chat", "fcfs", 3.0, 12.0 + seed, 30.0, seed) + sched_cell("chat", "laps_sd", 3.0, 9.0, 40.0, seed)
    return recs


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("headline")
    ResultsStore(root / "results").append(_store())
    return root / "board", build_leaderboard(root / "results", root / "board")


def _check_folder(folder: Path) -> None:
    """Every table of every HTML page fits the page; every figure is at most PAGE_PX wide and shown by a page."""
    shown = set()
    for page_path in sorted(folder.glob("*.html")):
        page = read_page(page_path)
        for table in page.tables:
            width = table_px(table[0], table[1:])
            assert width <= TABLE_PX, f"{page_path.name}: a table of {width:.0f} px: {table[0]}"
        shown |= set(page.images)
    for png in sorted(folder.glob("*.png")):
        w, _ = png_size(png.read_bytes())
        assert w <= PAGE_PX, f"{png.name} is {w} px wide"
    assert shown <= {p.name for p in folder.glob("*.png")}, "a page shows a figure that is not there"


def test_the_headline_links_every_family_page_and_ends_with_provenance(board):
    folder, paths = board
    md = paths["markdown"].read_text(encoding="utf-8")
    page = read_page(paths["html"])
    sections = re.findall(r"^## (.+)$", md, re.M)
    assert sections == ["KV-cache compression", "Kernels", "dLLM caches", "Schedulers", "Pareto fronts", "Provenance"]
    for slug in FAMILY_SLUGS:
        assert f"]({slug}.md)" in md and f"{slug}.html" in page.links
        family = paths[f"{slug}.md"].read_text(encoding="utf-8")
        assert "[headline](README.md)" in family and "index.html" in read_page(paths[f"{slug}.html"]).links
    tail = md[md.index("## Provenance"):]
    assert f"- records: {len(_store())}" in tail and "- git: abc, kv-sha, sched-sha" in tail
    assert "- devices: cpu: sched-box; cpu: test; " in tail and "[niah.jsonl](../results/niah.jsonl)" in tail
    assert "Records used" not in md  # the per-board provenance is on the family pages
    key_plots = re.findall(r"\]\((headline_\w+\.png)\)", md)
    assert key_plots == ["headline_kv_heatmaps.png", "headline_kernels_latency.png", "headline_dllm_throughput.png",
                         "headline_scheduling_load.png"]
    assert page.images == key_plots


def test_the_headline_fits_a_few_screens_and_every_page_fits_the_width(board):
    folder, paths = board
    height = height_px(read_page(paths["html"]), folder)
    assert 1000 < height <= HEADLINE_SCREENS * SCREEN_PX, height
    assert len(paths["markdown"].read_text(encoding="utf-8").splitlines()) < 150
    _check_folder(folder)


def test_a_wide_table_is_split_into_groups_that_fit():
    headers = ["method", *(f"niah_multikey_{i}" for i in range(20))]
    rows = [["fourier (fractions=per_layer)", *(f"{i}.5" for i in range(20))]]
    assert table_px(headers, rows) > TABLE_PX
    parts = split_columns(headers, rows)
    assert len(parts) > 1 and all(table_px(h, r) <= TABLE_PX for h, r in parts)
    assert all(h[0] == "method" and r[0][0] == rows[0][0] for h, r in parts)  # the key column repeated
    assert [c for h, _ in parts for c in h[1:]] == headers[1:]  # every column once, in order
    md, hp = [], []
    add_table(md, hp, headers, rows)
    assert sum("<table>" in x for x in hp) == len(parts) and md[0] == f"(columns, part 1 of {len(parts)})\n"
    assert split_columns(headers[:3], rows) == [(headers[:3], rows)]  # a table that fits stays whole


def test_the_committed_leaderboard_fits_the_page():
    """The committed pages (rebuilt from results/ by `python -m harness run`, test_committed_tree.py) fit too."""
    folder = ROOT / "leaderboard"
    names = {p.name for p in folder.iterdir()}
    for slug in FAMILY_SLUGS:
        assert {f"{slug}.md", f"{slug}.html"} <= names, slug
    _check_folder(folder)
    assert height_px(read_page(folder / "index.html"), folder) <= HEADLINE_SCREENS * SCREEN_PX


def test_every_heading_is_written_by_add_heading():
    """A heading is a Markdown line and an HTML tag that must say the same: only the page helpers' `add_heading`
    writes either, so no board spells a heading out by hand."""
    by_hand = re.compile(r"""<h[1-6][ >]|["']#{1,6} """)
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "def add_heading(" in text:
            continue
        found += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1) if by_hand.search(line)]
    assert not found, "headings written by hand (use harness.boards.page.add_heading):\n" + "\n".join(found)
