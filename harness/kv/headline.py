"""The KV-cache family on the headline page: per benchmark the most accurate compressed method with its interval
and the methods statistically tied with it, and the NIAH heatmaps of the setting with the most methods."""
from __future__ import annotations

from harness.boards.page import Headline, add_figure, add_table, add_text
from harness.boards.pareto_rows import with_ci
from harness.kv.board_niah import heatmaps, niah_settings
from harness.kv.pareto_rows import kv_panels

FULL = "full"
COMPRESSED_BELOW = 99.0  # % of the full cache's bytes under which a row counts as compressed


def winner_rows(panels: list[dict]) -> list[list[str]]:
    """One row per benchmark panel: the full cache's accuracy, the most accurate compressed row, its interval and
    KV %, and the compressed rows whose accuracy interval overlaps the winner's (not significantly worse)."""
    out = []
    for p in panels:
        rows = p["rows"]
        full = next((r for r in rows if r["label"] == FULL), None)
        compressed = [r for r in rows if r["label"] != FULL and r["bytes"] is not None and r["bytes"] < COMPRESSED_BELOW]
        if not compressed:
            continue
        best = max(compressed, key=lambda r: (r["acc"], -r["bytes"]))
        lo, hi = best["ci"]["acc"]
        tied = [r["label"] for r in compressed if r is not best and r["ci"]["acc"][1] >= lo]
        out.append([p["short"], with_ci(full["acc"], *full["ci"]["acc"]) if full else "—", best["label"],
                    with_ci(best["acc"], lo, hi), f"{best['bytes']:.1f}", ", ".join(tied) or "none"])
    return out


def kv_headline(records: list[dict]) -> Headline | None:
    panels, _ = kv_panels(records)
    settings = [s for s in niah_settings(records) if s["by_method"]]
    if not panels and not settings:
        return None
    h = Headline()
    md, hp = [], []
    rows = winner_rows(panels)
    if rows:
        add_text(md, hp, "Accuracy (%) with its 95% bootstrap interval; the winner is the most accurate method that "
                         "holds a compressed cache; tied: compressed methods whose interval reaches the winner's.")
        add_table(md, hp, ["benchmark", "full cache", "winner (compressed)", "accuracy % [95% CI]", "KV % of full",
                           "tied within the CI"], rows)
    if settings:
        main = max(settings, key=lambda s: (len(s["by_method"]), sum(len(v) for v in s["by_method"].values())))
        add_figure(h, md, hp, "headline_kv_heatmaps.png", heatmaps(main["by_method"], f"NIAH: {main['heading']}"),
                   f"NIAH heatmaps (needle depth x context length, fraction retrieved), {main['heading']}")
    h.markdown, h.html = "\n".join(md), "\n".join(hp)
    return h
