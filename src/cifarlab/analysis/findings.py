"""The curriculum's questions, answered from run summaries: which runs each question compares, the measured
differences, and the sentences that state them.

Runs that differ only by seed form one *arm*. Two arms are compared with Welch's t-test over their seeds
(``analysis.stats.welch``, i.e. ``scipy.stats.ttest_ind(a, b, equal_var=False)``): each sentence states the
difference in points, its 95% confidence interval (Welch-Satterthwaite degrees of freedom), n per arm, p and p
Holm-adjusted over every comparison the report tests. A difference is called one ("beats", "trails") only at
Holm-adjusted p < 0.05; otherwise the sentence says there is no significant difference, and what difference the
design had 80% power for (and, given an equivalence margin, the TOST verdict). With fewer than 3 seeds in an arm
the sentence says the difference was not tested.

A run is filed under a question by its recipe and what it recorded it started from (``started_from``, see
``analysis.origin``), never by guessing from its config."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from cifarlab.analysis import metrics
from cifarlab.analysis.arms import (
    NOT_A_VARIANT,
    Arm,
    Finding,
    Statement,
    add_arms,
    compare,
    cost_s,
    data_budget,
    dataset_of,
    group_by,
    metric_of,
    mixed_datasets,
    plain,
    seed_arms,
    settle,
    where_text,
)
from cifarlab.analysis.origin import UNRECORDED, Origins
from cifarlab.analysis.runs import Run
from cifarlab.analysis.stats import describe_p
from cifarlab.errors import CifarlabError

TRANSFER = ("linear", "partial", "finetune")
REGIME_WORDS = {"linear": "the linear probe", "partial": "the last block", "finetune": "full fine-tuning"}
CONTRASTIVE = ("supcon", "simclr", "supcon_ce")
# the order usually reported for frozen features against fine-tuning, stated beside a measured order that differs
USUAL_TRANSFER_ORDER = ("Kornblith, Shlens & Le (CVPR 2019, \u201cDo Better ImageNet Models Transfer Better?\u201d) "
                        "report full fine-tuning at or above the linear probe on frozen ImageNet features")


def versus_chance(mean: float, chance: float) -> str:
    """'12.00 points above chance (10%)', '1.00 points below chance (10%)' or 'at chance (10%)'."""
    margin = round(100 * (mean - chance), 2)
    side = "above" if margin > 0 else "below" if margin < 0 else None
    return f"{abs(margin):.2f} points {side} chance ({100 * chance:.0f}%)" if side else \
        f"at chance ({100 * chance:.0f}%)"


def _one_arm_sentence(arm: Arm, subject: str, chance: float, what: str = "test accuracy") -> Statement | None:
    m, sd, n = arm.stat()
    if not n:
        return None
    spread = f" ± {100 * sd:.2f} (sd)" if n > 1 else ""
    epochs = arm.first.get("epochs")
    cost = f" in {arm.cost:.0f} s of training" if arm.cost else ""
    return Statement(f"{subject} reaches {100 * m:.2f}%{spread} {what} ({n} seed{'s' if n > 1 else ''}, "
                     f"{epochs} epochs{cost}), {versus_chance(m, chance)}.",
                     arm.label, None, "accuracy")


def scratch(runs: list[Run], random_transfer: list[Run]) -> Finding | None:
    """From random weights: the scratch recipe, and transfer recipes that started from random init (``none``)
    with no rotation-init counterpart (they are from-random-init runs, not transfer)."""
    found = plain([r for r in runs if r.summary.get("recipe") == "scratch"]) + random_transfer
    if not found:
        return None
    f = Finding("scratch", "From scratch", "How far does a network trained from random weights get, and how fast?")
    mixed = mixed_datasets(found)
    key = (lambda r: (r.summary.get("model"), r.summary.get("recipe"), dataset_of(r), data_budget(r)))
    for (model, recipe, dataset, data), group in group_by(found, key).items():
        how = "" if recipe == "scratch" else f", {REGIME_WORDS.get(recipe, recipe)} from random init"
        arm = add_arms(f, f"{model}{how}, {data}" + (f", {dataset}" if mixed else ""), group)
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

    def compose(_: Statement) -> str:  # reads the pairs' comparisons as judged when it is called
        adjacent = []
        for (lo, _), (hi, _) in zip(means, means[1:]):
            s = pairs.get((hi, lo)) or pairs.get((lo, hi))
            c = s.comparison if s else None
            if c is None:
                continue
            if c.p_value is None:
                status = f"not tested ({c.reason})"
            else:
                p = describe_p(c.p_value)
                holm = describe_p(c.p_holm if c.p_holm is not None else c.p_value)
                word = "not significant" if c.verdict == "no significant difference" else "significant"
                status = f"{word} ({p}, Holm-adjusted {holm})"
            adjacent.append(f"{REGIME_WORDS[lo]} < {REGIME_WORDS[hi]}: {status}")
        text = f"Measured order on {model_where}, by mean test accuracy: {order}. Budget behind it: {budget}."
        if adjacent:
            text += " Adjacent differences: " + "; ".join(adjacent) + "."
        m = dict(means)
        if "finetune" in m and "linear" in m and m["finetune"] < m["linear"]:
            text += (f" This differs from the order usually reported: {USUAL_TRANSFER_ORDER}.")
        return text

    s = Statement("", compose=compose)
    s.text = compose(s)
    return s


def transfer(runs: list[Run], origins: Origins) -> Finding | None:
    found = [r for r in runs if r.summary.get("recipe") in TRANSFER and origins.kind(r) in ("imagenet", "file")]
    if not found:
        return None
    f = Finding("transfer", "Transfer from ImageNet", "For each pretrained backbone: the linear probe, the last block "
                "or full fine-tuning: how much accuracy does each buy, for how many trainable parameters and seconds?")
    mixed = mixed_datasets(found)
    key = (lambda r: (r.summary.get("model"), dataset_of(r), data_budget(r), r.summary.get("started_from")))
    groups = group_by(found, key)
    n_sources = defaultdict(int)
    for model, dataset, data, _ in groups:
        n_sources[(model, dataset, data)] += 1
    for (model, dataset, data, start), group in groups.items():
        weights = ", given weights" if origins.kind(group[0]) == "file" else ""
        if n_sources[(model, dataset, data)] > 1:
            weights = f", {start}"
        where = where_text(model, dataset, data, mixed)
        regimes = group_by(group, lambda r: r.summary.get("recipe"))
        arms = {k: add_arms(f, f"{model}{weights}, {REGIME_WORDS[k]}, {data}" + (f", {dataset}" if mixed else ""),
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
    mixed = mixed_datasets(found)
    for (model, dataset, data), group in group_by(found, lambda r: (r.summary.get("model"), dataset_of(r),
                                                                 data_budget(r))).items():
        kinds = group_by(group, kind)
        arms = {k: add_arms(f, f"{model}, {words[k]}, {data}" + (f", {dataset}" if mixed else ""), kinds[k],
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
    tuned = [r for r in plain(runs) if r.summary.get("recipe") in TRANSFER]
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
    mixed = mixed_datasets(pretext + from_rotation + controls)
    for (model, dataset), group in group_by(pretext, lambda r: (r.summary.get("model"), dataset_of(r))).items():
        arm = add_arms(f, f"{model}, rotation pretext" + (f", {dataset}" if mixed else ""), group)
        if arm is not None:
            s = _one_arm_sentence(arm, f"The rotation pretext task on {model}" + (f" ({dataset})" if mixed else ""),
                                  0.25, "rotation accuracy on the test images")
            if s:
                f.add(s)
    for (model, recipe, dataset, data), group in group_by(from_rotation + controls, _tuned_key).items():
        kinds = group_by(group, lambda r: origins.kind(r))
        names = {"rotation": "rotation", "none": "random"}
        arms = {k: add_arms(f, f"{model}, {REGIME_WORDS[recipe]}, {names[k]} init, {data}"
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
    return [r for r in plain(runs) if r.summary.get("recipe") in TRANSFER and origins.kind(r) not in filed_kinds]


def answer(runs: list[Run], equivalence_margin: float | None = None) -> list[Finding]:
    """Every question the runs can answer, in the curriculum's order (a question without runs is left out), with
    every comparison of every question judged as one family (Holm; where no difference is called, the difference
    80% power needed and, with ``equivalence_margin`` in points, a TOST verdict)."""
    if equivalence_margin is not None and not (math.isfinite(equivalence_margin) and equivalence_margin > 0):
        raise CifarlabError(f"equivalence margin {equivalence_margin!r}: expected a positive number of points")
    origins = Origins(runs)
    _, controls = rotation_controls(runs, origins)
    taken = {id(r) for r in controls}
    random_transfer = [r for r in plain(runs) if r.summary.get("recipe") in TRANSFER and origins.kind(r) == "none"
                       and id(r) not in taken]
    found = [scratch(runs, random_transfer), transfer(runs, origins), contrastive(runs), rotation(runs, origins)]
    found = [f for f in found if f is not None and (f.arms or f.statements)]
    settle([s for f in found for s in f.statements], equivalence_margin)
    return found


def findings_json(answers: list[Finding]) -> list[dict[str, Any]]:
    """One entry per comparison of every question (what ``OUT.findings.json`` holds)."""
    return [s.to_json(f.key) for f in answers for s in f.comparisons]


__all__ = ["NOT_A_VARIANT", "UNRECORDED", "Arm", "Finding", "Statement", "answer", "compare", "cost_s", "data_budget",
           "dataset_of", "findings_json", "lowlabel_series", "metric_of", "seed_arms", "unfiled"]
