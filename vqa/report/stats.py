"""The statistics of `vqa compare`: mean, sample std, t intervals of a mean and of paired differences, Pearson r.

No scipy: the Student-t quantile inverts the t CDF, which is a regularized incomplete beta function
evaluated by its continued fraction (Numerical Recipes 6.4), by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

CONFIDENCE = 0.95  # two-sided level of every interval


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300

    def clamp(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / clamp(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 500):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for coef in (even, odd):
            d = 1.0 / clamp(1.0 + coef * d)
            c = clamp(1.0 + coef / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # the continued fraction converges fast only below the mean; above it use I_x(a, b) = 1 - I_{1-x}(b, a)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` in p (0.5 < p < 1 is what a two-sided interval needs), by bisection."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def describe(values: Iterable[float | None]) -> dict:
    """n, mean and sample std (ddof=1; None with fewer than 2 values) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return {
        "n": int(v.size),
        "mean": float(v.mean()) if v.size else None,
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
    }


def paired_difference(differences: Iterable[float | None]) -> dict:
    """Mean of per-seed differences with a CONFIDENCE t interval (n - 1 degrees of freedom)."""
    return mean_interval(differences)


def mean_interval(values: Iterable[float | None]) -> dict:
    """describe() plus the CONFIDENCE t interval of the mean (n - 1 degrees of freedom; None with n < 2):
    mean ± t * std / sqrt(n)."""
    out = describe(values)
    out.update(ci_low=None, ci_high=None, t=None)
    if out["n"] > 1:
        t = t_quantile(0.5 + CONFIDENCE / 2.0, out["n"] - 1)
        half = t * out["std"] / math.sqrt(out["n"])
        out.update(ci_low=out["mean"] - half, ci_high=out["mean"] + half, t=t)
    return out


def pearson(x, y) -> float:
    """Pearson r over the epochs where both are finite; NaN with fewer than 3 or a constant series."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    dx, dy = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / den) if den > 0 else float("nan")
