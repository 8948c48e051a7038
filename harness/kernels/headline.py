"""The kernels family on the headline page: the fastest kernel of each shape and batch at the longest context
where several were measured, how close it runs to the copy-bandwidth roofline, how many conformance runs pass; and
the latency-vs-context plot of the main shape with the roofline."""
from __future__ import annotations

from collections import Counter, defaultdict

from harness.boards.page import Headline, add_figure, add_table, add_text
from harness.kernels.board import bench_cells, context_text, conformance_rows
from harness.kernels.plot import kernel_label, latency_figure, roofline_ms

MAIN_SHAPE = "llama3-8b"


def winner_rows(cells: list[dict]) -> list[list]:
    """Per (shape, batch): at the longest context with at least two kernels measured (else the longest), the
    fastest kernel whose output passed its check, its latency, the roofline's share of it, and the runner-up's
    slowdown."""
    by_panel: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        wrong = c["extra"].get("checked") and not c["extra"].get("correct")
        if "latency_ms" in c["metrics"] and not wrong:
            r = c["record"]
            by_panel[(r["model"], r["params"]["batch"])][r["params"]["context"]].append(c)
    rows = []
    for (shape, batch), by_ctx in sorted(by_panel.items()):
        context = max(by_ctx, key=lambda n: (len(by_ctx[n]) > 1, n))
        ranked = sorted(by_ctx[context], key=lambda c: c["metrics"]["latency_ms"])
        best = ranked[0]
        roof = roofline_ms(best)
        ms = best["metrics"]["latency_ms"]
        second = (f"{kernel_label(ranked[1]['record'])} ({ranked[1]['metrics']['latency_ms'] / ms:.2f}x)"
                  if len(ranked) > 1 else "—")
        rows.append([shape, batch, context_text(context), kernel_label(best["record"]), f"{ms:.4g}",
                     f"{100 * roof / ms:.0f}%" if roof else "—", second])
    return rows


def kernels_headline(records: list[dict]) -> Headline | None:
    cells = bench_cells(records)
    conformance = conformance_rows(records)
    if not cells and not conformance:
        return None
    h = Headline()
    md, hp = [], []
    if conformance:
        passed = sum(r["passed"] for r in conformance)
        failed = [f"{r['op']} / {r['impl']} ({r['profile']})" for r in conformance if not r["passed"]]
        add_text(md, hp, f"Conformance: {passed} of {len(conformance)} kernel runs pass (the newest run of each op, "
                         "implementation, profile and device)" + (f"; failing: {', '.join(failed)}." if failed else "."))
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["record"]["params"].get("dtype", "?"), c["record"]["device"])].append(c)
    measured = {k: g for k, g in groups.items() if any("latency_ms" in c["metrics"] for c in g)}
    if measured:
        key = max(measured, key=lambda k: (len(measured[k]), k))
        group = measured[key]
        add_text(md, hp, f"Decode attention, {key[0]} on {key[1]}: the fastest kernel per shape and batch (latency "
                         "in ms; roofline: the time its bytes take at the copy bandwidth, as % of its latency).")
        add_table(md, hp, ["shape", "batch", "context", "fastest", "ms", "roofline", "runner-up (slower by)"],
                  winner_rows(group), key=2)
        shapes = Counter(c["record"]["model"] for c in group)
        shape = MAIN_SHAPE if MAIN_SHAPE in shapes else shapes.most_common(1)[0][0]
        add_figure(h, md, hp, "headline_kernels_latency.png",
                   latency_figure(group, f"Decode latency vs context, {shape}, {key[0]} on {key[1]}", shapes=[shape]),
                   f"Decode latency vs context (log-log) with the copy-bandwidth roofline, {shape}")
    h.markdown, h.html = "\n".join(md), "\n".join(hp)
    return h
