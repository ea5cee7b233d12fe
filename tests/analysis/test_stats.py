"""Welch's t-test of two arms: p equals scipy's, the interval equals the Welch-Satterthwaite formula written out,
and the verdict follows p < 0.05 with at least 3 seeds per arm."""

import math
import statistics

import pytest
from scipy import stats as sps

from cifarlab.analysis.stats import welch


def _hand_interval(a, b):
    """95% interval of mean(a) - mean(b), in points, from the Welch-Satterthwaite formula and the t quantile."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    d = statistics.fmean(a) - statistics.fmean(b)
    return 100 * (d - half), 100 * (d + half), df


@pytest.mark.parametrize("a, b, verdict", [
    ([0.81, 0.83, 0.82, 0.84], [0.70, 0.72, 0.71], "a better"),
    ([0.60, 0.61, 0.59], [0.70, 0.72, 0.69, 0.71, 0.70], "b better"),
    ([0.50, 0.55, 0.60], [0.52, 0.57, 0.53], "no significant difference"),
])
def test_p_value_interval_and_verdict(a, b, verdict):
    c = welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert c.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    lo, hi, df = _hand_interval(a, b)
    assert c.ci95_points == pytest.approx((lo, hi), rel=1e-9) and c.df == pytest.approx(df)
    assert c.diff_points == pytest.approx(100 * (statistics.fmean(a) - statistics.fmean(b)))
    assert c.verdict == verdict and c.test == "welch"
    assert (c.p_value < 0.05) == (verdict != "no significant difference")


def test_fewer_than_three_seeds_is_not_tested_even_for_a_large_difference():
    c = welch([0.90, 0.91], [0.10, 0.11, 0.12])
    assert (c.verdict, c.p_value, c.ci95_points, c.test) == ("not tested", None, None, None)
    assert "fewer than 3 seeds" in c.reason and c.diff_points == pytest.approx(80.0 - 1.0 + 0.5)


def test_arms_that_do_not_vary_are_not_tested():
    c = welch([0.5, 0.5, 0.5], [0.6, 0.6, 0.6])
    assert c.verdict == "not tested" and "varies" in c.reason
