"""Pareto fronts: the points no other point beats on every objective at once, exactly or beyond their confidence
intervals.

`pareto_front` is the exact definition; `ci_front` the one the leaderboard ranks by: a point is dominated only by a
point that is *significantly* better on some objective (the two intervals do not overlap) and not significantly
worse on any. A method holding 0.1% fewer bytes than a far more accurate one is then not on the front: 0.1% is
inside the bytes' tolerance band (`band`), while the accuracy gap is outside both confidence intervals. With
zero-width intervals `ci_front` is `pareto_front` (property-tested in suites/harness/boards/test_pareto_board.py).
`paired_front` compares points measured on the same units (seeds) by the interval of their paired differences.
The plots are harness/boards/pareto_plot.py.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from harness.stats import t_interval

SENSES = ("max", "min")
BYTES_TOLERANCE = 0.01  # bytes held are measured exactly: values within 1% of each other count as equal
TIMING_TOLERANCE = 0.05  # a timing measured once: within 5% counts as equal (run-to-run noise)


def _check(points: Sequence[Sequence[float]], senses: Sequence[str]) -> tuple[tuple[float, ...], ...]:
    if any(s not in SENSES for s in senses):
        raise ValueError(f"senses must be 'max' or 'min', got {tuple(senses)}")
    pts = tuple(tuple(float(v) for v in p) for p in points)
    for p in pts:
        if len(p) != len(senses):
            raise ValueError(f"point {p} has {len(p)} objectives, senses name {len(senses)}")
        if not all(math.isfinite(v) for v in p):
            raise ValueError(f"point {p} has a value that is not finite")
    return pts


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
    """Indices (ascending) of the points that no other point dominates exactly.

    points: one tuple of objective values per point; senses: "max" or "min" per objective. Equal points do not
    dominate each other, so every copy of a front point is on the front. O(n^2), for the few dozen rows of a board.
    """
    senses = tuple(senses)
    pts = _check(points, senses)
    return [i for i, p in enumerate(pts) if not any(dominates(q, p, senses) for q in pts)]


def band(value: float, tolerance: float) -> tuple[float, float]:
    """The interval of a value measured without sampling error: ± tolerance / 2 of it, so that two values whose
    ratio is within about 1 + tolerance overlap."""
    half = abs(value) * tolerance / 2
    return value - half, value + half


def better(a: tuple[float, float], b: tuple[float, float], sense: str) -> bool:
    """Interval a (lo, hi) is significantly better than interval b: they do not overlap and a lies on the better side."""
    return a[0] > b[1] if sense == "max" else a[1] < b[0]


def ci_dominates(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]], senses: Sequence[str]) -> bool:
    """a dominates b beyond the intervals: significantly better on one objective, significantly worse on none."""
    return (not any(better(y, x, s) for x, y, s in zip(a, b, senses))
            and any(better(x, y, s) for x, y, s in zip(a, b, senses)))


def front_by(n: int, objectives: int, better: Callable[[int, int, int], bool]) -> list[int]:
    """Indices of the n points that no other dominates, where i dominates j when better(i, j, k) (i significantly
    better than j on objective k) holds for some k and better(j, i, k) for none. May be empty should the relation
    cycle; `ci_front` and `paired_front` then fall back to the exact front."""
    def dom(i: int, j: int) -> bool:
        return (not any(better(j, i, k) for k in range(objectives))
                and any(better(i, j, k) for k in range(objectives)))

    return [i for i in range(n) if not any(dom(j, i) for j in range(n) if j != i)]


def paired_front(samples: Sequence[Sequence[dict]], senses: Sequence[str]) -> list[int]:
    """The front of points measured on shared units (seeds: the same requests for every policy): samples[i][k] maps
    unit -> value of point i on objective k. i is significantly better than j on k when the 95% t-interval of the
    paired differences over their common units excludes 0 (on the better side); without common units, never."""
    senses = tuple(senses)
    if any(s not in SENSES for s in senses):
        raise ValueError(f"senses must be 'max' or 'min', got {senses}")

    def better(i: int, j: int, k: int) -> bool:
        a, b = samples[i][k], samples[j][k]
        common = sorted(set(a) & set(b), key=str)
        if not common:
            return False
        sign = 1.0 if senses[k] == "max" else -1.0
        _, lo, _ = t_interval([sign * (a[u] - b[u]) for u in common])
        return lo > 0  # one common unit: the exact difference

    front = front_by(len(samples), len(senses), better)
    if front or not samples:
        return front
    means = [[sum(v.values()) / len(v) for v in point] for point in samples]
    return pareto_front(means, senses)


def ci_front(points: Sequence[Sequence[float]], intervals: Sequence[Sequence[tuple[float, float]]],
             senses: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points no other point dominates beyond the intervals (`ci_dominates`).

    intervals[i][k]: the (lo, hi) of point i's objective k, containing its value (a confidence interval, or a
    `band` for values measured exactly or once). Should the relation ever cycle (no point undominated), the
    exact front is returned, so a non-empty set of points always has a front.
    """
    senses = tuple(senses)
    pts = _check(points, senses)
    if len(intervals) != len(pts):
        raise ValueError(f"{len(intervals)} intervals for {len(pts)} points")
    ivs = []
    for p, iv in zip(pts, intervals):
        iv = tuple((float(lo), float(hi)) for lo, hi in iv)
        if len(iv) != len(p) or any(not (lo <= v <= hi) for v, (lo, hi) in zip(p, iv)):
            raise ValueError(f"intervals {iv} must hold the point's values {p}, one per objective")
        ivs.append(iv)
    front = front_by(len(pts), len(senses), lambda i, j, k: better(ivs[i][k], ivs[j][k], senses[k]))
    return front if front or not pts else pareto_front(pts, senses)
