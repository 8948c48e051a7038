"""Confidence intervals: percentile bootstrap of the mean (of values, or of the means of several strata), paired
differences, Student t over seeds, Wilson for fractions; the exact sign test for paired wins and losses."""
from __future__ import annotations

import math

import numpy as np


def bootstrap_ci(values, n: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (Efron & Tibshirani, 1993) CI of the mean of `values`."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("values must not be empty")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n, x.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def stratified_bootstrap_ci(strata, n: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over strata of each stratum's mean (e.g. a method's accuracy: the mean
    over task x length cells of the fraction of examples right), resampling within each stratum. A stratum of one
    value is a constant."""
    groups = [np.asarray(list(s), dtype=np.float64) for s in strata]
    if not groups or any(g.size == 0 for g in groups):
        raise ValueError("strata must be a non-empty list of non-empty lists")
    rng = np.random.default_rng(seed)
    means = np.zeros(n)
    for g in groups:
        means += g[rng.integers(0, g.size, size=(n, g.size))].mean(axis=1)
    means /= len(groups)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def paired_delta(a, b, n: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over matched pairs, with its bootstrap CI: (mean, lo, hi)."""
    x, y = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}")
    d = x - y
    lo, hi = bootstrap_ci(d, n, alpha, seed)
    return float(d.mean()), lo, hi


# Student t 0.975 quantiles by degrees of freedom (1..30); beyond 30 the normal's 1.96 is within 2%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_interval(values) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of a few independent runs (seeds) with its 95% Student-t confidence interval,
    mean +- t(0.975, n - 1) s / sqrt(n); lo = hi = mean for a single value. For seeds, where a percentile
    bootstrap of 5 values is far too narrow."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("values must not be empty")
    m = float(x.mean())
    if x.size == 1:
        return m, m, m
    t = _T975[x.size - 2] if x.size - 1 <= len(_T975) else 1.96
    half = t * float(x.std(ddof=1)) / np.sqrt(x.size)
    return m, m - half, m + half


Z95 = 1.959963984540054


def wilson(successes: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial fraction."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign-test p-value for `wins` against `losses` (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
