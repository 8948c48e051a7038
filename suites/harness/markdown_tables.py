"""Parsing the leaderboard's Markdown back into tables, for the board tests."""
from __future__ import annotations


def _join(whole: list[list[str]], part: list[list[str]]) -> None:
    """Append a column group's columns to the table it continues (its first columns repeat the table's key)."""
    key = next(i for i, (a, b) in enumerate(zip(whole[0] + [None], part[0])) if a != b)
    for row, more in zip(whole, part):
        row += more[key:]


def sections(md: str) -> dict[str, list[list[list[str]]]]:
    """Markdown -> {## or ### heading: [table, ...]}, a table being its rows (header first) of stripped cells. A table
    the board split into column groups ("(columns, part k of n)", harness.boards.page.add_table) comes back whole."""
    out: dict[str, list] = {}
    heading, table, continues, merging = None, None, False, False

    def close():
        if table is not None and merging:
            _join(out[heading][-1], table)

    for line in md.splitlines() + [""]:
        if line.startswith("|") and heading is not None:
            if table is None:
                table, merging, continues = [], continues, False
                if not merging:
                    out[heading].append(table)
            if not set(line) <= set("|-: "):
                table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        close()
        table = None
        if line.startswith(("## ", "### ")):
            heading, continues = line.split(" ", 1)[1], False
            out[heading] = []
        elif line.startswith("(columns, part "):
            continues = not line.startswith("(columns, part 1 of")
    return out
