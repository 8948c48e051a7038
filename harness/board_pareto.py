"""The cross-family page: accuracy vs KV (or cache) bytes vs latency for every method, Pareto fronts marked.

First board of the leaderboard, and written alone as `pareto.html`. The three families measure the three axes
differently (`harness/pareto_rows.py` gathers them, each panel names its sources):
- KV compression (suites niah, ruler, longbench): accuracy = the suite's score per (method, compression ratio,
  impl); bytes = `kv_bytes` (the front uses % of `kv_bytes_full`); latency = `decode_ms_per_token` (the front's
  axis) and `compress_ms`, "not measured" on records that predate those metrics.
- dLLM decoding: accuracy and `cache_bytes_peak` of suite dllm (our tiny trained dLLM); latency = 1000 /
  `tokens_per_s` of suite dllm_throughput (LLaDA-8B shapes, random weights) at one (device, prompt length).
- Scheduling: speculative decoding is lossless, so accuracy is unchanged and there is no KV axis; the front is
  over (mean, p99) latency per workload and load, the clairvoyant SRPT oracle shown but not ranked.
Fronts maximize accuracy and minimize bytes and latency (`harness/pareto.py`).
"""
from __future__ import annotations

import html
import math
from harness.board_page import Board, add_table, add_text, fig_png, img_html, plt
from harness.board_scheduling import ORACLE
from harness.pareto import front_panel, place_labels
from harness.pareto_rows import ALL, PAIRS, SENSES, dllm_panel, front_cells, kv_panels, sched_panels

PAGE = "pareto.html"
SOURCE_HEADERS = ["axis", "suite", "metric", "unit", "model", "device", "aggregation"]
ARROWS = {"acc": "accuracy ↑", "bytes": "bytes ↓", "lat": "latency ↓"}
INTRO = ("Every method of every family on one page: accuracy (higher is better), the bytes its KV cache or dLLM cache "
         "holds (lower is better) and its latency (lower is better). A row is on a Pareto front when no other row of "
         "its panel is at least as good on each of those objectives and better on one; the tables mark the front of "
         "each pair and of all three (n/a: the row lacks one of them). In the plots the 2-D front is red and joined "
         "by the step line bounding what it dominates, grey points are dominated, a star marks the front of all three "
         "objectives. The families measure the axes differently: each panel's source table gives the suite, metric, "
         "unit, model and device of each axis, and panels are never mixed (different models, devices, protocols). "
         "Comparisons are exact: a method holding 0.1% fewer bytes than a more accurate one is on the front.")


def _name(row: dict) -> str:
    return row["label"].replace("\n", " ")


def _glance(kv_dllm: list[dict], sched: list[dict]) -> list[list[str]]:
    out = []
    for p in kv_dllm:
        if any(r["fronts"][ALL] is not None for r in p["rows"]):
            names = [_name(r) for r in p["rows"] if r["fronts"][ALL]]
            objectives = ", ".join(ARROWS.values())
            missing = [_name(r) for r in p["rows"] if r["fronts"][ALL] is None]
            if missing:
                objectives += f"; not ranked, a value not measured: {', '.join(missing)}"
        else:
            names = [_name(r) for r in p["rows"] if r["fronts"][PAIRS[0]]]
            objectives = f"{ARROWS['acc']}, {ARROWS['bytes']} (latency not measured)"
        out.append([p["family"], p["short"], objectives, ", ".join(names) or "—"])
    for p in sched:
        per_rate = {}
        for r in p["rows"]:
            if r["front"]:
                per_rate.setdefault(r["rate"], []).append(r["label"])
        out.append([p["family"], p["short"], "mean latency ↓, p99 latency ↓, per arrival rate (oracle not ranked)",
                    "; ".join(f"{rate:g} req/s: {', '.join(names)}" for rate, names in per_rate.items())])
    return out


# ---------------------------------------------------------------- figures
def _figure(specs: list, ncols: int, title: str, size: tuple[float, float] = (5.2, 4.1)) -> bytes:
    """specs: functions ax -> (xs, ys, labels) to label, or None; one subplot each, then one legend and labels."""
    cols = min(ncols, len(specs))
    nrows = math.ceil(len(specs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(size[0] * cols, size[1] * nrows + 0.5), squeeze=False)
    pending = [spec(ax) for ax, spec in zip(axes.flat, specs)]
    for ax in axes.flat[len(specs):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat[:len(specs)]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.suptitle(title, fontsize=11)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=max(1, len(handles)), fontsize=8,
               frameon=False)
    # leave room at the top for the suptitle and at the bottom for the legend
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1 - 0.35 / fig.get_figheight()))
    for ax, todo in zip(axes.flat, pending):
        if todo:
            place_labels(ax, *todo)
    return fig_png(fig)


def _pair_spec(panel: dict, x: str, y: str):
    def draw(ax):
        rows = [r for r in panel["rows"] if r[x] is not None and r[y] is not None]
        title = f"{panel['short']}: {ARROWS[y].split()[0]} vs {ARROWS[x].split()[0]}"
        if not rows:
            missing = [ARROWS[k].split()[0] for k in (x, y) if all(r[k] is None for r in panel["rows"])]
            note = f"{' and '.join(missing)}\nnot measured" if missing else "no row has\nboth values"
            ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=10, color="0.4", transform=ax.transAxes)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            return None
        scale = {"bytes": panel.get("bytes_scale", 1.0)}
        xs = [r[x] * scale.get(x, 1.0) for r in rows]
        ys = [r[y] * scale.get(y, 1.0) for r in rows]
        labels = [r["label"] for r in rows]
        stars = {i for i, r in enumerate(rows) if r["fronts"][ALL]}
        front_panel(ax, xs, ys, labels, (SENSES[x], SENSES[y]), xlabel=panel["axes"][x], ylabel=panel["axes"][y],
                    title=title, stars=stars, log=(x != "acc", y != "acc"))
        return xs, ys, labels
    return draw


def _sched_spec(panel: dict, rate: float):
    def draw(ax):
        rows = [r for r in panel["rows"] if r["rate"] == rate]
        xs, ys, labels = [r["mean"] for r in rows], [r["p99"] for r in rows], [r["label"] for r in rows]
        refs = {i for i, r in enumerate(rows) if r["front"] is None}
        front_panel(ax, xs, ys, labels, ("min", "min"), xlabel="mean latency (s)", ylabel="p99 latency (s)",
                    title=f"{panel['short']} @ {rate:g} req/s", refs=refs)
        return xs, ys, labels
    return draw


def _kv_specs(panels: list[dict]) -> tuple[list, int]:
    with_lat = any(r["lat"] is not None for p in panels for r in p["rows"])
    specs = [_pair_spec(p, x, y) for p in panels for x, y in (PAIRS if with_lat else PAIRS[:1])]
    return specs, 3 if with_lat else 2


# ---------------------------------------------------------------- the board
def _panel_tables(md: list[str], hp: list[str], panel: dict) -> None:
    md.append(f"### {panel['title']}\n")
    hp.append(f"<h3>{html.escape(panel['title'])}</h3>")
    if panel.get("caption"):
        add_text(md, hp, panel["caption"])
    add_text(md, hp, "Sources:")
    add_table(md, hp, SOURCE_HEADERS, panel["sources"])
    if panel["family"] == "Scheduling":
        headers = ["rate req/s", "policy", "accuracy", "KV bytes", "mean latency s", "p99 latency s", "seeds",
                   "front mean×p99 (this rate)"]
        rows = [[f"{r['rate']:g}", r["label"], "unchanged (lossless)", "— (no KV axis)", f"{r['mean']:.4g}",
                 f"{r['p99']:.4g}", r["seeds"], "oracle, not ranked" if r["front"] is None else
                 "yes" if r["front"] else "no"] for r in panel["rows"]]
        add_table(md, hp, headers, rows)
    else:
        add_table(md, hp, panel["headers"], [[*r["cols"], *front_cells(r)] for r in panel["rows"]])


def _figure_md(board, md: list[str], hp: list[str], name: str, png: bytes, alt: str) -> None:
    board.figures[name] = png
    md.append(f"![{alt}]({name})\n")
    hp.append(img_html(name, png, alt))


def pareto_board(records: list[dict]) -> Board | None:
    """The cross-family Pareto page, or None when no family has records."""
    kv, kv_used = kv_panels(records)
    dl, dl_used = dllm_panel(records)
    sc, sc_used = sched_panels(records)
    if not (kv or dl or sc):
        return None
    board = Board("Pareto fronts: accuracy vs bytes vs latency, every family", page=PAGE,
                  records=kv_used + dl_used + sc_used)
    md, hp = [INTRO + "\n"], [f"<p>{html.escape(INTRO)}</p>"]
    md.append("### Fronts at a glance\n")
    hp.append("<h3>Fronts at a glance</h3>")
    add_table(md, hp, ["family", "panel", "objectives", "on the front"], _glance(kv + dl, sc))
    for p in kv:
        _panel_tables(md, hp, p)
    if kv:
        specs, ncols = _kv_specs(kv)
        _figure_md(board, md, hp, "pareto_kv.png", _figure(specs, ncols, "KV compression: Pareto fronts"),
                   "KV compression: accuracy vs KV bytes (and latency where measured), fronts marked")
    for p in dl:
        _panel_tables(md, hp, p)
        _figure_md(board, md, hp, "pareto_dllm.png",
                   _figure([_pair_spec(p, x, y) for x, y in PAIRS], 3, "dLLM decoding: Pareto fronts",
                           size=(6.4, 5.2)),
                   "dLLM decoding: accuracy vs cache bytes vs ms per token, fronts marked")
    for p in sc:
        _panel_tables(md, hp, p)
    if sc:
        specs = [_sched_spec(p, rate) for p in sc for rate in sorted({r["rate"] for r in p["rows"]})]
        _figure_md(board, md, hp, "pareto_scheduling.png", _figure(specs, 4, f"Scheduling: mean vs p99 latency "
                                                                            f"per load ({ORACLE}: not ranked)"),
                   "Scheduling: mean vs p99 latency per workload and arrival rate, fronts marked")
    board.markdown, board.html = "\n".join(md), "\n".join(hp)
    return board
