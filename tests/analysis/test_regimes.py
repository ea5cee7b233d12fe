"""Per-arm views: seeds pooled into arms, means over seeds, the reference arm and what a regime fixes against it."""

import numpy as np
import pytest

from cifarlab.analysis import metrics, regimes
from cifarlab.analysis.origin import Origins
from cifarlab.analysis.runs import find_runs

from tests.analysis.fabricated import CAT, CLASSES, DOG, fabricate_study


def _views(root):
    runs = find_runs(root)
    analyses = {}
    for r in runs:
        cm = metrics.confusion(r.predictions["labels"], r.predictions["preds"], len(CLASSES))
        analyses[str(r.path)] = {"cm": cm, "per_class": metrics.per_class_accuracy(cm)}
    origins = Origins(runs)
    return regimes.arm_views(regimes.regime_arms(runs, origins), analyses, CLASSES), origins


def test_seeds_pool_into_arms_with_means_over_seeds(tmp_path):
    root = fabricate_study(tmp_path / "runs", seeds=3, arms=("scratch", "supcon", "supcon-control", "linear"))
    views, _ = _views(root)
    assert sorted(v.runs for v in views) == sorted([f"{a}-s{s}" for s in range(3)] for a in
                                                    ("linear", "scratch", "supcon", "supcon-control"))
    supcon = next(v for v in views if v.runs[0] == "supcon-s0")
    assert "epochs=3" in supcon.label and "(3 seeds)" in supcon.label  # the control differs by its epochs
    pred = [np.load(root / n / "predictions.npz") for n in supcon.runs]
    cats = [(p["preds"][p["labels"] == CAT] == CAT).mean() for p in pred]
    assert supcon.per_class[CAT] == pytest.approx(np.mean(cats))
    cat_as_dog = [(p["preds"][p["labels"] == CAT] == DOG).mean() for p in pred]
    assert supcon.confusion[CAT, DOG] == pytest.approx(np.mean(cat_as_dog))
    assert np.allclose(supcon.confusion.sum(1), 1)


@pytest.mark.parametrize(("arms", "expected", "why"), [
    (("supcon", "scratch", "linear"), "scratch-s0", "from-scratch"),
    (("supcon", "supcon-control", "linear"), "supcon-control-s0", "random-init control"),
    (("linear", "partial"), "linear-s0", "first arm")])
def test_the_reference_is_scratch_else_the_random_init_control_else_the_first(tmp_path, arms, expected, why):
    views, origins = _views(fabricate_study(tmp_path / "runs", seeds=2, arms=arms))
    ref, text = regimes.reference(views, origins)
    assert ref.runs[0] == expected and why in text


def test_the_sentence_names_the_confusion_supcon_fixes_against_scratch(tmp_path):
    views, origins = _views(fabricate_study(tmp_path / "runs", seeds=3, arms=("scratch", "supcon")))
    ref, _ = regimes.reference(views, origins)
    supcon = next(v for v in views if v is not ref)
    diff = 100 * (supcon.confusion[CAT, DOG] - ref.confusion[CAT, DOG])
    assert diff < -30  # fabricated: half the cats called dogs from scratch, 5% with SupCon
    text = regimes.fixes_sentence(supcon, ref, CLASSES)
    assert text.startswith(f"{supcon.label} against {ref.label}: fewer cat → dog ({diff:+.1f} points)")
