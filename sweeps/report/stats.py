"""Small statistics for reports: Wilson intervals for rates, Newcombe's interval for a difference
of rates, Welch's t (small arms) or a seeded bootstrap (large arms) for differences of means, and
how many seeds a verdict still needs.

Hand-checkable formulas on purpose: the tests compute the same numbers by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials ((nan, nan) for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (method 10), built from the two Wilson intervals."""
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


def bootstrap_diff(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0
                   ) -> tuple[float, float, float]:
    """mean(a) - mean(b) with a 95% percentile bootstrap interval (resampling each group's seeds)."""
    a = np.asarray([x for x in a if math.isfinite(x)], dtype=float)
    b = np.asarray([x for x in b if math.isfinite(x)], dtype=float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    diffs = (rng.choice(a, (n_boot, len(a))).mean(1) - rng.choice(b, (n_boot, len(b))).mean(1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(lo), float(hi)


SMALL_SAMPLE = 10
"""Up to this many runs per arm, a difference of means gets Welch's t interval: the percentile
bootstrap over 2-3 seeds is far too narrow (it can only resample the few values there are)."""


def welch_diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """mean(a) - mean(b) with Welch's t 95% interval (unequal variances, Welch-Satterthwaite df)."""
    # t's quantile from scipy.special: importing scipy.stats would add a second to every report
    from scipy.special import stdtrit

    a = np.asarray([x for x in a if math.isfinite(x)], dtype=float)
    b = np.asarray([x for x in b if math.isfinite(x)], dtype=float)
    if len(a) < 2 or len(b) < 2:
        return (float(a.mean() - b.mean()) if len(a) and len(b) else math.nan), math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stdtrit(df, 0.975)) * se
    return d, d - half, d + half


def mean_ci(a: Sequence[float]) -> tuple[float, float, float]:
    """The mean of `a` with its 95% t interval ((mean, nan, nan) for fewer than two finite values)."""
    from scipy.special import stdtrit

    a = np.asarray([x for x in a if math.isfinite(x)], dtype=float)
    if len(a) < 2:
        return (float(a.mean()) if len(a) else math.nan), math.nan, math.nan
    half = float(stdtrit(len(a) - 1, 0.975)) * a.std(ddof=1) / math.sqrt(len(a))
    return float(a.mean()), float(a.mean() - half), float(a.mean() + half)


def mean_diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, str]:
    """mean(a) - mean(b), its 95% interval and the method: Welch's t for small arms, else the bootstrap."""
    n = min(sum(math.isfinite(x) for x in a), sum(math.isfinite(x) for x in b))
    if n <= SMALL_SAMPLE:
        return (*welch_diff(a, b), "welch")
    return (*bootstrap_diff(a, b), "bootstrap")


def seeds_needed(p1: float, p2: float, z_alpha: float = Z95, z_beta: float = 0.8416) -> int | None:
    """Runs per arm for a two-sided 5% test with 80% power to tell rates p1 and p2 apart
    (normal approximation); None when the rates are equal (no number of runs will)."""
    if p1 == p2:
        return None
    p1, p2 = min(max(p1, 0.02), 0.98), min(max(p2, 0.02), 0.98)  # keep the variance away from 0
    n = (z_alpha + z_beta) ** 2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p1 - p2) ** 2
    return math.ceil(n)


def fmt_ci(low: float, high: float, pct: bool = True) -> str:
    if math.isnan(low):
        return "n/a"
    return f"{100 * low:.0f}-{100 * high:.0f}%" if pct else f"{low:.3g} to {high:.3g}"
