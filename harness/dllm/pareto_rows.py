"""The dLLM family's rows of the cross-family Pareto page (`harness/boards/pareto_board.py`): accuracy x peak cache
bytes of our trained dLLM, and ms/token x peak memory of LLaDA-8B shapes at one (device, prompt length); the two
models are never ranked together."""
from __future__ import annotations

from collections import defaultdict

from harness.boards.pareto import BYTES_TOLERANCE, TIMING_TOLERANCE, band
from harness.boards.pareto_rows import (FRONT_HEADER, devices_of, fmt_measured, holding, mark_fronts, mean_of,
                                        panel_combos, protocol_key, units_of, with_ci)
from harness.dllm.board import (ACCURACY_SUITE, THROUGHPUT_SUITE, newest_per_device, throughput_cells, variant_labels,
                                variant_of, variant_order)
from harness.stats import stratified_bootstrap_ci
from harness.store import newest_records


def pick_throughput(groups: dict) -> tuple | None:
    """((device, model, protocol), prompt length) with the most variants measured; ties: longer prompt, then name."""
    counts = defaultdict(set)
    for key, cells in groups.items():
        for (v, L), c in cells.items():
            if not c["status"] and "tokens_per_s" in c["metrics"]:
                counts[(key, L)].add(v[:3])
    return max(counts, key=lambda k: (len(counts[k]), k[1], k[0]), default=None)


def _accuracy_panel(acc: list[dict]) -> dict | None:
    """Our trained dLLM: accuracy (stratified bootstrap over each cell's examples) x peak cache bytes."""
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for r in acc:
        cells[variant_of(r)[:3]][r["metric"]].append(r)
    variants = sorted((v for v in cells if cells[v]["accuracy"]), key=lambda v: variant_order((*v, False)))
    if not variants:
        return None
    labels, _ = variant_labels([(*v, False) for v in variants])
    n_max = max(len(cells[v]["accuracy"]) for v in variants)
    rows = []
    for v in variants:
        accs = cells[v]["accuracy"]
        a = mean_of([r["value"] for r in accs])
        strata = [[100.0 * bool(x) for x in (r.get("extra") or {}).get("correct") or []] or [r["value"]] for r in accs]
        ci = {"acc": holding(a, *stratified_bootstrap_ci(strata))}
        b = mean_of([r["value"] / 2**20 for r in cells[v]["cache_bytes_peak"]])
        if b is not None:
            ci["bytes"] = band(b, BYTES_TOLERANCE)
        part = f" ({len(accs)} of {n_max} cells)" if len(accs) < n_max else ""
        rows.append({"label": labels[(*v, False)], "acc": a, "bytes": b, "lat": None, "ci": ci,
                     "cols": [labels[(*v, False)], with_ci(a, *ci["acc"]) + part, fmt_measured(b, ".1f")]})
    models = ", ".join(sorted({r["model"] for r in acc}))
    axes = {"acc": "accuracy (%)", "bytes": "cache MiB (peak)"}
    combos = panel_combos({k: models for k in axes})
    mark_fronts(rows, combos)
    return {"family": "dLLM decoding", "title": f"dLLM decoding, accuracy × cache: {models}", "short": "dLLM accuracy",
            "rows": rows, "combos": combos, "axes": axes, "models": {k: models for k in axes},
            "caption": "Our small trained dLLM (suite dllm): exact match on held-out examples, mean over the task x "
                       "length cells with a 95% bootstrap interval (examples resampled within each cell), and the "
                       "peak bytes the method's cache held (vanilla holds none).",
            "headers": ["method", "accuracy % [95% CI]", "cache MiB (peak, mean)", FRONT_HEADER],
            "sources": [["accuracy", ACCURACY_SUITE, "accuracy", units_of(acc, "accuracy"), models, devices_of(acc),
                         "mean over the variant's task x length cells; stratified bootstrap CI"],
                        ["bytes", ACCURACY_SUITE, "cache_bytes_peak", "MiB", models, devices_of(acc),
                         "mean over the same cells; within 1% counts as equal"]]}


def _speed_panel(records: list[dict]) -> tuple[dict | None, list[dict]]:
    """LLaDA-8B shapes with random weights at the (device, prompt length) with the most variants: ms per token x
    peak memory, both of that one run."""
    groups = throughput_cells(records)
    pick = pick_throughput(groups)
    if not pick:
        return None, []
    (device, model, proto), L = pick
    cells = groups[pick[0]]
    tlabels, _ = variant_labels(sorted({v for v, _ in cells}))
    best: dict[tuple, tuple] = {}  # variant -> (tokens/s, peak GiB, its throughput cell's label, full variant)
    for (v, n), c in cells.items():
        tps = c["metrics"].get("tokens_per_s")
        if n == L and not c["status"] and tps and (v[:3] not in best or tps > best[v[:3]][0]):
            best[v[:3]] = (tps, c["metrics"].get("peak_mem_gib"), tlabels[v], v)
    variants = sorted(best, key=lambda v: variant_order((*v, False)))
    labels, _ = variant_labels([(*v, False) for v in variants])
    rows = []
    for v in variants:
        tps, mem, cell_label, _ = best[v]
        lat = 1000 / tps
        ci = {"lat": band(lat, TIMING_TOLERANCE)}
        if mem is not None:
            ci["bytes"] = band(mem, BYTES_TOLERANCE)
        rows.append({"label": labels[(*v, False)], "acc": None, "bytes": mem, "lat": lat, "ci": ci,
                     "cols": [labels[(*v, False)], f"{lat:.1f}", f"{tps:.2f}", fmt_measured(mem, ".2f"), cell_label]})
    chosen = {b[3] for b in best.values()}
    used = [r for r in newest_per_device(records, THROUGHPUT_SUITE) if r["device"] == device and r["model"] == model
            and protocol_key(r) == proto and r["metric"] in ("tokens_per_s", "peak_mem_gib")
            and int(r["params"].get("prompt_len", 0)) == L and variant_of(r) in chosen]
    axes = {"bytes": "peak memory (GiB, weights included)", "lat": "ms per generated token"}
    combos = panel_combos({k: model for k in axes})
    mark_fronts(rows, combos)
    panel = {"family": "dLLM decoding", "title": f"dLLM decoding, speed × memory: {model}, {device}, {L}-token prompt",
             "short": f"dLLM speed @{L}", "rows": rows, "combos": combos, "axes": axes,
             "models": {k: model for k in axes},
             "caption": f"LLaDA-8B shapes with random weights (suite dllm_throughput) on {device} at a {L}-token "
                        f"prompt, the (device, prompt length) with the most variants measured ({len(rows)}); where a "
                        "variant ran with and without CUDA graphs the faster counts. A random-weight model has no "
                        "accuracy: this panel ranks speed and memory only.",
             "headers": ["method", "ms/token", "tokens/s", "peak GiB", "throughput cell", FRONT_HEADER],
             "sources": [["latency", THROUGHPUT_SUITE, "tokens_per_s (ms/token = 1000 / tokens_per_s)",
                          units_of(used, "tokens_per_s"), model, device,
                          f"one cell per variant at prompt_len {L}; within 5% counts as equal"],
                         ["bytes", THROUGHPUT_SUITE, "peak_mem_gib", units_of(used, "peak_mem_gib"), model, device,
                          "the same cell; within 1% counts as equal"]]}
    return panel, used


def dllm_panels(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Up to two panels, each of one model: accuracy x cache bytes of our trained dLLM, and ms/token x peak memory
    of LLaDA-8B shapes."""
    acc = [r for r in newest_records(records, ACCURACY_SUITE) if r["metric"] in ("accuracy", "cache_bytes_peak")]
    accuracy = _accuracy_panel(acc)
    speed, used = _speed_panel(records)
    return [p for p in (accuracy, speed) if p], (acc if accuracy else []) + used
