"""The curriculum's questions, answered from run summaries: which runs each question compares, the measured
differences with their spread over seeds, and the sentences that state them.

Runs that differ only by seed form one *arm* (mean and standard deviation over seeds). A difference between two
arms is stated with its standard error, sqrt(sd_a^2/n_a + sd_b^2/n_b), when both arms have two seeds or more; with
one seed the sentence says that no spread was measured. A difference smaller than twice its standard error is
called "within the seed spread"."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarlab.analysis import metrics
from cifarlab.analysis.runs import Run

TRANSFER = ("linear", "partial", "finetune")
REGIME_WORDS = {"linear": "the linear probe", "partial": "the last block", "finetune": "full fine-tuning"}
CONTRASTIVE = ("supcon", "simclr", "supcon_ce")


def cost_s(summary: dict[str, Any]) -> float | None:
    """Seconds a run spent producing its result: training, plus the frozen-backbone embedding and the LP-FT head
    probe where the run had them (so that a cached linear probe is not shown as free)."""
    parts = [summary.get(k) for k in ("train_time_s", "embed_time_s", "head_init_s")]
    parts = [p for p in parts if isinstance(p, (int, float)) and math.isfinite(p)]
    return sum(parts) if parts else None


@dataclass
class Arm:
    """One configuration, averaged over the seeds it was run with."""

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
    def trainable(self) -> int | None:
        return self.runs[0].summary.get("params_trainable")


def metric_of(run: Run, metric: str) -> float | None:
    if metric == "accuracy":
        return run.accuracy
    v = run.summary.get(metric) if run.status == "complete" else None
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


@dataclass
class Finding:
    """One question of the curriculum: its arms (the table), sentences and the name of its chart."""

    key: str
    title: str
    question: str
    arms: list[Arm] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    numbers: list[dict[str, Any] | None] = field(default_factory=list)  # what each sentence states (or None)

    def add(self, sentence: str, numbers: dict[str, Any] | None = None) -> None:
        self.sentences.append(sentence)
        self.numbers.append(numbers)


def compare(a: Arm, b: Arm, what_a: str, what_b: str, metric: str | None = None, unit: str = "") -> tuple[str, dict]:
    """'what_a beats what_b by 4.10 ± 0.80 points (82.30% vs 78.20%, 3 seeds each) at 3.2x the training time.'"""
    (ma, sa, na), (mb, sb, nb) = a.stat(metric), b.stat(metric)
    diff = 100 * (ma - mb)
    verb = "beats" if diff > 0 else ("trails" if diff < 0 else "equals")
    if na > 1 and nb > 1:
        se = 100 * math.sqrt(sa ** 2 / na + sb ** 2 / nb)
        spread = f" ± {se:.2f}"
        seeds = f"{na} seeds each" if na == nb else f"{na} and {nb} seeds"
    else:
        se, spread, seeds = None, "", "one seed, so no spread was measured"
    text = (f"{what_a} {verb} {what_b}" + (f" by {abs(diff):.2f}{spread} points" if diff else "")
            + f"{unit} ({100 * ma:.2f}% vs {100 * mb:.2f}%, {seeds})")
    ca, cb = a.cost, b.cost
    if ca and cb:
        text += f" at {ca / cb:.1f}x the training time"
    if se is not None and abs(diff) < 2 * se:
        text += "; the difference is within the seed spread"
    text += "."
    return text[0].upper() + text[1:], {"a": a.label, "b": b.label, "metric": metric or a.metric, "a_mean": ma,
                                        "b_mean": mb, "diff_points": diff, "se_points": se}


def _arms(runs: list[Run], key) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        groups[key(r)].append(r)
    return dict(groups)


# config keys that do not change what a run measures: runs equal in everything else are seeds of one arm
NOT_A_VARIANT = {"seed", "name", "out", "init", "resume", "overwrite", "progress", "data_root", "num_threads",
                 "embed_samples", "eval_batch_size", "series"}


def _variant(run: Run) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in run.config.get("config", {}).items()
                        if k not in NOT_A_VARIANT))


def seed_arms(label: str, runs: list[Run], metric: str = "accuracy") -> list[Arm]:
    """One arm per configuration: runs that differ only by seed are averaged; runs that differ in anything else
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


def init_kind(run: Run, by_name: dict[str, Run]) -> str:
    """pretrained | random | <recipe of the run it starts from> | scratch."""
    init = run.key("init") or ""
    if init == "random":
        return "random"
    if init:
        source = by_name.get(Path(init).name)
        return str(source.summary.get("recipe")) if source else "a run"
    weights = run.key("weights")
    return "random" if weights == "none" else ("pretrained" if weights else "scratch")


def scratch(runs: list[Run]) -> Finding | None:
    found = [r for r in runs if r.summary.get("recipe") == "scratch" and not r.summary.get("study_series")]
    if not found:
        return None
    f = Finding("scratch", "From scratch", "How far does a network trained from random weights get, and how fast?")
    for (model, data), group in _arms(found, lambda r: (r.summary.get("model"), data_budget(r))).items():
        arm = _single(f, f"{model}, {data}", group)
        if arm is None or arm.stat()[2] == 0:
            continue
        m, sd, n = arm.stat()
        chance = 1 / max(len(group[0].classes), 1)
        spread = f" ± {100 * sd:.2f}" if n > 1 else ""
        epochs = group[0].summary.get("epochs")
        cost = f" in {arm.cost:.0f} s of training" if arm.cost else ""
        f.add(f"{model} from scratch on {data} reaches {100 * m:.2f}%{spread} test accuracy "
                           f"({n} seed{'s' if n > 1 else ''}, {epochs} epochs{cost}), {100 * (m - chance):.2f} "
                           f"points above chance ({100 * chance:.0f}%).",
              {"a": arm.label, "metric": "accuracy", "a_mean": m, "chance": chance})
    return f


def transfer(runs: list[Run], by_name: dict[str, Run]) -> Finding | None:
    found = [r for r in runs if r.summary.get("recipe") in TRANSFER and init_kind(r, by_name) == "pretrained"]
    if not found:
        return None
    f = Finding("transfer", "Transfer from ImageNet", "For each pretrained backbone: the linear probe, the last block "
                "or full fine-tuning: how much accuracy does each buy, for how many trainable parameters and seconds?")
    for (model, data), group in _arms(found, lambda r: (r.summary.get("model"), data_budget(r))).items():
        regimes = _arms(group, lambda r: r.summary.get("recipe"))
        arms = {k: _single(f, f"{model}, {REGIME_WORDS[k]}, {data}", regimes[k]) for k in TRANSFER if k in regimes}
        arms = {k: a for k, a in arms.items() if a is not None}
        base = arms.get("linear")
        for k in ("partial", "finetune"):
            if base and k in arms and arms[k].values() and base.values():
                text, nums = compare(arms[k], base, f"on {model} ({data}), {REGIME_WORDS[k]}", REGIME_WORDS["linear"])
                f.add(text, nums)
        means = [(k, arms[k].stat()[0]) for k in TRANSFER if k in arms and arms[k].values()]
        if len(means) > 1 and [m for _, m in means] != sorted(m for _, m in means):
            order = " < ".join(REGIME_WORDS[k] for k, _ in sorted(means, key=lambda t: t[1]))
            epochs = {k: arms[k].runs[0].summary.get("epochs") for k, _ in means}
            f.add(
                f"On {model} the order here ({order}) differs from the full-scale one (linear probe < last block < "
                f"full fine-tuning). Training more of the network needs more labelled images and epochs than this "
                f"budget gives ({data}; epochs {', '.join(f'{REGIME_WORDS[k]} {e}' for k, e in epochs.items())}): "
                f"it is a budget effect, not a finding about the regimes.")
    return f


def contrastive(runs: list[Run]) -> Finding | None:
    found = [r for r in runs if r.summary.get("recipe") in CONTRASTIVE]
    if not found:
        return None
    f = Finding("supcon", "Contrastive pretraining", "Does SupCon (or SimCLR) pretraining give a better encoder than "
                "cross-entropy at the same budget, and than a random-init encoder? (linear probe and kNN)")

    def label(r: Run) -> str:
        return "control" if r.summary.get("control") else str(r.summary.get("recipe"))

    words = {"supcon": "SupCon", "simclr": "SimCLR", "supcon_ce": "the cross-entropy baseline",
             "control": "the random-init encoder"}
    for (model, data), group in _arms(found, lambda r: (r.summary.get("model"), data_budget(r))).items():
        kinds = _arms(group, label)
        arms = {k: _single(f, f"{model}, {words[k]}, {data}", kinds[k], "linear_acc") for k in words if k in kinds}
        arms = {k: a for k, a in arms.items() if a is not None}
        for a, b in (("supcon", "control"), ("simclr", "control"), ("supcon", "supcon_ce"), ("simclr", "supcon_ce")):
            if a in arms and b in arms and arms[a].values() and arms[b].values():
                for metric, what in (("linear_acc", "in linear-probe accuracy"), ("knn_acc", "in kNN accuracy")):
                    if arms[a].values(metric) and arms[b].values(metric):
                        text, nums = compare(arms[a], arms[b], f"on {model}, {words[a]}", words[b], metric,
                                             unit=f" {what}")
                        f.add(text, nums)
    return f


def rotation(runs: list[Run], by_name: dict[str, Run]) -> Finding | None:
    pretext = [r for r in runs if r.summary.get("recipe") == "rotation"]
    tuned = [r for r in runs if r.summary.get("recipe") in ("partial", "finetune") and not r.summary.get(
        "study_series") and init_kind(r, by_name) in ("rotation", "random")]
    series = lowlabel_series(runs)
    if not pretext and not tuned and not series:
        return None
    f = Finding("rotation", "Rotation pretraining", "Does label-free rotation prediction give a better starting point "
                "than random weights, for the last block and for full fine-tuning, and at how many labels?")
    for model, group in _arms(pretext, lambda r: r.summary.get("model")).items():
        arm = _single(f, f"{model}, rotation pretext", group)
        m, sd, n = arm.stat() if arm is not None else (0.0, 0.0, 0)
        if n:
            f.add(f"The rotation pretext task on {model} reaches {100 * m:.2f}%"
                               f"{f' ± {100 * sd:.2f}' if n > 1 else ''} rotation accuracy on the test images "
                  f"(chance 25%).", {"a": arm.label, "metric": "accuracy", "a_mean": m, "chance": 0.25})
    key = (lambda r: (r.summary.get("model"), r.summary.get("recipe"), data_budget(r)))
    for (model, recipe, data), group in _arms(tuned, key).items():
        kinds = _arms(group, lambda r: init_kind(r, by_name))
        arms = {k: _single(f, f"{model}, {REGIME_WORDS[recipe]}, {k} init, {data}", kinds[k])
                for k in ("rotation", "random") if k in kinds}
        arms = {k: a for k, a in arms.items() if a is not None}
        if len(arms) == 2 and arms["rotation"].values() and arms["random"].values():
            text, nums = compare(arms["rotation"], arms["random"], f"with {REGIME_WORDS[recipe]} trained on {data} "
                                 f"({model}), rotation pretraining", "random init")
            f.add(text, nums)
    for sentence in lowlabel_sentences(series):
        f.add(sentence)
    return f


def lowlabel_series(runs: list[Run]) -> dict[str, list[tuple[int, float, float]]]:
    """Accuracy vs labelled images per class, per method (runs tagged with a ``series`` by a study)."""
    by: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        method = r.summary.get("study_series")
        if method and r.accuracy is not None and r.key("per_class"):
            by.setdefault((method, int(r.key("per_class"))), []).append(r.accuracy)
    series: dict[str, list[tuple[int, float, float]]] = {}
    for (method, n), accs in sorted(by.items()):
        m, sd, _ = metrics.mean_std(accs)
        series.setdefault(method, []).append((n, m, sd))
    return series


def lowlabel_sentences(series: dict[str, list[tuple[int, float, float]]]) -> list[str]:
    """Per labels-per-class point shared by the first two series: which is ahead and by how much."""
    names = list(series)
    if len(names) < 2:
        return []
    a, b = (dict((n, (m, sd)) for n, m, sd in series[k]) for k in names[:2])
    parts = [f"{n}/class: {100 * (a[n][0] - b[n][0]):+.2f} points" for n in sorted(set(a) & set(b))]
    return [f"Low-label curve, {names[0]} minus {names[1]}: " + "; ".join(parts) + "."] if parts else []


def answer(runs: list[Run]) -> list[Finding]:
    """Every question the runs can answer, in the curriculum's order (a question without runs is left out)."""
    by_name = {r.name: r for r in runs}
    found = [scratch(runs), transfer(runs, by_name), contrastive(runs), rotation(runs, by_name)]
    return [f for f in found if f is not None and (f.arms or f.sentences)]
