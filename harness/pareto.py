"""Pareto fronts: the points no other point beats on every objective at once, and a 2-D plot that marks them.

`pareto_front` is the definition (property-tested in suites/harness/test_pareto_board.py); `front_panel` draws
one scatter with its 2-D front highlighted, joined by the step line that bounds what the front dominates, and
every point labelled without overlaps. Used by the cross-family board, `harness/board_pareto.py`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

SENSES = ("max", "min")


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """a dominates b: at least as good as b on every objective and strictly better on one."""
    strictly = False
    for x, y, sense in zip(a, b, senses):
        if sense == "min":
            x, y = -x, -y
        if x < y:
            return False
        strictly = strictly or x > y
    return strictly


def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points that no other point dominates.

    points: one tuple of objective values per point; senses: "max" or "min" per objective. Equal points do not
    dominate each other, so every copy of a front point is on the front. O(n^2), for the few dozen rows of a board.
    """
    senses = tuple(senses)
    if any(s not in SENSES for s in senses):
        raise ValueError(f"senses must be 'max' or 'min', got {senses}")
    pts = [tuple(float(v) for v in p) for p in points]
    for p in pts:
        if len(p) != len(senses):
            raise ValueError(f"point {p} has {len(p)} objectives, senses name {len(senses)}")
        if not all(math.isfinite(v) for v in p):
            raise ValueError(f"point {p} has a value that is not finite")
    return [i for i, p in enumerate(pts) if not any(dominates(q, p, senses) for q in pts)]


# ---------------------------------------------------------------- plotting
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


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


# Label offsets (points) tried in turn: beside the marker first, then further out with a leader line.
_OFFSETS = [(5, 3), (5, -10), (-5, 3), (-5, -10), (5, 12), (-5, 12), (5, -19), (-5, -19), (12, 22), (-12, 22),
            (12, -29), (-12, -29), (24, 4), (-24, 4), (24, -12), (-24, -12), (0, 32), (0, -38), (30, 34), (-30, 34),
            (30, -40), (-30, -40)]


def place_labels(ax, xs: list[float], ys: list[float], labels: list[str], fontsize: float = 7) -> None:
    """Annotate each point with the first offset whose text box overlaps no marker, no earlier label and stays
    inside the axes (the least-overlapping one when none is free); points a few pixels apart share one label.
    Call after limits, scales and layout are final."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    from matplotlib.transforms import Bbox

    pixels = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    markers = [Bbox.from_extents(px - 6, py - 6, px + 6, py + 6) for px, py in pixels]
    taken = []
    # Points within a few pixels of each other share one label, their names joined.
    groups: list[list[int]] = []
    for i in sorted(range(len(xs)), key=lambda i: (-ys[i], xs[i])):
        near = next((g for g in groups if math.dist(pixels[g[0]], pixels[i]) < 5), None)
        if near is None:
            groups.append([i])
        else:
            near.append(i)
    for group in groups:
        i = group[0]
        text = "\n".join(labels[j].replace("\n", " ") for j in group) if len(group) > 1 else labels[i]
        best = None
        for n, (dx, dy) in enumerate(_OFFSETS):
            arrow = {"arrowstyle": "-", "color": "0.55", "lw": 0.5} if n >= 4 else None
            note = ax.annotate(text, (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx >= 0 else "right", va="bottom", arrowprops=arrow, zorder=5)
            bb = note.get_window_extent(renderer)
            outside = bb.width * bb.height - _overlap(bb, box)
            # A label hiding a marker or leaving the axes is worse than one touching another label.
            cost = 4 * outside + 4 * sum(_overlap(bb, m) for m in markers) + sum(_overlap(bb, t) for t in taken) \
                + n * 0.01
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, bb)
            else:
                note.remove()
            if cost < 1:
                break
        taken.append(best[2])


def front_panel(ax, xs: list[float], ys: list[float], labels: list[str], senses: tuple[str, str], *,
                xlabel: str, ylabel: str, title: str, stars: set[int] = frozenset(), refs: set[int] = frozenset(),
                log: tuple[bool, bool] = (True, True)) -> list[int]:
    """Scatter the points; the 2-D front (computed over the points not in refs) is highlighted and joined by its
    step line; points in stars get a star (e.g. on the front of more objectives); refs (e.g. a clairvoyant oracle)
    are drawn hollow and not ranked. log: whether each axis may go logarithmic (when its values span over a decade).
    Returns the front's indices; labels are placed by `place_labels` once the figure's layout is final."""
    ranked = [i for i in range(len(xs)) if i not in refs]
    front = [ranked[j] for j in pareto_front([(xs[i], ys[i]) for i in ranked], senses)]
    rest = [i for i in ranked if i not in front]
    ax.scatter([xs[i] for i in rest], [ys[i] for i in rest], s=28, color="0.65", zorder=3, label="dominated")
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=46, color="tab:red", edgecolor="black", lw=0.6,
               zorder=4, label="2-D Pareto front")
    if refs:
        ax.scatter([xs[i] for i in refs], [ys[i] for i in refs], s=40, facecolor="none", edgecolor="tab:blue",
                   zorder=4, label="reference (not ranked)")
    if stars:
        ax.scatter([xs[i] for i in stars], [ys[i] for i in stars], s=150, marker="*", facecolor="none",
                   edgecolor="tab:orange", lw=1.1, zorder=4, label="on the front of all objectives")
    pts = sorted((xs[i], ys[i]) for i in front)
    if len(pts) > 1:
        ax.step(*zip(*pts), where="post" if senses[0] == "min" else "pre", color="tab:red", lw=1, alpha=0.7, zorder=2)
    if log[0]:
        _scale(ax, "x", xs)
    if log[1]:
        _scale(ax, "y", ys)
    ax.margins(0.15)
    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return front
