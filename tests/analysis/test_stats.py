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


# --- the family of one report: Holm, the minimum detectable difference, TOST, seeds needed (against statsmodels) ---

from statsmodels.stats.multitest import multipletests  # noqa: E402
from statsmodels.stats.power import TTestIndPower, ttest_power  # noqa: E402
from statsmodels.stats.weightstats import ttost_ind  # noqa: E402

from cifarlab.analysis.stats import (  # noqa: E402
    holm,
    judge_family,
    mde,
    seeds_needed,
    tost,
    welch_df,
    welch_power,
)


def test_holm_equals_statsmodels_multipletests_in_the_given_order():
    ps = [0.012, 0.30, 0.004, 0.049, 0.02, 0.8, 0.0001, 0.03, 0.5]
    want = multipletests(ps, alpha=0.05, method="holm")[1]
    assert holm(ps) == pytest.approx(list(want), rel=1e-12)
    assert holm(ps)[6] == pytest.approx(9 * 0.0001) and holm([]) == []


def test_a_raw_significant_difference_is_not_called_once_holm_adjusts_it_over_the_family():
    a, b = [0.72, 0.73, 0.74], [0.695, 0.705, 0.715]
    alone = welch(a, b)
    assert 0.025 < alone.p_value < 0.05 and alone.verdict == "a better"
    null = welch([0.50, 0.55, 0.60], [0.52, 0.57, 0.53])
    first, second = judge_family([alone, null])
    want = multipletests([alone.p_value, null.p_value], method="holm")[1]
    assert (first.p_holm, second.p_holm) == pytest.approx(tuple(want))
    assert first.p_holm > 0.05 and first.verdict == "no significant difference" and first.family_size == 2
    # a family of one keeps the raw p and its verdict
    (only,) = judge_family([alone])
    assert only.p_holm == pytest.approx(alone.p_value) and only.verdict == "a better" and only.mde80_points is None


@pytest.mark.parametrize("n, alpha", [(3, 0.05), (5, 0.05), (10, 0.05 / 9), (4, 0.01)])
def test_mde_equals_statsmodels_power_solve_with_equal_sds_and_n(n, alpha):
    sd = 2.5  # points
    got = mde(sd, sd, n, n, alpha)
    # statsmodels' own power at it is 0.8; its root search (coarser tolerance) lands within 1e-5 of it
    assert TTestIndPower().power(got / sd, nobs1=n, alpha=alpha, ratio=1.0) == pytest.approx(0.8, abs=1e-9)
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n, ratio=1.0, alpha=alpha, power=0.8)
    assert got == pytest.approx(d * sd, rel=1e-5)


@pytest.mark.parametrize("diff, sa, sb, na, nb", [(3.0, 1.0, 2.5, 3, 5), (1.0, 0.4, 0.9, 4, 3), (5.0, 2.0, 2.0, 3, 3)])
def test_welch_power_is_statsmodels_noncentral_t_on_the_welch_df(diff, sa, sb, na, nb):
    se = math.sqrt(sa ** 2 / na + sb ** 2 / nb)
    want = ttest_power(diff / se, nobs=1, alpha=0.05, df=welch_df(sa, sb, na, nb))
    assert welch_power(diff, sa, sb, na, nb) == pytest.approx(float(want), rel=1e-9)
    assert welch_power(mde(sa, sb, na, nb), sa, sb, na, nb) == pytest.approx(0.8, abs=1e-9)


def test_a_comparison_without_a_called_difference_states_its_mde_at_holms_first_step():
    null = welch([0.50, 0.55, 0.60], [0.52, 0.57, 0.53])
    real = welch([0.81, 0.83, 0.82, 0.84], [0.70, 0.72, 0.71])
    judged_null, judged_real = judge_family([null, real])
    sa, sb = 100 * statistics.stdev(null.a_values), 100 * statistics.stdev(null.b_values)
    assert judged_null.mde_alpha == pytest.approx(0.05 / 2)
    assert judged_null.mde80_points == pytest.approx(mde(sa, sb, 3, 3, 0.025))
    assert judged_real.verdict == "a better" and judged_real.mde80_points is None


def test_tost_equals_statsmodels_ttost_ind_with_unequal_variances():
    a, b = [0.500, 0.510, 0.505, 0.498], [0.502, 0.507, 0.499]
    for margin in (0.005, 0.02):
        assert tost(a, b, margin) == pytest.approx(float(ttost_ind(a, b, -margin, margin, usevar="unequal")[0]))


def test_the_margin_decides_equivalent_or_inconclusive_on_the_holm_adjusted_tost_p():
    a, b = [0.500, 0.510, 0.505, 0.498], [0.502, 0.507, 0.499]
    for margin_points, want in ((2.0, "equivalent"), (0.2, "inconclusive")):
        (c,) = judge_family([welch(a, b)], margin_points)
        p = float(ttost_ind(a, b, -margin_points / 100, margin_points / 100, usevar="unequal")[0])
        assert c.tost_p == pytest.approx(p) and c.tost_p_holm == pytest.approx(p)  # a family of one TOST
        assert c.equivalence == want and (p < 0.05) == (want == "equivalent") and c.margin_points == margin_points
    (c,) = judge_family([welch(a, b)])
    assert (c.tost_p, c.equivalence, c.margin_points) == (None, None, None)


@pytest.mark.parametrize("detect, sd, alpha", [(4.0, 2.0, 0.05), (1.0, 1.5, 0.05), (2.0, 1.0, 0.05 / 9),
                                               (3.5, 1.0, 0.05)])
def test_seeds_needed_is_the_ceiling_of_statsmodels_solve_and_at_least_three(detect, sd, alpha):
    n = TTestIndPower().solve_power(effect_size=detect / sd, nobs1=None, ratio=1.0, alpha=alpha, power=0.8)
    assert seeds_needed(detect, sd, sd, alpha) == max(3, math.ceil(n))


def test_seeds_needed_never_goes_below_the_reports_minimum_of_three():
    assert welch_power(10.0, 1.0, 1.0, 2, 2) > 0.8  # two seeds would have the power, but are never tested
    assert seeds_needed(10.0, 1.0, 1.0) == 3
