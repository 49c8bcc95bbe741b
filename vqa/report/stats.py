"""The statistics of `vqa compare`: mean, sample std, t intervals and t tests of a mean and of paired
differences (scipy.stats), the Holm-Bonferroni adjustment of a family of p-values, Pearson r.

A paired t test is the one-sample t test of the per-seed differences against 0
(scipy.stats.ttest_rel(a, b) is scipy.stats.ttest_1samp(a - b, 0)), so one function serves both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.stats

ALPHA = 0.05  # the family-wise error rate of the claims' verdicts (Holm)
CONFIDENCE = 1.0 - ALPHA  # two-sided level of every interval (0.95)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    return float(scipy.stats.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` in p (0.5 < p < 1 is what a two-sided interval needs)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(scipy.stats.t.ppf(p, df))


def _finite(values: Iterable[float | None]) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)


def describe(values: Iterable[float | None]) -> dict:
    """n, mean and sample std (ddof=1; None with fewer than 2 values) of the finite values."""
    v = _finite(values)
    return {
        "n": int(v.size),
        "mean": float(v.mean()) if v.size else None,
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
    }


def t_test(values: Iterable[float | None]) -> float | None:
    """Two-sided p-value of the one-sample t test of mean 0 (scipy.stats.ttest_1samp) over the finite
    values; None with fewer than 2. Values equal up to rounding (a spread below 1e-12 of their size,
    as differences of equal sums leave) have no variance to test: p = 0 when they are not 0 (t is
    infinite), 1 when they are all 0 (the sample is the null)."""
    v = _finite(values)
    if v.size < 2:
        return None
    if np.ptp(v) <= 1e-12 * np.abs(v).max():
        return 0.0 if v[0] != 0 else 1.0
    return float(scipy.stats.ttest_1samp(v, 0.0).pvalue)


def mean_interval(values: Iterable[float | None]) -> dict:
    """describe() plus the CONFIDENCE t interval of the mean (n - 1 degrees of freedom; None with n < 2):
    mean ± t * std / sqrt(n), with `t` the quantile used, and `p`, the two-sided t_test p-value.

    p < 1 - CONFIDENCE exactly when the interval excludes 0 (the same t distribution decides both)."""
    values = _finite(values)
    out = describe(values)
    out.update(ci_low=None, ci_high=None, t=None, p=t_test(values))
    if out["n"] > 1:
        t = t_quantile(0.5 + CONFIDENCE / 2.0, out["n"] - 1)
        half = t * out["std"] / math.sqrt(out["n"])
        out.update(ci_low=out["mean"] - half, ci_high=out["mean"] + half, t=t)
    return out


def paired_difference(differences: Iterable[float | None]) -> dict:
    """The paired t interval and test of per-seed differences a - b: mean_interval of the differences."""
    return mean_interval(differences)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (Holm 1979) of the m p-values that are not None (None stays
    None and is not counted in m). With the p-values sorted ascending, the k-th (k = 1..m) becomes
    max over j <= k of min(1, (m - j + 1) * p_(j)); rejecting where the adjusted p < alpha is Holm's
    step-down test at family-wise level alpha (p_(j) < alpha / (m - j + 1) for every j <= k)."""
    index = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m, running = len(index), 0.0
    out: list[float | None] = [None] * len(pvalues)
    for k, i in enumerate(index):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        out[i] = running
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
