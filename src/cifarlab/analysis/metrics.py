"""Metrics from predictions: confusion matrices, per-class accuracy, confused pairs, separation of embeddings."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion
from sklearn.metrics import silhouette_score


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return _sk_confusion(labels, preds, labels=np.arange(num_classes))


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    return cm / np.maximum(cm.sum(1, keepdims=True), 1)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    return np.diag(cm) / np.maximum(cm.sum(1), 1)


def top_confused_pairs(cm: np.ndarray, classes: list[str], k: int = 5) -> list[dict[str, Any]]:
    """The k unordered class pairs with the most mistakes between them (both directions counted)."""
    n = len(cm)
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            total = int(cm[i, j] + cm[j, i])
            if total:
                pairs.append({"a": classes[i], "b": classes[j], "count": total, "a_as_b": int(cm[i, j]),
                              "b_as_a": int(cm[j, i]), "rate": total / max(int(cm[i].sum() + cm[j].sum()), 1)})
    return sorted(pairs, key=lambda p: (-p["count"], p["a"], p["b"]))[:k]


def embedding_silhouette(embeddings: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette score of the classes in embedding space (cosine distance); in [-1, 1], higher = better
    separated. None when fewer than two classes are present."""
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return None
    return float(silhouette_score(embeddings.astype(np.float32), labels, metric="cosine"))


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None]
    if not vals:
        return float("nan"), float("nan"), 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)

