"""The dLLM caches board: decoding methods of masked-diffusion LMs, vanilla against the caches.

Sparse-dLLM (Song et al., arXiv 2508.02558), Fast-dLLM prefix and dual cache (Wu et al., arXiv 2505.22618) and
dLLM-Cache (Liu et al., arXiv 2506.06295) against vanilla decoding (every step a full forward over prompt and
response). Two suites feed it:

- "dllm" (harness/dllm/run.py): exact-match accuracy on the small masked-diffusion LM we trained, per task and
  context length; records "accuracy" (extra.correct: one bool per example), "tokens_equal_vanilla" and
  "cache_bytes_peak". Paired differences against vanilla use the per-example correctness of the same examples.
- "dllm_throughput" (harness/dllm/bench.py): tokens/s, peak memory and seconds per phase at LLaDA-8B shapes with
  random weights on a GPU; a cell that failed carries one "status" record instead. Speed-ups and memory ratios
  are taken against vanilla on the same device at the same prompt length, never across devices.

Only the newest record of each (cell, metric) counts, per device for the throughput suite (whose cell keys name
the kind of device: harness.store.KEYED_BY_DEVICE).
"""
from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from harness.boards.page import Board, add_figure, add_heading, add_table, add_text, add_warning, fig_png, plt
from harness.dllm.methods import labels
from harness.dllm.tasks import TASKS
from harness.stats import paired_delta
from harness.store import newest_records

ACCURACY_SUITE = "dllm"
THROUGHPUT_SUITE = "dllm_throughput"
VANILLA = "vanilla"
# Params that place a measurement (its column), not the method variant (its row).
AXES = ("length", "n", "prompt_len", "cuda_graphs")
PHASES = ("dense", "score", "sparse", "cached", "refresh", "partial")

# The targets for Sparse-dLLM with our kernels (impl triton), against vanilla on the same device
# (docs/sparse-dllm.md, "Reading the targets").
TARGET_PROMPT = 8192
TARGET_SPEEDUP = 12.0
TARGET_MEMORY = 1.1

# The published context-length sweep (LLaDA-8B-Instruct, one 48 GB RTX 4090), as read from the paper's figure by
# docs/sparse-dllm.md ("Published results"): reference rows, not our measurements.
PAPER_DEVICE = "RTX 4090 48 GB"
PAPER_TOKENS_PER_S = {  # prompt tokens -> tokens/s, or a status text
    "vanilla": {1024: 5.5, 8192: 0.8},
    "sparse_dllm": {1024: 27.5, 8192: 9.0},
    "fast_dllm": {1024: 20.4, 6144: 9.0, 8192: "out of memory"},
}
PAPER_PEAK_GB = {"vanilla": {1024: 16.0, 8192: 21.0}, "sparse_dllm": {1024: 16.4, 8192: 23.3}}
PAPER_LABEL = f"paper, {PAPER_DEVICE}, read from figure"
PAPER_MARKERS = {"vanilla": "x", "sparse_dllm": "^", "fast_dllm": "s"}


# ---------------------------------------------------------------- shared helpers
def _proto(r: dict) -> str:
    return json.dumps(r.get("protocol", {}), sort_keys=True)


def _fmt(v, spec: str = ".2f") -> str:
    return "—" if v is None or not math.isfinite(v) else format(v, spec)


def _ratio(v: float | None, base: float | None) -> str:
    return f"{v / base:.2f}x" if v is not None and base else "—"


def variant_of(r: dict) -> tuple:
    """A record's row: (method, impl, its other params as JSON, CUDA graphs requested)."""
    p = r["params"]
    rest = {k: v for k, v in sorted(p.items()) if k not in AXES}
    return r["method"], r["impl"], json.dumps(rest, sort_keys=True), bool(p.get("cuda_graphs"))


def variant_order(v: tuple) -> tuple:
    """Sort key of a variant: the methods in registry order (harness/dllm/methods.py), torch before other impls,
    higher keep ratio first."""
    method, impl, rest, graphs = v
    params = json.loads(rest)
    order = labels()
    m = (order.index(method), "") if method in order else (len(order), method)
    return (*m, impl != "torch", impl, -float(params.get("keep_ratio", 0)), rest, graphs)


def variant_labels(variants) -> tuple[dict[tuple, str], list[str]]:
    """Row labels: method (impl, the params that vary between its rows, keep ratio always, "graphs" when CUDA
    graphs were requested); and one "method: settings" line per method for the params its rows all share."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for method, _, rest, _ in variants:
        by_method[method].append(json.loads(rest))
    varying = {m: {k for k in set().union(*ps) if len({json.dumps(p.get(k)) for p in ps}) > 1}
               for m, ps in by_method.items()}
    labels = {}
    for v in variants:
        method, impl, rest, graphs = v
        params = json.loads(rest)
        parts = [impl]
        if "keep_ratio" in params:
            parts.append(f"keep {params['keep_ratio']:g}")
        parts += [f"{k} {params[k]}" for k in sorted(varying[method]) if k != "keep_ratio" and k in params]
        if graphs:
            parts.append("graphs")
        labels[v] = f"{method} ({', '.join(parts)})"
    settings = []
    for method in sorted(by_method, key=lambda m: variant_order((m, "", "{}", False))):
        shared = {k: v for k, v in by_method[method][0].items()
                  if k not in varying[method] and k != "keep_ratio" and all(p.get(k) == v for p in by_method[method])}
        if shared:
            settings.append(f"{method}: {', '.join(f'{k} {v}' for k, v in shared.items())}")
    return labels, settings


# ---------------------------------------------------------------- accuracy (suite "dllm")
def _column(r: dict) -> tuple:
    p = r["params"]
    task = (TASKS.index(r["task"]), "") if r["task"] in TASKS else (len(TASKS), r["task"])
    return (*task, p.get("length", 0), p.get("n", 0))


def _column_label(col: tuple, task_name: str) -> str:
    return f"{task_name}@{col[2]} (n={col[3]})"


def accuracy_rows(records: list[dict]) -> dict[tuple, dict]:
    """Accuracy records grouped by (model, protocol) -> {"cells": {(variant, column): {metric: record}}, ...}."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"cells": defaultdict(dict), "tasks": {}})
    for r in records:
        g = groups[(r["model"], _proto(r))]
        col = _column(r)
        g["tasks"][col] = r["task"]
        g["cells"][(variant_of(r), col)][r["metric"]] = r
    return groups


def paired_vs_vanilla(cells: dict, variant: tuple, vanilla: tuple | None, columns: list[tuple]):
    """(mean, lo, hi, pairs) of correct(variant) - correct(vanilla) over the examples both decoded (same task,
    length and n, the same held-out examples in the same order); None when there is nothing to pair."""
    if vanilla is None or variant == vanilla:
        return None
    a, b = [], []
    for col in columns:
        mine = cells.get((variant, col), {}).get("accuracy")
        base = cells.get((vanilla, col), {}).get("accuracy")
        if mine is None or base is None:
            continue
        ca, cb = (mine.get("extra") or {}).get("correct"), (base.get("extra") or {}).get("correct")
        if ca and cb and len(ca) == len(cb):
            a += [float(x) for x in ca]
            b += [float(x) for x in cb]
    if not a:
        return None
    mean, lo, hi = paired_delta(a, b)
    return mean, lo, hi, len(a)


def _accuracy_section(records: list[dict], md: list[str], hp: list[str]) -> None:
    groups = accuracy_rows(records)
    protocols = defaultdict(set)
    for model, proto in groups:
        protocols[model].add(proto)
    for (model, proto), g in sorted(groups.items()):
        cells = g["cells"]
        devices = sorted({r["device"] for c in cells.values() for r in c.values()})
        add_heading(md, hp, f"Accuracy: {model}")
        if len(protocols[model]) > 1:
            add_warning(md, hp, "Warning: records of this model were measured under different protocols; they are shown "
                          f"in separate tables and not compared. This table's protocol: `{proto}`")
        p = json.loads(proto)
        add_text(md, hp, "Exact match (%) of the generated answer on held-out examples of each task at each context "
                      f"length; n = examples per cell. Decoding: {p.get('loop', '?')} loop, gen_len "
                      f"{p.get('gen_len', '?')}, block_len {p.get('block_len', '?')}, steps {p.get('steps', '?')}, "
                      f"{p.get('remasking', '?')} remasking, temperature {p.get('temperature', '?')}. Mean: over "
                      "the row's cells (how many when not all), then one column per cell. Δ vs vanilla: mean paired difference in percentage "
                      "points over the same examples (task, length, n) decoded by both, with its 95% bootstrap "
                      f"interval. Measured on: {'; '.join(devices)}.")
        columns = sorted(g["tasks"])
        variants = sorted({v for v, _ in cells}, key=variant_order)
        labels, settings = variant_labels(variants)
        vanilla = next((v for v in variants if v[0] == VANILLA), None)
        headers = ["method", "mean", "Δ vs vanilla, pp [95% CI]", "paired examples",
                   *(_column_label(c, g["tasks"][c]) for c in columns)]
        rows = []
        for v in variants:
            accs = [cells[(v, c)]["accuracy"]["value"] if "accuracy" in cells.get((v, c), {}) else None
                    for c in columns]
            have = [a for a in accs if a is not None]
            mean = "—" if not have else f"{sum(have) / len(have):.1f}" + (
                f" ({len(have)} of {len(columns)})" if len(have) < len(columns) else "")
            d = paired_vs_vanilla(cells, v, vanilla, columns)
            delta = "—" if d is None else f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"
            rows.append([labels[v], mean, delta, "—" if d is None else d[3], *(_fmt(a, ".1f") for a in accs)])
        add_table(md, hp, headers, rows)
        if vanilla is None:
            add_text(md, hp, "No vanilla records for this model: no paired differences.")

        lengths = sorted({c[2] for c in columns})
        headers = ["method", *(g["tasks"][c] + f"@{c[2]}" for c in columns), *(f"cache MiB @{n}" for n in lengths)]
        rows = []
        for v in variants:
            row = [labels[v]]
            for c in columns:
                r = cells.get((v, c), {}).get("tokens_equal_vanilla")
                x = (r or {}).get("extra") or {}
                row.append("—" if r is None else f"{r['value']:.1f}" + (
                    f" ({x['rows_equal']}/{x['rows']})" if "rows" in x and "rows_equal" in x else ""))
            for n in lengths:
                peaks = [cells[(v, c)]["cache_bytes_peak"]["value"] for c in columns
                         if c[2] == n and "cache_bytes_peak" in cells.get((v, c), {})]
                row.append(f"{max(peaks) / 2**20:.1f}" if peaks else "—")
            rows.append(row)
        add_text(md, hp, "Agreement with vanilla decoding and cache size: % of generated tokens equal to vanilla's on "
                      "the same examples (in brackets: examples whose whole answer is equal / examples), and the "
                      "peak bytes the method's cache held, in MiB (largest over the tasks of that length; vanilla "
                      "holds none).")
        add_table(md, hp, headers, rows)
        if settings:
            add_text(md, hp, "Settings: " + "; ".join(settings) + ".")


# ---------------------------------------------------------------- throughput (suite "dllm_throughput")
def newest_per_device(records: list[dict], suite: str) -> list[dict]:
    """The suite's records, the newest of each cell on each device (a cell's key does not name the device)."""
    by_device: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r["suite"] == suite:
            by_device[r["device"]].append(r)
    return [r for recs in by_device.values() for r in newest_records(recs, suite)]


def throughput_cells(records: list[dict]) -> dict[tuple, dict]:
    """Throughput records -> {(device, model, protocol): {(variant, prompt_len): cell}}; a cell is
    {"metrics": {metric: value}, "extra": tokens_per_s's extra, "status": text or None}. A failure newer than
    the cell's measurement replaces it; a measurement newer than a failure hides the failure."""
    groups: dict[tuple, dict] = defaultdict(dict)
    for r in sorted(newest_per_device(records, THROUGHPUT_SUITE), key=lambda r: r["time"]):
        key = (r["device"], r["model"], _proto(r))
        L = int(r["params"].get("prompt_len", 0))
        cell = groups[key].setdefault((variant_of(r), L), {"metrics": {}, "extra": {}, "status": None})
        if r["metric"] == "status":
            cell["metrics"], cell["extra"] = {}, {}
            cell["status"] = str((r.get("extra") or {}).get("status") or "failed")
        else:
            if cell["status"] is not None:
                cell["status"] = None
            cell["metrics"][r["metric"]] = r["value"]
            if r["metric"] == "tokens_per_s":
                cell["extra"] = dict(r.get("extra") or {})
    return groups


def _baseline(cells: dict, variant: tuple, L: int) -> dict | None:
    """Vanilla's cell at the same prompt length in the same group (device, model, protocol): the one measured
    with the same CUDA-graphs setting when there is one, else any."""
    vanillas = sorted((v for v, n in cells if v[0] == VANILLA and n == L and not cells[(v, n)]["status"]),
                      key=lambda v: (v[3] != variant[3], variant_order(v)))
    return cells[(vanillas[0], L)] if vanillas else None


def _status_cell(status: str) -> str:
    return "OOM" if "out of memory" in status.lower() else f"failed: {status.splitlines()[0][:48]}"


def _metric_table(cells: dict, variants: list[tuple], labels: dict, lengths: list[int], metric: str,
                  spec: str) -> list[list]:
    rows = []
    for v in variants:
        row = [labels[v]]
        for L in lengths:
            c = cells.get((v, L))
            if c is None:
                row.append("—")
            elif c["status"]:
                row.append(_status_cell(c["status"]))
            elif metric not in c["metrics"]:
                row.append("—")
            else:
                base = _baseline(cells, v, L)
                value = c["metrics"][metric]
                row.append(f"{value:{spec}} ({_ratio(value, base['metrics'].get(metric) if base else None)})")
        rows.append(row)
    return rows


def target_rows(cells: dict, variants: list[tuple], labels: dict) -> list[list]:
    """Sparse-dLLM with our kernels (impl triton) at the target prompt length against the targets."""
    rows = []
    for v in variants:
        if v[0] != "sparse_dllm" or v[1] != "triton":
            continue
        c = cells.get((v, TARGET_PROMPT))
        if c is None or c["status"]:
            state = "not measured" if c is None else _status_cell(c["status"])
            rows.append([labels[v], state, "—", "—", "—", "—"])
            continue
        base = _baseline(cells, v, TARGET_PROMPT)
        m, b = c["metrics"], base["metrics"] if base else {}
        speed = m["tokens_per_s"] / b["tokens_per_s"] if "tokens_per_s" in m and b.get("tokens_per_s") else None
        mem = m["peak_mem_gib"] / b["peak_mem_gib"] if "peak_mem_gib" in m and b.get("peak_mem_gib") else None
        rows.append([labels[v], _fmt(m.get("tokens_per_s")), "—" if speed is None else f"{speed:.2f}x",
                     "—" if speed is None else ("yes" if speed >= TARGET_SPEEDUP else "NO"),
                     "—" if mem is None else f"{mem:.2f}x",
                     "—" if mem is None else ("yes" if mem <= TARGET_MEMORY else "NO")])
    return rows


def _phase_rows(cells: dict, variants: list[tuple], labels: dict, lengths: list[int]) -> tuple[list[str], list[list]]:
    present = {k[len("phase_"):-len("_s")] for c in cells.values() for k in c["metrics"]
               if k.startswith("phase_") and k.endswith("_s")}
    phases = [p for p in PHASES if p in present] + sorted(present - set(PHASES))
    headers = ["prompt", "method", *(f"{p} s (ms/token)" for p in phases), "timed tokens", "wall s"]
    rows = []
    for L in lengths:
        for v in variants:
            c = cells.get((v, L))
            if c is None or c["status"]:
                continue
            tokens = c["extra"].get("tokens")
            row = [L, labels[v]]
            for p in phases:
                s = c["metrics"].get(f"phase_{p}_s")
                row.append("—" if s is None else f"{s:.3f}" + (f" ({1000 * s / tokens:.3g})" if tokens else ""))
            rows.append(row + [tokens if tokens is not None else "—", _fmt(c["extra"].get("seconds"), ".3f")])
    return headers, rows


def _paper_rows() -> tuple[list[str], list[list]]:
    lengths = sorted({n for d in PAPER_TOKENS_PER_S.values() for n in d})
    mem_lengths = sorted({n for d in PAPER_PEAK_GB.values() for n in d})
    headers = ["reference row (not our measurement)", *(f"tokens/s @{n // 1024}k" for n in lengths),
               *(f"peak GB @{n // 1024}k" for n in mem_lengths)]
    rows = []
    for method, tps in PAPER_TOKENS_PER_S.items():
        row = [f"{method} ({PAPER_LABEL})"]
        for n in lengths:
            v, base = tps.get(n), PAPER_TOKENS_PER_S[VANILLA].get(n)
            row.append("—" if v is None else v if isinstance(v, str) else f"{v:g} ({_ratio(v, base)})")
        for n in mem_lengths:
            v, base = PAPER_PEAK_GB.get(method, {}).get(n), PAPER_PEAK_GB[VANILLA].get(n)
            row.append("—" if v is None else f"{v:g} ({_ratio(v, base)})")
        rows.append(row)
    return headers, rows


PLOT_METRICS = {"tokens_per_s": (PAPER_TOKENS_PER_S, "tokens/s"),
                "peak_mem_gib": (PAPER_PEAK_GB, "peak memory (GiB; paper: GB)")}


def throughput_figure(cells: dict, variants: list[tuple], labels: dict, title: str,
                      metrics: tuple[str, ...] = ("tokens_per_s", "peak_mem_gib")) -> bytes:
    """Each metric (tokens/s on a log axis, peak memory) vs prompt length, one line per method variant, plus the
    paper's points; one legend under the panels."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics) + 0.5, 4.4), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        paper, ylabel = PLOT_METRICS[metric]
        for v in variants:
            pts = sorted((L, c["metrics"][metric]) for (w, L), c in cells.items()
                         if w == v and not c["status"] and metric in c["metrics"])
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=4, label=labels[v], lw=2.2 if v[0] == "sparse_dllm" else 1.2,
                        ls="--" if v[0] == VANILLA else "-")
        for method, points in paper.items():
            pts = sorted((n, x) for n, x in points.items() if not isinstance(x, str))
            ax.plot(*zip(*pts), ls=":", marker=PAPER_MARKERS.get(method, "x"), mfc="none", color="0.35",
                    label=f"{method} ({PAPER_LABEL})")
        lengths = sorted({L for _, L in cells} | {n for d in paper.values() for n in d})
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [str(L) for L in lengths], fontsize=7)
        ax.minorticks_off()
        if metric == "tokens_per_s":
            ax.set_yscale("log")
        ax.set_xlabel("prompt length (tokens)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig_png(fig)


def _throughput_section(board, records: list[dict], md: list[str], hp: list[str]) -> None:
    groups = throughput_cells(records)
    if not groups:
        return
    add_heading(md, hp, "Throughput and memory: targets and the paper's sweep")
    add_text(md, hp, f"Targets (issue): Sparse-dLLM with our kernels (impl triton) at an {TARGET_PROMPT // 1024}k prompt "
                  f"reaches ≥ {TARGET_SPEEDUP:g}x vanilla's tokens/s with peak memory ≤ {TARGET_MEMORY:g}x "
                  "vanilla's, both on the same device; each device's check is in its section. The paper reports "
                  f"\"up to 10x\" at 8k on an {PAPER_DEVICE}. The rows below are the paper's context sweep as read "
                  "from its figure (docs/sparse-dllm.md), not our measurements; ratios in brackets "
                  "are against the paper's own vanilla.")
    add_table(md, hp, *_paper_rows())
    protocols = defaultdict(set)
    for device, model, proto in groups:
        protocols[(device, model)].add(proto)
    for n, ((device, model, proto), cells) in enumerate(sorted(groups.items())):
        heading = f"Throughput and memory: {model} on {device}"
        add_heading(md, hp, heading)
        if len(protocols[(device, model)]) > 1:
            add_warning(md, hp, "Warning: records of this device were measured under different protocols; they are shown "
                          f"in separate tables and not compared. This table's protocol: `{proto}`")
        p = json.loads(proto)
        add_text(md, hp, f"Batch {p.get('batch', '?')}, {p.get('gen_len', '?')} generated tokens in blocks of "
                      f"{p.get('block_len', '?')}, {p.get('steps', '?')} steps, {p.get('dtype', '?')} "
                      f"{p.get('weights', '?')} weights. Tokens/s: generated tokens over their wall time (vanilla "
                      "costs the same in every block and is timed over the blocks in `timed tokens` below). "
                      "In brackets: ratio to vanilla on this device at the same prompt length (— without one); "
                      "a cell of — alone: not measured; OOM: the cell ran out of memory. \"graphs\": the cached/sparse steps replay CUDA graphs.")
        variants = sorted({v for v, _ in cells}, key=variant_order)
        labels, settings = variant_labels(variants)
        lengths = sorted({L for _, L in cells})
        add_text(md, hp, "Tokens/s (speed-up vs vanilla):")
        add_table(md, hp, ["method", *(f"prompt {L}" for L in lengths)],
               _metric_table(cells, variants, labels, lengths, "tokens_per_s", ".2f"))
        add_text(md, hp, "Peak memory, GiB (ratio to vanilla); model weights included:")
        add_table(md, hp, ["method", *(f"prompt {L}" for L in lengths)],
               _metric_table(cells, variants, labels, lengths, "peak_mem_gib", ".2f"))
        targets = target_rows(cells, variants, labels)
        if targets:
            add_text(md, hp, f"Targets at an {TARGET_PROMPT}-token prompt on this device:")
            add_table(md, hp, ["method", "tokens/s", "vs vanilla", f"≥ {TARGET_SPEEDUP:g}x", "peak memory vs vanilla",
                            f"≤ {TARGET_MEMORY:g}x"], targets)
        else:
            add_text(md, hp, "Targets: no Sparse-dLLM (triton) measurement on this device.")
        headers, rows = _phase_rows(cells, variants, labels, lengths)
        if rows:
            add_text(md, hp, "Seconds per phase over the timed tokens (in brackets: ms per generated token): dense = "
                          "full forwards, score = Sparse-dLLM's saliency scoring, sparse = steps over the kept "
                          "cache, cached = Fast-dLLM's steps over its cache, refresh / partial = dLLM-Cache's full "
                          "and partial refreshes.")
            add_table(md, hp, headers, rows)
        notes = []
        for (v, L), c in sorted(cells.items(), key=lambda kv: (kv[0][1], variant_order(kv[0][0]))):
            if c["status"]:
                notes.append(f"{labels[v]} @ prompt {L}: {c['status'][:300]}")
            elif v[3] and (c["extra"].get("graph_error") or c["extra"].get("cuda_graphs") == 0):
                notes.append(f"{labels[v]} @ prompt {L}: CUDA graphs requested but none captured"
                             + (f" ({str(c['extra']['graph_error'])[:200]})" if c["extra"].get("graph_error") else ""))
        if notes:
            md.append("Failed cells and notes:\n")
            md += [f"- {x}" for x in notes] + [""]
            hp.append("<p>Failed cells and notes:</p><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in notes)
                      + "</ul>")
        if settings:
            add_text(md, hp, "Settings: " + "; ".join(settings) + ".")
        if any(not c["status"] and "tokens_per_s" in c["metrics"] for c in cells.values()):
            add_figure(board, md, hp, f"dllm_throughput_{n}.png", throughput_figure(cells, variants, labels, heading),
                       f"Tokens/s (log) and peak memory vs prompt length, {heading}; dotted: the paper's "
                       f"{PAPER_DEVICE} points")


def dllm_board(records: list[dict]) -> Board | None:
    """The dLLM caches board, or None without dllm or dllm_throughput records."""
    accuracy = [r for r in newest_records(records, ACCURACY_SUITE)
                if r["metric"] in ("accuracy", "tokens_equal_vanilla", "cache_bytes_peak")]
    has_throughput = any(r["suite"] == THROUGHPUT_SUITE for r in records)
    if not accuracy and not has_throughput:
        return None
    board = Board("dLLM caches: Sparse-dLLM, Fast-dLLM, dLLM-Cache vs vanilla decoding",
                  records=accuracy + newest_per_device(records, THROUGHPUT_SUITE))
    md, hp = [], []
    add_text(md, hp, "Decoding methods for masked-diffusion LMs: vanilla (a full forward over prompt and response at "
                  "every step), Sparse-dLLM (a cache of the most salient tokens' K/V, kept by keep_ratio), "
                  "Fast-dLLM with a prefix or a dual (prefix and suffix) cache, and dLLM-Cache (periodic full and "
                  "partial refreshes). Accuracy comes from the small dLLM we trained; speed and memory from "
                  "LLaDA-8B shapes on a GPU.")
    if accuracy:
        _accuracy_section(accuracy, md, hp)
    _throughput_section(board, records, md, hp)
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board
