"""Comparing two arms over seeds: Welch's t-test (scipy), its 95% confidence interval and the verdict.

A difference is called one only at p < 0.05, and only when both arms have at least ``MIN_SEEDS`` seeds: with two
seeds a Welch test has about one degree of freedom, and its interval spans most of any plausible difference."""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass

from scipy import stats as _scipy_stats

ALPHA = 0.05  # two-sided significance level
MIN_SEEDS = 3  # per arm, for a test to be run at all
VERDICTS = ("a better", "b better", "no significant difference", "not tested")


@dataclass(frozen=True)
class Comparison:
    """Arm a against arm b over seeds (accuracies as fractions; differences in points = percent)."""

    a_values: list[float]
    b_values: list[float]
    diff_points: float  # 100 * (mean a - mean b)
    ci95_points: tuple[float, float] | None  # Welch-Satterthwaite interval of the difference, in points
    p_value: float | None  # two-sided; None when not tested
    df: float | None  # Welch-Satterthwaite degrees of freedom
    verdict: str  # one of VERDICTS
    reason: str = ""  # why it was not tested ("" when it was)

    @property
    def test(self) -> str | None:
        return "welch" if self.p_value is not None else None

    @property
    def a_mean(self) -> float:
        return statistics.fmean(self.a_values)

    @property
    def b_mean(self) -> float:
        return statistics.fmean(self.b_values)


def welch(a_values: list[float], b_values: list[float]) -> Comparison:
    """Welch's t-test of ``a_values`` against ``b_values`` (one value per seed), as ``scipy.stats.ttest_ind(a, b,
    equal_var=False)``, with its 95% interval (scipy's, on the Welch-Satterthwaite degrees of freedom).

    Not tested (verdict "not tested", no p-value) when an arm has fewer than ``MIN_SEEDS`` values, or when neither
    arm varies over its seeds (the test statistic is then infinite or undefined)."""
    a, b = [float(v) for v in a_values], [float(v) for v in b_values]
    if not a or not b:
        raise ValueError("each arm needs at least one value")
    diff = 100 * (statistics.fmean(a) - statistics.fmean(b))
    if min(len(a), len(b)) < MIN_SEEDS:
        return Comparison(a, b, diff, None, None, None, "not tested",
                          f"fewer than {MIN_SEEDS} seeds in an arm")
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return Comparison(a, b, diff, None, None, None, "not tested", "neither arm varies over its seeds")
    with warnings.catch_warnings():  # scipy warns on near-identical values; the result is still what it computes
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _scipy_stats.ttest_ind(a, b, equal_var=False)
        lo, hi = res.confidence_interval(confidence_level=0.95)
    p = float(res.pvalue)
    if p < ALPHA:
        verdict = "a better" if diff > 0 else "b better"
    else:
        verdict = "no significant difference"
    return Comparison(a, b, diff, (100 * float(lo), 100 * float(hi)), p, float(res.df), verdict)


def describe_p(p: float) -> str:
    """'p = 0.012', 'p = 0.41', 'p < 0.001'."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def seeds_text(na: int, nb: int) -> str:
    if na == nb:
        return f"{na} seed{'s' if na > 1 else ''} each"
    return f"{na} and {nb} seeds"


def is_finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
