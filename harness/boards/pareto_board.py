"""The cross-family page: accuracy vs KV (or cache) bytes vs latency for every method, CI-aware Pareto fronts marked.

The board of the leaderboard's Pareto page (`pareto.md`, `pareto.html`), linked from the headline and every family
page. The three families measure the axes differently (each family's `pareto_rows.py` gathers its own panels, each
panel names its sources):
- KV compression (suites niah, ruler, longbench): accuracy = the suite's score per (method, compression ratio,
  impl); bytes = `kv_bytes` as % of `kv_bytes_full`; latency = `decode_ms_per_token` (ranked) and `compress_ms`,
  "not measured" on records that predate those metrics.
- dLLM decoding: two panels, each of one model: accuracy x `cache_bytes_peak` of our tiny trained dLLM (suite
  dllm); ms/token (1000 / `tokens_per_s`) x `peak_mem_gib` of LLaDA-8B shapes with random weights (suite
  dllm_throughput) at one (device, prompt length). The two models' numbers are never ranked together.
- Scheduling: speculative decoding is lossless, so accuracy is unchanged and there is no KV axis; the front is
  over (mean, p99) latency per workload and load, the clairvoyant SRPT oracle shown but not ranked.
Fronts maximize accuracy and minimize bytes and latency, beyond the confidence intervals (`harness/boards/pareto.py`).
"""
from __future__ import annotations

import math

from harness.boards.page import Board, add_figure, add_heading, add_table, add_text, fig_png, plt
from harness.boards.pareto_plot import front_panel, legend_handles, styles
from harness.boards.pareto_rows import CODES, FRONT_KEY, SENSES, front_cell
from harness.dllm.pareto_rows import dllm_panels
from harness.kv.pareto_rows import kv_panels
from harness.scheduling.board import ORACLE, at_load, load_label
from harness.scheduling.pareto_rows import sched_panels

SOURCE_HEADERS = ["axis", "suite", "metric", "unit", "model", "device", "aggregation"]
ARROWS = {"acc": "accuracy ↑", "bytes": "bytes ↓", "lat": "latency ↓"}
MIN_POINTS = 3  # a pair of objectives is plotted when at least this many rows have both
SPANS = {"acc": 10.0, "bytes": 10.0, "lat": 0.0}  # least range of a linear axis (percentage points; latency: none)
INTRO = ("Every method of every family: accuracy (higher is better), the bytes its KV cache or dLLM cache holds (lower "
         "is better) and its latency (lower is better). A row is on a Pareto front when no other row of its panel is "
         "significantly better on one of those objectives without being significantly worse on another: accuracies "
         "are compared by their 95% confidence intervals (two overlapping intervals are a tie), bytes held within 1% "
         "of each other count as equal, as do single timings within 5% and latencies whose intervals over seeds "
         "overlap. A method 0.1% smaller than a far more accurate one is therefore not on the front. Fronts are taken "
         "only over axes measured on one model (no panel sets one model's latency against another's accuracy). In "
         "the plots each method has its own colour and marker, named in the legend; front points are solid with a "
         "black edge and joined by the step line bounding what they dominate, dominated points are faded, error bars "
         "are the intervals.")


def _name(row: dict) -> str:
    return row["label"].replace("\n", " ")


def glance_rows(kv_dllm: list[dict], sched: list[dict]) -> list[list[str]]:
    """One row per panel: what it ranks and who is on its widest front (all three objectives where it has them)."""
    out = []
    for p in kv_dllm:
        if not p["combos"]:
            continue
        # the widest front most rows are ranked on: all three where most rows have latency, else a pair
        combo = max(p["combos"], key=lambda c: (sum(all(r[k] is not None for k in c) for r in p["rows"]), len(c)))
        names = [_name(r) for r in p["rows"] if r["fronts"].get(combo)]
        missing = [_name(r) for r in p["rows"] if r["fronts"].get(combo) is None]
        objectives = ", ".join(ARROWS[k] for k in ("acc", "bytes", "lat") if k in combo)
        if missing:
            objectives += f"; not ranked, a value not measured: {', '.join(missing)}"
        out.append([p["family"], p["short"], objectives, ", ".join(names) or "—"])
    for p in sched:
        per_load: dict[str, list[str]] = {}
        for r in p["rows"]:
            if r["front"]:
                per_load.setdefault(at_load(r["load"], r["rate"]), []).append(r["label"])
        out.append([p["family"], p["short"], "mean latency ↓, p99 latency ↓, per load (oracle not ranked)",
                    "; ".join(f"{load}: {', '.join(names)}" for load, names in per_load.items())])
    return out


# ---------------------------------------------------------------- figures
def _figure(specs: list, style: dict, title: str, ncols: int = 3, refs: bool = False) -> bytes:
    """One subplot per spec (a function ax -> None), the figure's legend of every method in `style` below them."""
    cols = min(ncols, len(specs))
    nrows = math.ceil(len(specs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.1 * cols, 3.3 * nrows + 0.4 + 0.18 * math.ceil(len(style) / 4)),
                             squeeze=False, layout="constrained")
    for ax, spec in zip(axes.flat, specs):
        spec(ax)
    for ax in axes.flat[len(specs):]:
        ax.axis("off")
    handles = legend_handles(style, list(style), ORACLE if refs else None)
    fig.legend(handles=handles, loc="outside lower center", ncol=4 if cols > 1 else 2, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig_png(fig)


def _pair_spec(panel: dict, x: str, y: str, style: dict):
    def draw(ax):
        rows = [r for r in panel["rows"] if r[x] is not None and r[y] is not None]
        points = [{"x": r[x], "y": r[y], "xci": r["ci"].get(x), "yci": r["ci"].get(y), "label": _name(r)}
                  for r in rows]
        front = {i for i, r in enumerate(rows) if r["fronts"].get((x, y))}
        front_panel(ax, points, front, (SENSES[x], SENSES[y]), style, xlabel=panel["axes"][x],
                    ylabel=panel["axes"][y], title=f"{panel['short']}: {ARROWS[y].split()[0]} vs {ARROWS[x].split()[0]}",
                    log=(x != "acc", y != "acc"), min_span=(SPANS[x], SPANS[y]))
    return draw


def plotted_pairs(panel: dict) -> list[tuple[str, str]]:
    """The pairs of a panel worth a scatter: ranked (one model) and with at least MIN_POINTS rows having both."""
    return [c for c in panel["combos"] if len(c) == 2
            and sum(r[c[0]] is not None and r[c[1]] is not None for r in panel["rows"]) >= MIN_POINTS]


def _sched_spec(panel: dict, rate: float, style: dict):
    def draw(ax):
        rows = [r for r in panel["rows"] if r["rate"] == rate]
        points = [{"x": r["mean"], "y": r["p99"], "xci": r["mean_ci"], "yci": r["p99_ci"], "label": r["label"]}
                  for r in rows]
        front_panel(ax, points, {i for i, r in enumerate(rows) if r["front"]}, ("min", "min"), style,
                    xlabel="mean latency (s)", ylabel="p99 latency (s)",
                    title=f"{panel['short']}, {at_load(rows[0]['load'], rate)}",
                    refs={i for i, r in enumerate(rows) if r["front"] is None})
    return draw


# ---------------------------------------------------------------- the board
def _panel_tables(md: list[str], hp: list[str], panel: dict) -> None:
    add_heading(md, hp, panel["title"])
    if panel.get("caption"):
        add_text(md, hp, panel["caption"])
    add_text(md, hp, "Sources:")
    add_table(md, hp, SOURCE_HEADERS, panel["sources"])
    if panel["family"] == "Scheduling":
        add_text(md, hp, f"{panel['setting']}. Accuracy unchanged (lossless), no KV axis; latencies are means over "
                         "seeds [95% t-interval]; the front compares policies seed by seed (the same requests): one is "
                         "better when the t-interval of the paired differences excludes 0.")
        rows = [[load_label(r["load"], r["rate"]), r["label"], f"{r['mean']:.4g} [{r['mean_ci'][0]:.4g}, "
                 f"{r['mean_ci'][1]:.4g}]", f"{r['p99']:.4g} [{r['p99_ci'][0]:.4g}, {r['p99_ci'][1]:.4g}]", r["seeds"],
                 "oracle, not ranked" if r["front"] is None else "yes" if r["front"] else "no"] for r in panel["rows"]]
        add_table(md, hp, ["load", "policy", "mean latency s [95% CI]", "p99 latency s [95% CI]", "seeds",
                           "front mean×p99 (this load)"], rows, key=2)
    else:
        add_table(md, hp, panel["headers"], [[*r["cols"], front_cell(r, panel["combos"])] for r in panel["rows"]])
        ranked = ", ".join(CODES[c] for c in panel["combos"]) or "none"
        add_text(md, hp, f"{FRONT_KEY} Ranked here: {ranked}.")


def _family_section(board: Board, md: list[str], hp: list[str], panels: list[dict], png: str, title: str,
                    caption: str) -> None:
    """A family's panel tables, then one figure of all its plotted pairs (none when nothing is plotted)."""
    for p in panels:
        _panel_tables(md, hp, p)
    style = styles(_name(r) for p in panels for r in p["rows"])
    specs = [_pair_spec(p, x, y, style) for p in panels for x, y in plotted_pairs(p)]
    if specs:
        add_figure(board, md, hp, png, _figure(specs, style, title), caption)


def pareto_board(records: list[dict]) -> Board | None:
    """The cross-family Pareto page, or None when no family has records."""
    kv, kv_used = kv_panels(records)
    dl, dl_used = dllm_panels(records)
    sc, sc_used = sched_panels(records)
    if not (kv or dl or sc):
        return None
    board = Board("Pareto fronts: accuracy vs bytes vs latency, every family", records=kv_used + dl_used + sc_used)
    md, hp = [], []
    add_text(md, hp, INTRO)
    add_heading(md, hp, "Fronts at a glance")
    add_table(md, hp, ["family", "panel", "ranked on", "on the front"], glance_rows(kv + dl, sc), key=2)
    _family_section(board, md, hp, kv, "pareto_kv.png", "KV compression: Pareto fronts",
                    "KV compression: accuracy vs KV bytes (and latency where measured), CI-aware fronts marked")
    _family_section(board, md, hp, dl, "pareto_dllm.png", "dLLM decoding: Pareto fronts",
                    "dLLM decoding: accuracy vs cache bytes (our dLLM) and ms per token vs peak memory (LLaDA-8B "
                    "shapes), each panel one model, CI-aware fronts marked")
    for p in sc:
        _panel_tables(md, hp, p)
    if sc:
        style = styles(r["label"] for p in sc for r in p["rows"])
        specs = [_sched_spec(p, max(r["rate"] for r in p["rows"]), style) for p in sc]
        add_figure(board, md, hp, "pareto_scheduling.png",
                   _figure(specs, style, "Scheduling: mean vs p99 latency at each workload's highest load", refs=True),
                   "Scheduling: mean vs p99 latency per workload at its highest load (every load in the tables), "
                   "CI-aware fronts marked")
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board
