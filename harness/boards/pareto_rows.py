"""What the rows of the cross-family Pareto page (`harness/boards/pareto_board.py`) share, whatever their family.

Each family builds its own panels from the store, one row per method: `harness/kv/pareto_rows.py`,
`harness/dllm/pareto_rows.py`, `harness/scheduling/pareto_rows.py`. A panel is a dict: its rows (objectives "acc",
"bytes", "lat" with their intervals in row["ci"], None where not measured, and the table's cells), the table
headers, the axes it has (label of each) and the model each axis was measured on, and one "source" row per axis
(suite, metric, unit, model, device, aggregation). Fronts are ranked only over axes measured on one model
(`panel_combos`): a latency of LLaDA-8B shapes is never set against the accuracy of our tiny dLLM. They are CI-aware
(`harness/boards/pareto.py`): accuracy with its bootstrap interval, bytes within 1%, a single timing within 5%,
latencies over seeds with their t-interval. Each builder also returns the records it used, which the leaderboard
links under the board.
"""
from __future__ import annotations

import json

from harness.boards.pareto import ci_front

SENSES = {"acc": "max", "bytes": "min", "lat": "min"}
PAIRS = (("bytes", "acc"), ("lat", "acc"), ("lat", "bytes"))  # (x, y) of each scatter
ALL = ("acc", "bytes", "lat")
CODES = {("bytes", "acc"): "A×B", ("lat", "acc"): "A×L", ("lat", "bytes"): "B×L", ALL: "all 3"}
FRONT_HEADER = "on the front of"
FRONT_KEY = ("On the front of: A×B accuracy and bytes, A×L accuracy and latency, B×L bytes and latency, all 3 the "
             "three together; — on none (or a value not measured).")
NOT_MEASURED = "not measured"


def protocol_key(r: dict) -> str:
    """A record's protocol as a string that sorts and compares (panels never rank records of different ones)."""
    return json.dumps(r.get("protocol", {}), sort_keys=True)


def mean_of(xs: list[float]) -> float | None:
    """The mean, None for no values."""
    return sum(xs) / len(xs) if xs else None


def fmt_measured(v: float | None, spec: str) -> str:
    """A table cell: the value formatted, or NOT_MEASURED for None."""
    return NOT_MEASURED if v is None else format(v, spec)


def units_of(recs: list[dict], metric: str, default: str = "—") -> str:
    """The units the records of one metric are in, for a panel's source row."""
    return ", ".join(sorted({r["unit"] for r in recs if r["metric"] == metric})) or default


def devices_of(recs: list[dict]) -> str:
    """The devices that measured the records, for a panel's source row."""
    return "; ".join(sorted({r["device"] for r in recs})) or "—"


def holding(value: float, lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) widened, if rounding left it so, to hold the value."""
    return min(lo, value), max(hi, value)


def with_ci(value: float, lo: float, hi: float, spec: str = ".1f") -> str:
    return f"{value:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def panel_combos(models: dict[str, str]) -> list[tuple]:
    """The objective sets a panel ranks: each pair of its axes (as PAIRS orders them) and all three, only those whose
    axes were measured on one model."""
    out = [p for p in PAIRS if all(k in models for k in p) and models[p[0]] == models[p[1]]]
    if all(k in models for k in ALL) and len({models[k] for k in ALL}) == 1:
        out.append(ALL)
    return out


def mark_fronts(rows: list[dict], combos=(*PAIRS, ALL)) -> None:
    """row["fronts"][combo]: whether the row is on the CI-aware Pareto front of those objectives among the rows that
    have them all (intervals from row["ci"], exact where a row has none); None when the row lacks one of them."""
    for combo in combos:
        have = [i for i, r in enumerate(rows) if all(r.get(k) is not None for k in combo)]
        points = [[rows[i][k] for k in combo] for i in have]
        intervals = [[(rows[i].get("ci") or {}).get(k) or (rows[i][k], rows[i][k]) for k in combo] for i in have]
        on = {have[j] for j in ci_front(points, intervals, [SENSES[k] for k in combo])}
        for i, r in enumerate(rows):
            r.setdefault("fronts", {})[combo] = (i in on) if i in have else None


def front_cell(row: dict, combos) -> str:
    """The table cell naming the fronts a row is on (CODES), or —."""
    return ", ".join(CODES[c] for c in combos if row["fronts"].get(c)) or "—"


def timing_reliable(record: dict) -> bool:
    """False for a timing measured while the machine had more runnable tasks than cores (harness/cpu_load.py);
    records from before that was measured count as reliable."""
    return (record.get("extra") or {}).get("load", {}).get("reliable") is not False
