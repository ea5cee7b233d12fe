"""The curriculum's questions, answered from run summaries: which runs each question compares, the measured
differences, and the sentences that state them.

Runs that differ only by seed form one *arm*. Two arms are compared with Welch's t-test over their seeds
(``analysis.stats.welch``, i.e. ``scipy.stats.ttest_ind(a, b, equal_var=False)``): each sentence states the
difference in points, its 95% confidence interval (Welch-Satterthwaite degrees of freedom), n per arm and p. A
difference is called one ("beats", "trails") only at p < 0.05; otherwise the sentence says there is no significant
difference. With fewer than 3 seeds in an arm the sentence says the difference was not tested.

A run is filed under a question by its recipe and what it recorded it started from (``started_from``, see
``analysis.origin``), never by guessing from its config."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from cifarlab.analysis import metrics
from cifarlab.analysis.origin import UNRECORDED, Origins
from cifarlab.analysis.runs import Run
from cifarlab.analysis.stats import Comparison, describe_p, is_finite, seeds_text, welch

TRANSFER = ("linear", "partial", "finetune")
REGIME_WORDS = {"linear": "the linear probe", "partial": "the last block", "finetune": "full fine-tuning"}
CONTRASTIVE = ("supcon", "simclr", "supcon_ce")
# the order usually reported for frozen features against fine-tuning, stated beside a measured order that differs
USUAL_TRANSFER_ORDER = ("Kornblith, Shlens & Le (CVPR 2019, \u201cDo Better ImageNet Models Transfer Better?\u201d) "
                        "report full fine-tuning at or above the linear probe on frozen ImageNet features")


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
    """A sentence of a question, with the comparison it states (None for a sentence about one arm)."""

    text: str
    a: str | None = None
    b: str | None = None
    metric: str | None = None
    comparison: Comparison | None = None

    def to_json(self, question: str) -> dict[str, Any]:
        """The findings.json entry of a comparison."""
        c = self.comparison
        assert c is not None
        return {"question": question, "a": self.a, "b": self.b, "metric": self.metric, "a_values": c.a_values,
                "b_values": c.b_values, "diff_points": c.diff_points,
                "ci95_points": list(c.ci95_points) if c.ci95_points else None, "p_value": c.p_value,
                "test": c.test, "verdict": c.verdict, "sentence": self.text}


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
    probe by 4.00 points (82.00% vs 78.00%; 95% CI 1.23 to 6.77 points; Welch's t-test p = 0.012, 3 seeds each), at
    3.0x the training time.'"""
    metric = metric or a.metric
    c = welch(a.values(metric), b.values(metric))
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
        evidence = f"{means}; 95% CI {lo:+.2f} to {hi:+.2f} points; Welch's t-test {describe_p(c.p_value)}, " \
                   f"{seeds_text(na, nb)}"
        if c.verdict == "no significant difference":
            text = (f"{what_a} and {what_b} show no significant difference{unit}: {c.diff_points:+.2f} points "
                    f"({evidence})")
        else:
            verb = "beats" if c.verdict == "a better" else "trails"
            text = f"{what_a} {verb} {what_b} by {size}{unit} ({evidence})"
        tail = ""
    ca, cb = a.cost, b.cost
    if ca and cb:
        text += f", at {ca / cb:.1f}x the training time"
    return Statement(_cap(text + tail) + ".", a.label, b.label, metric, c)


def _arms(runs: list[Run], key) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        groups[key(r)].append(r)
    return dict(groups)


# config keys that do not change what a run measures: runs equal in everything else are seeds of one arm
NOT_A_VARIANT = {"seed", "name", "out", "init", "resume", "overwrite", "progress", "data_root", "num_threads",
                 "embed_samples", "eval_batch_size", "series", "reference"}


def _variant(run: Run) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in run.config.get("config", {}).items()
                        if k not in NOT_A_VARIANT))


def seed_arms(label: str, runs: list[Run], metric: str = "accuracy") -> list[Arm]:
    """One arm per configuration: runs that differ only by seed are one arm; runs that differ in anything else
    (a swept lr, another epoch budget) are separate arms, labelled with the keys that differ."""
    variants = _arms(runs, _variant)
    if len(variants) == 1:
        return [Arm(label, runs, metric)]
    differ = sorted({k for v in variants for k, val in v if len({dict(w).get(k) for w in variants}) > 1})
    return [Arm(f"{label} ({', '.join(f'{k}={json.loads(dict(v)[k])}' for k in differ if k in dict(v))})", group,
                metric) for v, group in variants.items()]


def _single(f: Finding, label: str, runs: list[Run], metric: str = "accuracy") -> Arm | None:
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


def _where(model: str, dataset: str, data: str, mixed: bool) -> str:
    return f"{model} ({dataset}, {data})" if mixed else f"{model} ({data})"


def _plain(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not r.summary.get("study_series")]  # series runs belong to the low-label curve


def _mixed(runs: list[Run]) -> bool:
    return len({dataset_of(r) for r in runs}) > 1


def _one_arm_sentence(arm: Arm, subject: str, chance: float, what: str = "test accuracy") -> Statement | None:
    m, sd, n = arm.stat()
    if not n:
        return None
    spread = f" ± {100 * sd:.2f} (sd)" if n > 1 else ""
    epochs = arm.first.get("epochs")
    cost = f" in {arm.cost:.0f} s of training" if arm.cost else ""
    return Statement(f"{subject} reaches {100 * m:.2f}%{spread} {what} ({n} seed{'s' if n > 1 else ''}, "
                     f"{epochs} epochs{cost}), {100 * (m - chance):.2f} points above chance ({100 * chance:.0f}%).",
                     arm.label, None, "accuracy")


def scratch(runs: list[Run], random_transfer: list[Run]) -> Finding | None:
    """From random weights: the scratch recipe, and transfer recipes that started from random init (``none``)
    with no rotation-init counterpart (they are from-random-init runs, not transfer)."""
    found = _plain([r for r in runs if r.summary.get("recipe") == "scratch"]) + random_transfer
    if not found:
        return None
    f = Finding("scratch", "From scratch", "How far does a network trained from random weights get, and how fast?")
    mixed = _mixed(found)
    key = (lambda r: (r.summary.get("model"), r.summary.get("recipe"), dataset_of(r), data_budget(r)))
    for (model, recipe, dataset, data), group in _arms(found, key).items():
        how = "" if recipe == "scratch" else f", {REGIME_WORDS.get(recipe, recipe)} from random init"
        arm = _single(f, f"{model}{how}, {data}" + (f", {dataset}" if mixed else ""), group)
        if arm is None:
            continue
        subject = f"{model} from scratch" if recipe == "scratch" else \
            f"{model} with {REGIME_WORDS.get(recipe, recipe)} from random init"
        chance = 1 / max(len(group[0].classes), 1)
        s = _one_arm_sentence(arm, f"{subject} on {data}" + (f" of {dataset}" if mixed else ""), chance)
        if s:
            f.add(s)
    return f


def _order_statement(model_where: str, arms: dict[str, Arm], pairs: dict[tuple[str, str], Statement]
                     ) -> Statement | None:
    """The measured order of the transfer regimes with its budget and the Welch verdict of each adjacent pair;
    where full fine-tuning is below the linear probe, the reference that reports the usual order is named."""
    means = sorted(((k, arms[k].stat()[0]) for k in TRANSFER if k in arms and arms[k].values()), key=lambda t: t[1])
    if len(means) < 2:
        return None
    order = " < ".join(f"{REGIME_WORDS[k]} ({100 * m:.2f}%)" for k, m in means)

    def per_regime(key: str, fmt: str) -> str:
        vals = {k: arms[k].first.get(key) for k, _ in means}
        if len(set(map(str, vals.values()))) == 1:
            v = next(iter(vals.values()))
            return fmt.format(v) if v is not None else "unrecorded"
        return ", ".join(f"{REGIME_WORDS[k]} {fmt.format(v) if v is not None else 'unrecorded'}"
                         for k, v in vals.items())

    budget = (f"labelled training images: {per_regime('num_train', '{:,}')}; epochs: {per_regime('epochs', '{}')}; "
              f"resolution: {per_regime('resolution', '{} px')}")
    adjacent = []
    for (lo, _), (hi, _) in zip(means, means[1:]):
        s = pairs.get((hi, lo)) or pairs.get((lo, hi))
        c = s.comparison if s else None
        if c is None:
            continue
        if c.p_value is None:
            status = f"not tested ({c.reason})"
        elif c.verdict == "no significant difference":
            status = f"not significant ({describe_p(c.p_value)})"
        else:
            status = f"significant ({describe_p(c.p_value)})"
        adjacent.append(f"{REGIME_WORDS[lo]} < {REGIME_WORDS[hi]}: {status}")
    text = f"Measured order on {model_where}, by mean test accuracy: {order}. Budget behind it: {budget}."
    if adjacent:
        text += " Adjacent differences: " + "; ".join(adjacent) + "."
    m = dict(means)
    if "finetune" in m and "linear" in m and m["finetune"] < m["linear"]:
        text += (f" This differs from the order usually reported: {USUAL_TRANSFER_ORDER}.")
    return Statement(text)


def transfer(runs: list[Run], origins: Origins) -> Finding | None:
    found = [r for r in runs if r.summary.get("recipe") in TRANSFER and origins.kind(r) in ("imagenet", "file")]
    if not found:
        return None
    f = Finding("transfer", "Transfer from ImageNet", "For each pretrained backbone: the linear probe, the last block "
                "or full fine-tuning: how much accuracy does each buy, for how many trainable parameters and seconds?")
    mixed = _mixed(found)
    key = (lambda r: (r.summary.get("model"), dataset_of(r), data_budget(r), r.summary.get("started_from")))
    groups = _arms(found, key)
    n_sources = defaultdict(int)
    for model, dataset, data, _ in groups:
        n_sources[(model, dataset, data)] += 1
    for (model, dataset, data, start), group in groups.items():
        weights = ", given weights" if origins.kind(group[0]) == "file" else ""
        if n_sources[(model, dataset, data)] > 1:
            weights = f", {start}"
        where = _where(model, dataset, data, mixed)
        regimes = _arms(group, lambda r: r.summary.get("recipe"))
        arms = {k: _single(f, f"{model}{weights}, {REGIME_WORDS[k]}, {data}" + (f", {dataset}" if mixed else ""),
                           regimes[k]) for k in TRANSFER if k in regimes}
        arms = {k: a for k, a in arms.items() if a is not None and a.values()}
        pairs: dict[tuple[str, str], Statement] = {}
        for hi, lo in (("partial", "linear"), ("finetune", "linear"), ("finetune", "partial")):
            if hi in arms and lo in arms:
                pairs[(hi, lo)] = compare(arms[hi], arms[lo], f"on {where}{weights}, {REGIME_WORDS[hi]}",
                                          REGIME_WORDS[lo])
                f.add(pairs[(hi, lo)])
        order = _order_statement(where + weights, arms, pairs)
        if order:
            f.add(order)
    return f


def contrastive(runs: list[Run]) -> Finding | None:
    found = [r for r in runs if r.summary.get("recipe") in CONTRASTIVE]
    if not found:
        return None
    f = Finding("supcon", "Contrastive pretraining", "Does SupCon (or SimCLR) pretraining give a better encoder than "
                "cross-entropy at the same budget, and than a random-init encoder? (linear probe and kNN)")

    def kind(r: Run) -> str:
        return "control" if r.summary.get("control") else str(r.summary.get("recipe"))

    words = {"supcon": "SupCon", "simclr": "SimCLR", "supcon_ce": "the cross-entropy baseline",
             "control": "the random-init encoder"}
    mixed = _mixed(found)
    for (model, dataset, data), group in _arms(found, lambda r: (r.summary.get("model"), dataset_of(r),
                                                                 data_budget(r))).items():
        kinds = _arms(group, kind)
        arms = {k: _single(f, f"{model}, {words[k]}, {data}" + (f", {dataset}" if mixed else ""), kinds[k],
                           "linear_acc") for k in words if k in kinds}
        arms = {k: a for k, a in arms.items() if a is not None}
        where = f"{model} ({dataset})" if mixed else model
        for a, b in (("supcon", "control"), ("simclr", "control"), ("supcon", "supcon_ce"), ("simclr", "supcon_ce")):
            if a in arms and b in arms:
                for metric, what in (("linear_acc", "in linear-probe accuracy"), ("knn_acc", "in kNN accuracy")):
                    if arms[a].values(metric) and arms[b].values(metric):
                        f.add(compare(arms[a], arms[b], f"on {where}, {words[a]}", words[b], metric, unit=f" {what}"))
    return f


def _tuned_key(r: Run) -> tuple:
    return r.summary.get("model"), r.summary.get("recipe"), dataset_of(r), data_budget(r)


def rotation_controls(runs: list[Run], origins: Origins) -> tuple[list[Run], list[Run]]:
    """(runs trained from a rotation run's encoder, their random-init controls): a control has started_from
    ``none`` and the model, recipe, dataset and labelled data of a rotation-init run."""
    tuned = [r for r in _plain(runs) if r.summary.get("recipe") in TRANSFER]
    from_rotation = [r for r in tuned if origins.kind(r) == "rotation"]
    keys = {_tuned_key(r) for r in from_rotation}
    controls = [r for r in tuned if origins.kind(r) == "none" and _tuned_key(r) in keys]
    return from_rotation, controls


def rotation(runs: list[Run], origins: Origins) -> Finding | None:
    pretext = [r for r in runs if r.summary.get("recipe") == "rotation"]
    from_rotation, controls = rotation_controls(runs, origins)
    series = lowlabel_series(runs)
    if not pretext and not from_rotation and not series:
        return None
    f = Finding("rotation", "Rotation pretraining", "Does label-free rotation prediction give a better starting point "
                "than random weights, for the last block and for full fine-tuning, and at how many labels?")
    mixed = _mixed(pretext + from_rotation + controls)
    for (model, dataset), group in _arms(pretext, lambda r: (r.summary.get("model"), dataset_of(r))).items():
        arm = _single(f, f"{model}, rotation pretext" + (f", {dataset}" if mixed else ""), group)
        if arm is not None:
            s = _one_arm_sentence(arm, f"The rotation pretext task on {model}" + (f" ({dataset})" if mixed else ""),
                                  0.25, "rotation accuracy on the test images")
            if s:
                f.add(s)
    for (model, recipe, dataset, data), group in _arms(from_rotation + controls, _tuned_key).items():
        kinds = _arms(group, lambda r: origins.kind(r))
        names = {"rotation": "rotation", "none": "random"}
        arms = {k: _single(f, f"{model}, {REGIME_WORDS[recipe]}, {names[k]} init, {data}"
                           + (f", {dataset}" if mixed else ""), kinds[k]) for k in ("rotation", "none") if k in kinds}
        arms = {k: a for k, a in arms.items() if a is not None and a.values()}
        if len(arms) == 2:
            f.add(compare(arms["rotation"], arms["none"], f"with {REGIME_WORDS[recipe]} trained on {data} "
                          f"({f'{model}, {dataset}' if mixed else model}), "
                          "rotation pretraining", "random init"))
    for statement in lowlabel_statements(runs):
        f.add(statement)
    return f


def _series_values(runs: list[Run]) -> dict[tuple[str, int], list[Run]]:
    by: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for r in runs:
        method = r.summary.get("study_series")
        if method and r.accuracy is not None and r.key("per_class"):
            by[(str(method), int(r.key("per_class")))].append(r)
    return dict(sorted(by.items()))


def lowlabel_series(runs: list[Run]) -> dict[str, list[tuple[int, float, float]]]:
    """Accuracy vs labelled images per class, per method (runs tagged with a ``series`` by a study)."""
    series: dict[str, list[tuple[int, float, float]]] = {}
    for (method, n), group in _series_values(runs).items():
        m, sd, _ = metrics.mean_std(r.accuracy for r in group)
        series.setdefault(method, []).append((n, m, sd))
    return series


def lowlabel_statements(runs: list[Run]) -> list[Statement]:
    """At each labels-per-class point shared by the first two series: their Welch comparison."""
    by = _series_values(runs)
    names = list(dict.fromkeys(method for method, _ in by))
    if len(names) < 2:
        return []
    a, b = names[:2]
    shared = sorted({n for m, n in by if m == a} & {n for m, n in by if m == b})
    return [compare(Arm(f"{a}, {n}/class", by[(a, n)]), Arm(f"{b}, {n}/class", by[(b, n)]),
                    f"on the low-label curve at {n}/class, {a}", b) for n in shared]


def unfiled(runs: list[Run], origins: Origins) -> list[Run]:
    """Transfer-recipe runs that no question holds: their start is unrecorded, or is a cifarlab run other than a
    rotation run (the report names them instead of guessing where they belong)."""
    filed_kinds = ("imagenet", "file", "rotation", "none")
    return [r for r in _plain(runs) if r.summary.get("recipe") in TRANSFER and origins.kind(r) not in filed_kinds]


def answer(runs: list[Run]) -> list[Finding]:
    """Every question the runs can answer, in the curriculum's order (a question without runs is left out)."""
    origins = Origins(runs)
    _, controls = rotation_controls(runs, origins)
    taken = {id(r) for r in controls}
    random_transfer = [r for r in _plain(runs) if r.summary.get("recipe") in TRANSFER and origins.kind(r) == "none"
                       and id(r) not in taken]
    found = [scratch(runs, random_transfer), transfer(runs, origins), contrastive(runs), rotation(runs, origins)]
    return [f for f in found if f is not None and (f.arms or f.statements)]


def findings_json(answers: list[Finding]) -> list[dict[str, Any]]:
    """One entry per comparison of every question (what ``OUT.findings.json`` holds)."""
    return [s.to_json(f.key) for f in answers for s in f.comparisons]


__all__ = ["Arm", "Finding", "Statement", "answer", "compare", "cost_s", "data_budget", "findings_json",
           "lowlabel_series", "UNRECORDED"]
