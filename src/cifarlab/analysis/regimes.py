"""The report's per-arm views: runs that differ only by seed pooled into one arm (the mean over its seeds) for the
per-class heatmap, the regimes' confusion matrices side by side with their difference against a reference arm, and
the accuracy-against-time scatter. Figures are drawn by ``plots``; this module only pools run analyses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cifarlab.analysis import findings, metrics, origin
from cifarlab.analysis.arms import Arm, group_by, seed_arms
from cifarlab.analysis.runs import Run

KIND_WORDS = {"imagenet": "ImageNet", "file": "given weights", "none": "random init", "rotation": "from rotation"}


def group_label(run: Run, origins: origin.Origins) -> str:
    """The recipe, and for transfer recipes what the run started from: 'linear (ImageNet)', 'scratch'."""
    recipe = str(run.summary.get("recipe"))
    if recipe in findings.TRANSFER:
        kind = origins.kind(run)
        return f"{recipe} ({KIND_WORDS.get(kind, 'from a run' if kind.startswith('init:') else kind)})"
    return recipe


def regime_arms(runs: list[Run], origins: origin.Origins) -> list[Arm]:
    """The complete runs as arms: the same model, recipe and start, and the same configuration but the seed (keys
    that differ between configurations are named in the label, as in the questions' tables)."""
    complete = [r for r in runs if r.status == "complete"]
    mixed = findings.mixed_datasets(complete)

    def key(r: Run) -> tuple[str, str]:
        where = f", {findings.dataset_of(r)}" if mixed else ""
        return f"{r.summary.get('model')} {group_label(r, origins)}{where}", str(r.key("init") or "")

    return [arm for (label, _), group in group_by(complete, key).items() for arm in seed_arms(label, group)]


@dataclass
class ArmView:
    """One arm's pooled predictions: mean per-class accuracy and mean row-normalised confusion over its seeds."""

    arm: Arm
    runs: list[str]  # the runs that had test predictions, linked from the report
    per_class: np.ndarray  # (C,) mean over seeds
    confusion: np.ndarray  # (C, C) mean over seeds of each seed's row-normalised matrix, rows = true class
    counts: np.ndarray  # (C, C) summed over seeds: the confused pairs in images

    @property
    def label(self) -> str:
        return f"{self.arm.label} ({len(self.runs)} seed{'s' if len(self.runs) > 1 else ''})"


def arm_views(arms: list[Arm], analyses: dict[str, Any], classes: list[str]) -> list[ArmView]:
    """The arms whose runs have test predictions over ``classes``; seeds without predictions are left out."""
    views = []
    for arm in arms:
        done = [(r, analyses[str(r.path)]) for r in arm.runs
                if analyses.get(str(r.path), {}).get("cm") is not None and r.classes == classes]
        if not done:
            continue
        cms = [a["cm"] for _, a in done]
        views.append(ArmView(arm, [r.name for r, _ in done], np.mean([a["per_class"] for _, a in done], axis=0),
                             np.mean([metrics.normalise_rows(cm) for cm in cms], axis=0), np.sum(cms, axis=0)))
    return views


def reference(views: list[ArmView], origins: origin.Origins) -> tuple[ArmView, str] | None:
    """The arm the others are compared against, and why it was chosen: from scratch (what transfer and contrastive
    pretraining must beat), else a random-init control, else the first arm. Among several, the most seeds."""
    if len(views) < 2:
        return None

    def random_init(v: ArmView) -> bool:
        r = v.arm.runs[0]
        transfer = r.summary.get("recipe") in findings.TRANSFER and origins.kind(r) == "none"
        return transfer or (r.summary.get("recipe") in findings.CONTRASTIVE and r.key("epochs") == 0)

    for test, why in ((lambda v: v.arm.runs[0].summary.get("recipe") == "scratch",
                       "the from-scratch arm, what transfer and contrastive pretraining must beat"),
                      (random_init, "the random-init control (no from-scratch arm among these runs)")):
        found = [v for v in views if test(v)]
        if found:
            return max(found, key=lambda v: len(v.runs)), why
    return views[0], "the first arm (no from-scratch or random-init arm among these runs)"


def fixes_sentence(view: ArmView, ref: ArmView, classes: list[str], k: int = 3) -> str:
    """Which confusions the arm makes less (and the one it makes more) than the reference, in points of the true
    class's test images, e.g. 'cnn_small supcon (4 seeds) against cnn_small scratch (2 seeds): fewer cat → dog
    (−12.0 points), ...; most added: bird → plane (+3.0).'"""
    diff = view.confusion - ref.confusion
    off = [(diff[i, j], i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j]
    fewer = [(d, i, j) for d, i, j in sorted(off) if d <= -0.01][:k]
    more = [(d, i, j) for d, i, j in sorted(off, reverse=True) if d >= 0.01][:1]
    pair = lambda d, i, j: f"{classes[i]} → {classes[j]} ({100 * d:+.1f} points)"
    text = f"{view.label} against {ref.label}: "
    text += ("fewer " + ", ".join(pair(*x) for x in fewer)) if fewer else "no confusion fixed by 1 point or more"
    text += f"; most added: {pair(*more[0])}" if more else "; none added by 1 point or more"
    return text + "."
