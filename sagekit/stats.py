"""95% intervals for report numbers, from scipy: Wilson for rates, bootstrap for means.

A rate in a report comes with its count and an interval; a claim is called supported only
when the interval says so. Both functions return ``(estimate, lo, hi)``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """Rate k/n and its Wilson score interval; all NaN when n is 0."""
    if n == 0:
        return (float("nan"),) * 3
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def rate(k: int, n: int) -> dict:
    """A rate as findings carry it: ``{"k", "n", "rate", "lo", "hi"}`` (Wilson 95%)."""
    r, lo, hi = wilson(int(k), int(n))
    return {"k": int(k), "n": int(n), "rate": r, "lo": lo, "hi": hi}


def rate_text(r: dict) -> str:
    """A :func:`rate` to read: "5/8 = 0.62 [0.31, 0.86]"."""
    return f"{r['k']}/{r['n']} = {r['rate']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"


def mean_ci(values, level: float = 0.95, seed: int = 0, n_resamples: int = 2000) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval (seeded); with fewer than
    two values, or all of them equal, the interval is the mean itself."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"),) * 3
    mean = float(values.mean())
    if len(values) < 2 or np.all(values == values[0]):
        return mean, mean, mean
    res = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=n_resamples, method="percentile",
                          random_state=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def statistic_ci(samples, statistic, level: float = 0.95, seed: int = 0,
                 n_resamples: int = 2000) -> tuple[float, float, float]:
    """``statistic(*samples)`` of independent samples and its percentile bootstrap interval
    (each sample resampled on its own, seeded). NaN interval if a sample has fewer than two
    values; an interval equal to the estimate when no resample can change it."""
    samples = tuple(np.asarray(s, dtype=float) for s in samples)
    estimate = float(statistic(*samples))
    if any(len(s) < 2 for s in samples):
        return estimate, float("nan"), float("nan")
    if all(np.all(s == s[0]) for s in samples):
        return estimate, estimate, estimate
    res = stats.bootstrap(samples, statistic, paired=False, vectorized=False, confidence_level=level,
                          n_resamples=n_resamples, method="percentile", random_state=np.random.default_rng(seed))
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def relation(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
    """How two ``(estimate, lo, hi)`` intervals lie: ``"below"`` (a entirely under b),
    ``"above"``, or ``"overlap"`` (also when an interval is NaN)."""
    if a[2] < b[1]:
        return "below"
    if a[1] > b[2]:
        return "above"
    return "overlap"


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error over all of ``pvalues``): the
    i-th smallest is multiplied by (m - i), then made non-decreasing, then capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    scaled = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    out = np.empty_like(p)
    out[order] = np.minimum(scaled, 1.0)
    return out


def above(k1: int, n1: int, k0: int, n0: int, alternative: str = "greater") -> float:
    """One-sided p-value of Fisher's exact test that rate k1/n1 is above (``"greater"``) or
    below (``"less"``) rate k0/n0."""
    return float(stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative=alternative).pvalue)
