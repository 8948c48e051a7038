"""Parsing the leaderboard's Markdown back into tables, for the board tests."""
from __future__ import annotations


def sections(md: str) -> dict[str, list[list[list[str]]]]:
    """Markdown -> {### heading: [table, ...]}, a table being its rows (header first) of stripped cells."""
    out, heading, table = {}, None, None
    for line in md.splitlines():
        if line.startswith("### "):
            heading, table = line[4:], None
            out[heading] = []
        elif line.startswith("|") and heading is not None:
            if table is None:
                table = []
                out[heading].append(table)
            if not set(line) <= set("|-: "):
                table.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            table = None
    return out
