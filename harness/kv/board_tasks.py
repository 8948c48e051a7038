"""Leaderboard boards of the RULER and LongBench suites: KV methods x tasks, task groups and length buckets.

Scores are the tasks' own metrics (RULER: recall of the gold strings; LongBench: the official metric per task),
x100, averaged over samples; a row's "KV % of full" is the bytes its caches held over the full cache's. Runs
under different settings (model, compression ratio, question-aware, protocol) get separate tables.
"""
from __future__ import annotations

import json
from collections import defaultdict

from harness.boards.page import Board, add_heading, add_table, add_text, method_label
from harness.store import newest_records


def _settings(r: dict) -> tuple:
    p = r["params"]
    return (r["model"], r["impl"], p.get("compression_ratio"), p.get("question_aware"),
            json.dumps(r.get("protocol", {}), sort_keys=True))


def _title(settings: tuple) -> str:
    model, impl, ratio, aware, _ = settings
    return f"{model}, compression ratio {ratio}, {'question-aware' if aware else 'question-agnostic'}, attention {impl}"


def _table(records: list[dict], column) -> tuple[list[str], list[list]]:
    """Rows per method: mean score x100 per column(r) value, the average over samples, KV % of full."""
    score, kv, full = defaultdict(lambda: defaultdict(list)), defaultdict(float), defaultdict(float)
    for r in records:
        if r["metric"] == "score":
            score[method_label(r)][column(r)].append(r["value"])
        elif r["metric"] == "kv_bytes":
            kv[method_label(r)] += r["value"]
        elif r["metric"] == "kv_bytes_full":
            full[method_label(r)] += r["value"]
    cols = sorted({c for m in score.values() for c in m}, key=lambda c: (isinstance(c, str), c))
    rows = []
    for method, by_col in score.items():
        allv = [v for vs in by_col.values() for v in vs]
        rows.append([method, *(f"{100 * sum(by_col[c]) / len(by_col[c]):.1f}" if c in by_col else "—" for c in cols),
                     f"{100 * sum(allv) / len(allv):.1f}", f"{100 * kv[method] / full[method]:.1f}" if full[method] else "—",
                     len(allv)])
    rows.sort(key=lambda row: -float(row[len(cols) + 1]))
    return [str(c) for c in cols], rows


def _board(records: list[dict], suite: str, title: str, intro: str, views: list[tuple[str, object]]):
    recs = newest_records(records, suite)
    if not recs:
        return None
    board = Board(title, records=[r for r in recs if r["metric"] in ("score", "kv_bytes", "kv_bytes_full")])
    md, hp = [], []
    add_text(md, hp, intro)
    groups: dict = defaultdict(list)
    for r in recs:
        groups[_settings(r)].append(r)
    for settings, rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        add_heading(md, hp, _title(settings))
        for label, column in views:
            cols, rows = _table(rs, column)
            if not rows:
                continue
            add_text(md, hp, label)
            add_table(md, hp, ["method", "average", "KV % of full", "samples", *cols],
                      [[r[0], *r[len(cols) + 1:], *r[1:len(cols) + 1]] for r in rows])
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board


def ruler_board(records: list[dict]):
    """RULER: per task and per context length."""
    return _board(records, "ruler", "RULER-style synthetic tasks",
                  "Each sample is generated offline at the given length (`harness/kv/ruler.py`) and scored by recall of "
                  "its gold strings (RULER's string_match_all), x100. Columns: tasks (all lengths), then lengths "
                  "(all tasks).",
                  [("By task:", lambda r: r["task"]), ("By context length (tokens):", lambda r: r["params"].get("length"))])


def longbench_board(records: list[dict]):
    """LongBench: per task group, per task, and (LongBench-E rows) per length bucket."""
    views = [("By task group:", lambda r: r["extra"].get("group", "?")), ("By task:", lambda r: r["task"])]
    if any(r["suite"] == "longbench" and r["params"].get("e") for r in records):
        views.append(("By length bucket (LongBench-E rows; other rows under '-'):",
                      lambda r: r["extra"].get("bucket", "?") if r["params"].get("e") else "-"))
    return _board(records, "longbench", "LongBench",
                  "Scores are the official metric of each task (`harness/kv/longbench_metrics.py`), x100, averaged "
                  "over rows; prompts are middle-truncated to the model's limit. Columns: task groups, tasks, and "
                  "LongBench-E's length buckets where those rows ran.", views)
