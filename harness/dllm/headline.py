"""The dLLM family on the headline page: the most accurate decoding method of our trained dLLM (with the methods
tied within its interval), the fastest at LLaDA-8B shapes, Sparse-dLLM's targets per device; and tokens/s vs
prompt length on the device with the most measurements. Accuracy and speed come from different models and are
never ranked together."""
from __future__ import annotations

from harness.boards.page import Headline, add_figure, add_table, add_text
from harness.boards.pareto_rows import with_ci
from harness.dllm.board import (TARGET_MEMORY, TARGET_PROMPT, TARGET_SPEEDUP, VANILLA, target_rows, throughput_cells,
                                throughput_figure, variant_labels, variant_order)
from harness.dllm.pareto_rows import dllm_panels


def winner_rows(panels: list[dict], groups: dict) -> list[list[str]]:
    """measure, model / device, best, value, others tied (interval overlaps) or its ratio to vanilla."""
    out = []
    for p in panels:
        rows = p["rows"]
        if "acc" in p["axes"]:
            best = max(rows, key=lambda r: r["acc"])
            lo = best["ci"]["acc"][0]
            tied = [r["label"] for r in rows if r is not best and r["ci"]["acc"][1] >= lo]
            out.append(["accuracy % [95% CI]", p["models"]["acc"], best["label"], with_ci(best["acc"], *best["ci"]["acc"]),
                        "tied: " + (", ".join(tied) or "none")])
        else:
            best = min(rows, key=lambda r: r["lat"])
            vanilla = next((r for r in rows if r["label"].startswith(VANILLA + " ")), None)
            ratio = f"{vanilla['lat'] / best['lat']:.1f}x vanilla's tokens/s" if vanilla else "no vanilla measured"
            out.append([p["short"].replace("dLLM speed", "tokens/s"), p["models"]["lat"], best["label"],
                        f"{1000 / best['lat']:.2f} tokens/s", ratio])
    for (device, model, _), cells in sorted(groups.items()):
        variants = sorted({v for v, _ in cells}, key=variant_order)
        labels, _ = variant_labels(variants)
        for row in target_rows(cells, variants, labels):
            if row[2] != "—":
                out.append([f"Sparse-dLLM target @{TARGET_PROMPT // 1024}k", f"{model}, {device}", row[0],
                            f"{row[2]} vanilla's tokens/s (≥ {TARGET_SPEEDUP:g}x: {row[3]})",
                            f"memory {row[4]} vanilla's (≤ {TARGET_MEMORY:g}x: {row[5]})"])
    return out


def dllm_headline(records: list[dict]) -> Headline | None:
    panels, _ = dllm_panels(records)
    groups = throughput_cells(records)
    if not panels and not groups:
        return None
    h = Headline()
    md, hp = [], []
    rows = winner_rows(panels, groups)
    if rows:
        add_text(md, hp, "Accuracy from our small trained dLLM; speed and memory from LLaDA-8B shapes with random "
                         "weights on a GPU (a different model: never ranked together).")
        add_table(md, hp, ["measure", "model / device", "best", "value", "others"], rows)
    measured = {k: c for k, c in groups.items() if any(not x["status"] and "tokens_per_s" in x["metrics"]
                                                        for x in c.values())}
    if measured:
        key = max(measured, key=lambda k: (len(measured[k]), k))
        cells = measured[key]
        variants = sorted({v for v, _ in cells}, key=variant_order)
        labels, _ = variant_labels(variants)
        add_figure(h, md, hp, "headline_dllm_throughput.png",
                   throughput_figure(cells, variants, labels, f"Tokens/s vs prompt length: {key[1]} on {key[0]}",
                                     metrics=("tokens_per_s",)),
                   f"Tokens/s (log) vs prompt length, {key[1]} on {key[0]}; dotted: the paper's points")
    h.markdown, h.html = "\n".join(md), "\n".join(hp)
    return h
