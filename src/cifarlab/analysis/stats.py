"""Comparing two arms over seeds: Welch's t-test (scipy), its 95% confidence interval and the verdict, judged over
the family of comparisons one report makes (Holm-Bonferroni, statsmodels), with what a null result could have seen
(the 80%-power minimum detectable difference) and, given a margin, an equivalence test (TOST, statsmodels).

A difference is called one only at Holm-adjusted p < 0.05, and only when both arms have at least ``MIN_SEEDS``
seeds: with two seeds a Welch test has about one degree of freedom, and its interval spans most of any plausible
difference."""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass, replace

from scipy import optimize as _optimize
from scipy import stats as _scipy_stats

ALPHA = 0.05  # two-sided significance level
MIN_SEEDS = 3  # per arm, for a test to be run at all
VERDICTS = ("a better", "b better", "no significant difference", "not tested")
POWER = 0.8  # the power at which the minimum detectable difference and the seeds needed are stated
EQUIVALENCE = ("equivalent", "inconclusive")


@dataclass(frozen=True)
class Comparison:
    """Arm a against arm b over seeds (accuracies as fractions; differences in points = percent)."""

    a_values: list[float]
    b_values: list[float]
    diff_points: float  # 100 * (mean a - mean b)
    ci95_points: tuple[float, float] | None  # Welch-Satterthwaite interval of the difference, in points
    p_value: float | None  # two-sided; None when not tested
    df: float | None  # Welch-Satterthwaite degrees of freedom
    verdict: str  # one of VERDICTS; in a family, called on p_holm
    reason: str = ""  # why it was not tested ("" when it was)
    p_holm: float | None = None  # Holm-adjusted over the family; None when not tested or not yet judged in one
    family_size: int | None = None  # tested comparisons in the family
    mde80_points: float | None = None  # smallest difference with POWER at mde_alpha; only where none was called
    mde_alpha: float | None = None
    margin_points: float | None = None  # the equivalence margin the family was judged with
    tost_p: float | None = None  # TOST over ±margin (statsmodels ttost_ind, unequal variances)
    tost_p_holm: float | None = None  # Holm-adjusted over the family's TOSTs
    equivalence: str | None = None  # one of EQUIVALENCE; None without a margin or where a difference was called

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


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the given order (statsmodels ``multipletests(method="holm")``)."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]


def welch_df(sd_a: float, sd_b: float, na: int, nb: int) -> float:
    """Welch-Satterthwaite degrees of freedom of the difference of two means."""
    va, vb = sd_a ** 2 / na, sd_b ** 2 / nb
    return (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))


def welch_power(diff: float, sd_a: float, sd_b: float, na: int, nb: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided Welch test to detect a true difference ``diff`` (in the units of the sds): the
    noncentral t (scipy) on the Welch-Satterthwaite df, noncentrality ``diff`` over the standard error of the
    difference. Equal sds and n give statsmodels' ``TTestIndPower().power`` (whose own noncentral t returns NaN
    at some large noncentralities, which would stop a root search)."""
    df = welch_df(sd_a, sd_b, na, nb)
    nc = abs(diff) / math.sqrt(sd_a ** 2 / na + sd_b ** 2 / nb)
    crit = _scipy_stats.t.isf(alpha / 2, df)
    wrong_side = float(_scipy_stats.nct.cdf(-crit, df, nc))
    # scipy's far lower tail can be NaN at large nc; it is below P(T < 0) = Phi(-nc) there, i.e. negligible
    if not math.isfinite(wrong_side):
        wrong_side = 0.0
    return float(_scipy_stats.nct.sf(crit, df, nc)) + wrong_side


def mde(sd_a: float, sd_b: float, na: int, nb: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference the Welch test detects with ``power`` at this n and these sds (same units)."""
    se = math.sqrt(sd_a ** 2 / na + sd_b ** 2 / nb)
    hi = se
    while welch_power(hi, sd_a, sd_b, na, nb, alpha) < power:  # power rises with the difference: bracket, solve
        hi *= 2
    return float(_optimize.brentq(lambda d: welch_power(d, sd_a, sd_b, na, nb, alpha) - power, 0.0, hi, xtol=1e-12))


def seeds_needed(diff: float, sd_a: float, sd_b: float, alpha: float = ALPHA, power: float = POWER,
                 most: int = 10_000) -> int | None:
    """Seeds per arm (the same in both, at least ``MIN_SEEDS``) for the Welch test to detect ``diff`` with
    ``power``; None when even ``most`` would not."""
    n = MIN_SEEDS
    while welch_power(diff, sd_a, sd_b, n, n, alpha) < power:
        n = n + 1 if n < 64 else int(n * 1.25)  # coarse steps far out, then back down to the smallest n
        if n > most:
            return None
    while n > MIN_SEEDS and welch_power(diff, sd_a, sd_b, n - 1, n - 1, alpha) >= power:
        n -= 1
    return n


def tost(a_values: list[float], b_values: list[float], margin: float) -> float:
    """p of the two one-sided tests that the true difference lies within ±``margin`` (the units of the values),
    Welch's variances (statsmodels ``ttost_ind(usevar="unequal")``)."""
    from statsmodels.stats.weightstats import ttost_ind

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttost_ind(a_values, b_values, -margin, margin, usevar="unequal")[0])


def judge_family(comparisons: list[Comparison], margin_points: float | None = None) -> list[Comparison]:
    """The comparisons of one report, judged as a family: each tested one gets its Holm-adjusted p (over all
    tested), its verdict on it, and where no difference is called, the difference it had 80% power for and, given
    ``margin_points``, a TOST verdict (its p Holm-adjusted over the family's TOSTs).

    The minimum detectable difference is stated at alpha / (tested comparisons): Holm's first step, the level a
    difference must clear when it is the only real one in the family, so the number is one the design can promise."""
    tested = [i for i, c in enumerate(comparisons) if c.p_value is not None]
    adjusted = dict(zip(tested, holm([comparisons[i].p_value for i in tested])))
    m = len(tested)
    judged = []
    for i, c in enumerate(comparisons):
        if i not in adjusted:
            judged.append(replace(c, p_holm=None, family_size=m or None, margin_points=margin_points))
            continue
        p = adjusted[i]
        verdict = ("a better" if c.diff_points > 0 else "b better") if p < ALPHA else "no significant difference"
        extra: dict = {}
        if verdict == "no significant difference":
            sa, sb = (100 * statistics.stdev(v) for v in (c.a_values, c.b_values))
            alpha = ALPHA / m
            extra = {"mde80_points": mde(sa, sb, len(c.a_values), len(c.b_values), alpha), "mde_alpha": alpha}
            if margin_points is not None:
                extra["tost_p"] = tost(c.a_values, c.b_values, margin_points / 100)
        judged.append(replace(c, verdict=verdict, p_holm=p, family_size=m, margin_points=margin_points, **extra))
    with_tost = [i for i, c in enumerate(judged) if c.tost_p is not None]
    for i, p in zip(with_tost, holm([judged[i].tost_p for i in with_tost])):
        judged[i] = replace(judged[i], tost_p_holm=p, equivalence=EQUIVALENCE[0] if p < ALPHA else EQUIVALENCE[1])
    return judged


def describe_p(p: float) -> str:
    """'p = 0.012', 'p = 0.41', 'p < 0.001'."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def seeds_text(na: int, nb: int) -> str:
    if na == nb:
        return f"{na} seed{'s' if na > 1 else ''} each"
    return f"{na} and {nb} seeds"


def is_finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
