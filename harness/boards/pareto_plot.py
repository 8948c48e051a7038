"""The Pareto plots: one scatter per pair of objectives, every point in its own colour and marker named in the
figure's legend (never a floating label that may sit beside another marker), its confidence interval as error
bars, the front (`harness/boards/pareto.py`, computed by the caller) drawn solid and joined by the step line that bounds
what it dominates, the rest faded. Used by the cross-family board, harness/boards/pareto_board.py.
"""
from __future__ import annotations

import math

from matplotlib.lines import Line2D

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
          "tab:olive", "tab:cyan")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p")


def styles(labels) -> dict[str, tuple[str, str]]:
    """label -> (colour, marker), distinct for the first len(COLORS) * len(MARKERS) labels, in first-seen order:
    one map per figure, so a method looks the same in each of its panels."""
    out: dict[str, tuple[str, str]] = {}
    for label in labels:
        if label not in out:
            i = len(out)
            out[label] = (COLORS[i % len(COLORS)], MARKERS[(i + i // len(COLORS)) % len(MARKERS)])
    return out


def _scale(ax, which: str, values: list[float]) -> None:
    """Log when the positive values span over a decade; when zeros sit next to such a span (a method that holds
    no cache), symlog: linear up to the smallest positive value, ticks at 0 and the decades above it."""
    positive = [v for v in values if v > 0]
    if len(positive) < 2 or max(positive) / min(positive) <= 10:
        return
    set_scale, axis = getattr(ax, f"set_{which}scale"), getattr(ax, f"{which}axis")
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    if all(v > 0 for v in values):
        set_scale("log")
        if max(positive) / min(positive) < 1000:  # few decades: label 1-2-5 ticks as plain numbers
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        return
    low = min(positive)
    set_scale("symlog", linthresh=low, linscale=0.5)
    decades = range(math.ceil(math.log10(low)), math.floor(math.log10(max(positive))) + 2)
    axis.set_major_locator(FixedLocator([0.0, *(10.0 ** k for k in decades)]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def _widen(ax, which: str, span: float) -> None:
    """A linear axis shows at least `span` units, so that a 0.01-point difference is not drawn as a wide gap."""
    get, set_ = getattr(ax, f"get_{which}lim"), getattr(ax, f"set_{which}lim")
    if getattr(ax, f"get_{which}scale")() != "linear" or not span:
        return
    lo, hi = get()
    if hi - lo < span:
        mid = (lo + hi) / 2
        set_(mid - span / 2, mid + span / 2)


def front_panel(ax, points: list[dict], front: set[int], senses: tuple[str, str], style: dict[str, tuple[str, str]],
                *, xlabel: str, ylabel: str, title: str, refs: set[int] = frozenset(),
                log: tuple[bool, bool] = (True, True), min_span: tuple[float, float] = (0.0, 0.0)) -> None:
    """Draw `points` ({"x", "y", "label", optional "xci", "yci": (lo, hi)}): each in style[label] with the label on
    its own artist (so a legend names exactly the marker drawn), error bars from the intervals; points in `front`
    solid with a black edge and joined by the front's step line, the others faded; points in `refs` (e.g. a
    clairvoyant oracle) hollow and not ranked. `log`: whether each axis may go logarithmic (values over a decade);
    `min_span`: the least range each linear axis shows."""
    for i, p in enumerate(points):
        color, marker = style[p["label"]]
        on, ref = i in front, i in refs
        err = {}
        for axis in ("x", "y"):
            if p.get(f"{axis}ci"):
                lo, hi = p[f"{axis}ci"]
                err[f"{axis}err"] = [[max(0.0, p[axis] - lo)], [max(0.0, hi - p[axis])]]
        ax.errorbar([p["x"]], [p["y"]], **err, fmt=marker, color=color, ms=8 if on else 6,
                    mfc="none" if ref else color, mec="black" if on else color, mew=1.0,
                    alpha=1.0 if on or ref else 0.45, elinewidth=0.8, capsize=2, zorder=4 if on else 3,
                    label=p["label"])
    pts = sorted((points[i]["x"], points[i]["y"]) for i in front)
    if len(pts) > 1:
        ax.step(*zip(*pts), where="post" if senses[0] == "min" else "pre", color="black", lw=0.9, alpha=0.6,
                zorder=2)
    if log[0]:
        _scale(ax, "x", [p["x"] for p in points])
    if log[1]:
        _scale(ax, "y", [p["y"] for p in points])
    ax.margins(0.12)
    ax.autoscale_view()
    _widen(ax, "x", min_span[0])
    _widen(ax, "y", min_span[1])
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")


def legend_handles(style: dict[str, tuple[str, str]], labels, refs: str | None = None) -> list[Line2D]:
    """One legend entry per label, in its colour and marker, plus what solid / faded (and, given `refs`, the name
    of what is not ranked, hollow) mean."""
    handles = [Line2D([], [], ls="none", marker=style[n][1], color=style[n][0], ms=7, label=n) for n in labels]
    handles += [Line2D([], [], ls="none", marker="o", color="0.3", mec="black", ms=8, label="solid, black edge: on the front"),
                Line2D([], [], ls="none", marker="o", color="0.3", alpha=0.45, ms=6, label="faded: dominated")]
    if refs:
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", color="0.3", ms=7,
                              label=f"hollow: {refs}, not ranked"))
    return handles
