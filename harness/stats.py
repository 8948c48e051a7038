"""Confidence intervals for accuracy: percentile bootstrap of the mean, and paired differences."""
from __future__ import annotations

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


def paired_delta(a, b, n: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over matched pairs, with its bootstrap CI: (mean, lo, hi)."""
    x, y = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}")
    d = x - y
    lo, hi = bootstrap_ci(d, n, alpha, seed)
    return float(d.mean()), lo, hi
