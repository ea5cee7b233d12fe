"""Arms (runs that differ only by seed), their comparison under Welch's t-test, and the statements and questions
built from them: the building blocks of ``analysis.findings``."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cifarlab.analysis import metrics
from cifarlab.analysis.runs import Run
from cifarlab.analysis.stats import ALPHA, Comparison, describe_p, is_finite, judge_family, seeds_text, welch


def cost_s(summary: dict[str, Any]) -> float | None:
    """Seconds a run spent producing its result: training, plus the frozen-backbone embedding and the LP-FT head
    probe where the run had them. ``embed_time_s`` is the time the embedding took when it was computed, also on a
    cache hit, so a cached linear probe is not shown as free."""
    parts = [summary.get(k) for k in ("train_time_s", "embed_time_s", "head_init_s")]
    parts = [p for p in parts if is_finite(p)]
    return sum(parts) if parts else None


def metric_of(run: Run, metric: str) -> float | None:
    if metric == "accuracy":
        return run.accuracy
    v = run.summary.get(metric) if run.status == "complete" else None
    return float(v) if is_finite(v) else None


@dataclass
class Arm:
    """One configuration, over the seeds it was run with."""

    label: str
    runs: list[Run]
    metric: str = "accuracy"  # a key of metric_of: accuracy (test / rotation), linear_acc, knn_acc

    def values(self, metric: str | None = None) -> list[float]:
        return [v for r in self.runs if (v := metric_of(r, metric or self.metric)) is not None]

    def stat(self, metric: str | None = None) -> tuple[float, float, int]:
        return metrics.mean_std(self.values(metric))

    @property
    def cost(self) -> float | None:
        costs = [c for r in self.runs if (c := cost_s(r.summary)) is not None]
        return sum(costs) / len(costs) if costs else None

    @property
    def cache_hits(self) -> int:
        """Runs of the arm whose frozen embedding was read from the cache (counted at its computed time)."""
        return sum(r.summary.get("embedding_cache") == "hit" for r in self.runs)

    @property
    def trainable(self) -> int | None:
        return self.runs[0].summary.get("params_trainable")

    @property
    def dataset(self) -> str:
        return dataset_of(self.runs[0])

    @property
    def first(self) -> dict[str, Any]:
        return self.runs[0].summary


@dataclass
class Statement:
    """A sentence of a question, with the comparison it states (None for a sentence about one arm). ``compose``
    writes the text again once the report's family of comparisons is judged (``settle``)."""

    text: str
    a: str | None = None
    b: str | None = None
    metric: str | None = None
    comparison: Comparison | None = None
    compose: Callable[[Statement], str] | None = field(default=None, repr=False, compare=False)

    def to_json(self, question: str) -> dict[str, Any]:
        """The findings.json entry of a comparison."""
        c = self.comparison
        assert c is not None
        return {"question": question, "a": self.a, "b": self.b, "metric": self.metric, "a_values": c.a_values,
                "b_values": c.b_values, "diff_points": c.diff_points,
                "ci95_points": list(c.ci95_points) if c.ci95_points else None, "p_value": c.p_value,
                "p_holm": c.p_holm, "family_size": c.family_size, "alpha": ALPHA,
                "test": c.test, "verdict": c.verdict,
                **({} if c.verdict in ("a better", "b better") else
                   {"mde80_points": c.mde80_points, "mde_alpha": c.mde_alpha,
                    **({"mde80_reason": f"not tested: {c.reason}"} if c.p_value is None else {})}),
                "equivalence_margin_points": c.margin_points, "tost_p": c.tost_p, "tost_p_holm": c.tost_p_holm,
                "equivalence": c.equivalence, "sentence": self.text}


@dataclass
class Finding:
    """One question of the curriculum: its arms (the table), statements and the name of its chart."""

    key: str
    title: str
    question: str
    arms: list[Arm] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        return [s.text for s in self.statements]

    @property
    def comparisons(self) -> list[Statement]:
        return [s for s in self.statements if s.comparison is not None]

    def add(self, statement: Statement | str) -> None:
        self.statements.append(Statement(statement) if isinstance(statement, str) else statement)

    @property
    def mixes_datasets(self) -> bool:
        return len({a.dataset for a in self.arms}) > 1


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def compare(a: Arm, b: Arm, what_a: str, what_b: str, metric: str | None = None, unit: str = "") -> Statement:
    """The sentence and Welch comparison of arm ``a`` against arm ``b``, e.g. 'Full fine-tuning beats the linear
    probe by 4.00 points (82.00% vs 78.00%; 95% CI 1.23 to 6.77 points; Welch's t-test p = 0.012, Holm-adjusted
    p = 0.048 over 9 comparisons, 3 seeds each), at 3.0x the training time.' Judged as a family of one until
    ``settle`` judges the report's whole family."""
    metric = metric or a.metric
    ca, cb = a.cost, b.cost
    ratio = ca / cb if ca and cb else None

    def compose(s: Statement) -> str:
        return comparison_text(s.comparison, what_a, what_b, unit, ratio)

    s = Statement("", a.label, b.label, metric, judge_family([welch(a.values(metric), b.values(metric))])[0],
                  compose)
    s.text = compose(s)
    return s


def comparison_text(c: Comparison, what_a: str, what_b: str, unit: str = "", ratio: float | None = None) -> str:
    """The sentence of a judged comparison (``ratio``: a's training time over b's)."""
    na, nb = len(c.a_values), len(c.b_values)
    means = f"{100 * c.a_mean:.2f}% vs {100 * c.b_mean:.2f}%"
    size = f"{abs(c.diff_points):.2f} points"
    if c.p_value is None:
        side = "above" if c.diff_points > 0 else "below" if c.diff_points < 0 else "equal to"
        text = (f"{what_a} is {size + ' ' if c.diff_points else ''}{side} {what_b}{unit} ({means}, "
                f"{seeds_text(na, nb)})")
        tail = f"; the difference was not tested ({c.reason})"
    else:
        lo, hi = c.ci95_points
        m = c.family_size or 1
        evidence = (f"{means}; 95% CI {lo:+.2f} to {hi:+.2f} points; Welch's t-test {describe_p(c.p_value)}, "
                    f"Holm-adjusted {describe_p(c.p_holm if c.p_holm is not None else c.p_value)} over {m} "
                    f"comparison{'s' if m > 1 else ''}, {seeds_text(na, nb)}")
        tail = ""
        if c.verdict == "no significant difference":
            text = (f"{what_a} and {what_b} show no significant difference{unit}: {c.diff_points:+.2f} points "
                    f"({evidence})")
            if c.mde80_points is not None:
                level = f"0.05/{m}" if m > 1 else "0.05"
                tail = (f"; with {seeds_text(na, nb)} this design had 80% power only for differences of "
                        f"{c.mde80_points:.2f} points or more (two-sided, alpha {level})")
            if c.equivalence is not None:
                said = ("equivalent within ±{m:.2f} points" if c.equivalence == "equivalent" else
                        "equivalence within ±{m:.2f} points is inconclusive").format(m=c.margin_points)
                tail += f"; {said} (TOST {describe_p(c.tost_p)}, Holm-adjusted {describe_p(c.tost_p_holm)})"
        else:
            verb = "beats" if c.verdict == "a better" else "trails"
            text = f"{what_a} {verb} {what_b} by {size}{unit} ({evidence})"
    if ratio:
        text += f", at {ratio:.1f}x the training time"
    return _cap(text + tail) + "."


def settle(statements: list[Statement], margin_points: float | None = None) -> None:
    """Judge every comparison among ``statements`` as one family (``stats.judge_family``: Holm over all tested,
    the minimum detectable difference and TOST where none is called), then write each composed sentence again;
    sentences that quote other comparisons (the measured order) read the judged ones."""
    stated = [s for s in statements if s.comparison is not None]
    for s, c in zip(stated, judge_family([s.comparison for s in stated], margin_points)):
        s.comparison = c
    for s in statements:
        if s.compose is not None:
            s.text = s.compose(s)


def group_by(runs: list[Run], key) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        groups[key(r)].append(r)
    return dict(groups)


# config keys that do not change what a run measures: runs equal in everything else are seeds of one arm
NOT_A_VARIANT = {"seed", "name", "out", "init", "resume", "overwrite", "progress", "data_root", "num_threads",
                 "embed_samples", "eval_batch_size", "series", "reference", "arm", "cpu_allocator"}


def variant(run: Run) -> tuple:
    """The run's configuration without the keys that do not change what it measures (NOT_A_VARIANT)."""
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in run.config.get("config", {}).items()
                        if k not in NOT_A_VARIANT))


def seed_arms(label: str, runs: list[Run], metric: str = "accuracy") -> list[Arm]:
    """One arm per configuration: runs that differ only by seed are one arm; runs that differ in anything else
    (a swept lr, another epoch budget) are separate arms, labelled with the keys that differ."""
    variants = group_by(runs, variant)
    named = {v: str(group[0].key("arm") or "") for v, group in variants.items()}
    if all(named.values()):  # the study labelled its arms (e.g. "course recipe" / "cifarlab defaults")
        return [Arm(f"{label}, {named[v]}", group, metric) for v, group in variants.items()]
    if len(variants) == 1:
        return [Arm(label, runs, metric)]
    differ = sorted({k for v in variants for k, val in v if len({dict(w).get(k) for w in variants}) > 1})
    return [Arm(f"{label} ({', '.join(f'{k}={json.loads(dict(v)[k])}' for k in differ if k in dict(v))})", group,
                metric) for v, group in variants.items()]


def add_arms(f: Finding, label: str, runs: list[Run], metric: str = "accuracy") -> Arm | None:
    """Add the arms of ``runs`` to the finding's table; the arm to compare, or None when the runs hold several
    configurations (a sentence would then average unlike runs)."""
    arms = seed_arms(label, runs, metric)
    f.arms += arms
    return arms[0] if len(arms) == 1 else None


def data_budget(run: Run) -> str:
    """'100/class', 'all' or '0.04 of train': the labelled training data a run had."""
    pc, frac = run.key("per_class", 0), run.key("train_fraction", 1.0)
    return f"{pc}/class" if pc else ("all" if frac >= 1 else f"{frac:g} of train")


def dataset_of(run: Run) -> str:
    return str(run.summary.get("dataset") or run.key("dataset") or "?")


def where_text(model: str, dataset: str, data: str, mixed: bool) -> str:
    return f"{model} ({dataset}, {data})" if mixed else f"{model} ({data})"


def plain(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not r.summary.get("study_series")]  # series runs belong to the low-label curve


def mixed_datasets(runs: list[Run]) -> bool:
    return len({dataset_of(r) for r in runs}) > 1
