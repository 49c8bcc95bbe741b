"""vqa/report/stats.py and the Holm decision of vqa/report/claims.py against hand-worked values."""

import math

import pytest
import scipy.stats

from vqa.report.claims import decide, family_line
from vqa.report.stats import holm, mean_interval, paired_difference, t_quantile, t_test

# Student's t table, two-sided 95% critical values (any statistics textbook's table, 3 decimals)
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 29: 2.045}


def test_t_quantile_matches_the_printed_table():
    for df, value in T_TABLE.items():
        assert t_quantile(0.975, df) == pytest.approx(value, abs=5e-4), df
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)


def test_paired_t_test_hand_worked():
    """a = 5, 7, 9, 6 and b = 3, 6, 6, 5: differences 2, 1, 3, 1, mean 1.75, sample variance
    (0.0625 + 0.5625 + 1.5625 + 0.5625) / 3 = 11/12, t = 1.75 / sqrt(11/12 / 4) = 3.6556 on 3 degrees of
    freedom; two-sided p = 1 - (2/pi) (x / (1 + x^2) + atan x), x = t / sqrt 3 (the closed-form CDF)."""
    a, b = [5, 7, 9, 6], [3, 6, 6, 5]
    d = paired_difference(x - y for x, y in zip(a, b))
    t = 1.75 / math.sqrt(11 / 12 / 4)
    x = t / math.sqrt(3)
    p = 1 - 2 / math.pi * (x / (1 + x * x) + math.atan(x))
    assert t == pytest.approx(3.6556, abs=1e-4) and p == pytest.approx(0.0354, abs=1e-4)
    assert d["mean"] == 1.75 and d["std"] == pytest.approx(math.sqrt(11 / 12))
    assert d["p"] == pytest.approx(p, rel=1e-9)
    half = T_TABLE[3] * math.sqrt(11 / 12) / 2
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((1.75 - half, 1.75 + half), abs=1e-3)
    assert d["p"] == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue, rel=1e-12)  # the same test


def test_t_test_edges():
    assert t_test([]) is None and t_test([2.0]) is None and t_test([2.0, float("nan")]) is None
    assert t_test([0.0, 0.0, 0.0]) == 1.0  # the sample is the null
    assert t_test([0.3, 0.3, 0.3]) == 0.0 and t_test([-1.0, -1.0]) == 0.0  # no variance, not 0
    assert t_test([1.0, -1.0]) == pytest.approx(1.0)  # mean 0
    # 1 degree of freedom: t = 2 / (sqrt 2 / sqrt 2) = 2, two-sided p = 1 - (2/pi) atan 2
    assert t_test([1.0, 3.0]) == pytest.approx(1 - 2 / math.pi * math.atan(2.0))
    i = mean_interval([1.0, 3.0])
    assert i["p"] > 0.05 and i["ci_low"] < 0 < i["ci_high"]  # p >= 0.05 exactly when 0 is inside


def test_holm_hand_worked():
    """p = 0.01, 0.04, 0.03, 0.005 (m = 4). Sorted: 0.005 * 4 = 0.02; 0.01 * 3 = 0.03; 0.03 * 2 = 0.06;
    0.04 * 1 = 0.04, raised to the running maximum 0.06. Step-down at 0.05: 0.005 < 0.05/4 and
    0.01 < 0.05/3 pass, 0.03 >= 0.05/2 stops: two rejections, the two adjusted p < 0.05."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, None, 0.04]) == [pytest.approx(0.02), None, pytest.approx(0.04)]  # m = 2
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1, then monotone
    assert holm([]) == [] and holm([None]) == [None]
    assert holm([0.02]) == [0.02]  # a family of one is not corrected


def claim(p, evidence, verdict="undecided"):
    return {"model": "avg", "claim": "c", "verdict": verdict, "p": p, "evidence": evidence, "estimates": []}


def test_decide_a_family():
    """The family above plus an untested claim and a refuted-as-observed one (both outside m = 4)."""
    claims = [claim(0.01, +1), claim(0.04, +1), claim(0.03, -1), claim(0.005, -1), claim(None, 0),
              claim(None, -1, "refuted"), claim(0.001, 0)]  # fmt: skip
    family = decide(claims)
    assert family == {"method": "holm", "size": 5, "alpha": 0.05, "smallest_level": 0.01}
    # m = 5 now: 0.001 * 5, 0.005 * 4, 0.01 * 3 pass; 0.03 * 2 = 0.06 stops
    assert [c["verdict"] for c in claims] == ["confirmed", "undecided", "undecided", "refuted", "undecided",
                                              "refuted", "undecided"]  # fmt: skip
    assert [c["p_holm"] for c in claims] == pytest.approx([0.03, 0.06, 0.06, 0.02, None, None, 0.005])
    assert "over the 5 claims with a p-value" in family_line(family)
    assert "0.05 / (5 - k + 1), from 0.0100 up to 0.05" in family_line(family)
    assert "none is decided" in family_line(decide([claim(None, 0)]))
