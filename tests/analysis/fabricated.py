"""Fabricated study run directories (summary.json, config.json, metrics.csv, predictions.npz) with known
confusions, written without training: the per-arm views, the scatter at 50 runs and the PDF report read them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_CLASS = 20  # test images per class
CAT, DOG = CLASSES.index("cat"), CLASSES.index("dog")

# name: (recipe, model, started_from, extra config, accuracy, share of cats called dogs)
ARMS = {
    "scratch": ("scratch", "cnn_small", "none", {}, 0.45, 0.50),
    "linear": ("linear", "efficientnet_lite0", "imagenet:torchvision IMAGENET1K_V1", {}, 0.80, 0.20),
    "partial": ("partial", "efficientnet_lite0", "imagenet:torchvision IMAGENET1K_V1", {}, 0.82, 0.15),
    "finetune": ("finetune", "efficientnet_lite0", "imagenet:torchvision IMAGENET1K_V1", {}, 0.86, 0.10),
    "supcon": ("supcon", "cnn_small", "none", {"epochs": 3}, 0.55, 0.05),
    "supcon-control": ("supcon", "cnn_small", "none", {"epochs": 0}, 0.30, 0.40),
    "supcon_ce": ("supcon_ce", "cnn_small", "none", {"epochs": 3}, 0.52, 0.30),
    "partial-randinit": ("partial", "cnn_small", "none", {"init": "random"}, 0.35, 0.45),
    "finetune-randinit": ("finetune", "cnn_small", "none", {"init": "random"}, 0.40, 0.45),
    "scratch-long": ("scratch", "cnn_small", "none", {"epochs": 20}, 0.60, 0.35),
}


def predictions(acc: float, cat_as_dog: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions: ``cat_as_dog`` of the cats predicted as dogs, other classes right with probability
    ``acc`` and otherwise wrong uniformly."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    preds = labels.copy()
    for i, y in enumerate(labels):
        if y == CAT:
            preds[i] = DOG if rng.random() < cat_as_dog else CAT
        elif rng.random() > acc:
            preds[i] = (y + rng.integers(1, len(CLASSES))) % len(CLASSES)
    return labels, preds


def write_run(root: Path, name: str, arm: str, seed: int, files: bool = True) -> Path:
    """A finished run of ``arm``; ``files=False`` writes only its summary and config (a quick run to report)."""
    recipe, model, start, extra, acc, cat_as_dog = ARMS[arm]
    d = root / name
    d.mkdir(parents=True)
    labels, preds = predictions(acc, cat_as_dog, 1000 * list(ARMS).index(arm) + seed)
    test_acc = float((labels == preds).mean())
    time_s = {"cnn_small": 20.0, "efficientnet_lite0": 90.0}[model] * (1 + 0.1 * seed) * (1 + extra.get("epochs", 3))
    summary = {"status": "complete", "recipe": recipe, "model": model, "dataset": "synthetic", "classes": CLASSES,
               "started_from": start, "train_time_s": time_s, "epochs": extra.get("epochs", 3),
               ("linear_acc" if recipe in ("supcon", "supcon_ce") else "test_acc"): test_acc}
    if recipe in ("supcon", "supcon_ce"):
        summary["test_acc"] = test_acc
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.json").write_text(json.dumps({"config": {"recipe": recipe, "model": model, "seed": seed,
                                                          "epochs": 3, **extra}}))
    if not files:
        return d
    (d / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr\n"
                                   + "".join(f"{e},{2 - e / 3:.3f},{acc * e / 3:.3f},{2.1 - e / 3:.3f},"
                                             f"{acc * e / 3.2:.3f},0.1\n" for e in (1, 2, 3)))
    np.savez(d / "predictions.npz", labels=labels, preds=preds)
    return d


def fabricate_study(root: Path, seeds: int = 5, arms: tuple[str, ...] = tuple(ARMS), files: bool = True) -> Path:
    """``seeds`` runs of each arm under ``root`` (10 arms x 5 seeds = 50 runs by default), and a study.json."""
    root.mkdir(parents=True, exist_ok=True)
    for arm in arms:
        for s in range(seeds):
            write_run(root, f"{arm}-s{s}", arm, s, files)
    (root / "study.json").write_text(json.dumps({"name": "fabricated", "note": "Fabricated runs for the report's "
                                                                              "tests: accuracies are made up."}))
    return root
