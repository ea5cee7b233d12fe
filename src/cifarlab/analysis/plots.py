"""Figures: data in, matplotlib Figure out (no file or run-directory access here)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cifarlab.analysis import metrics  # noqa: E402


def _legend(ax, **kwargs) -> None:
    """A legend only where something is labelled (matplotlib warns into the user's terminal otherwise: e.g. the
    accuracy panel of a contrastive run, which has no accuracy)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def curves(rows: list[dict[str, Any]], title: str = "") -> Figure:
    """Loss, accuracy and learning rate per epoch, train vs validation."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    ep = [r["epoch"] for r in rows]
    for ax, metric in zip(axes[:2], ("loss", "acc")):
        for split, style in (("train", "-"), ("val", "--")):
            ys = [r.get(f"{split}_{metric}") for r in rows]
            if any(isinstance(y, (int, float)) and np.isfinite(y) for y in ys):
                ax.plot(ep, [y if isinstance(y, (int, float)) else np.nan for y in ys], style, marker=".",
                        label=split)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        _legend(ax)
        ax.grid(alpha=0.3)
    axes[2].plot(ep, [r.get("lr") for r in rows], marker=".")
    axes[2].set_title("learning rate (end of epoch)")
    axes[2].set_xlabel("epoch")
    axes[2].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(cm: np.ndarray, classes: list[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix with counts in each cell (rows = true class)."""
    n = len(classes)
    norm = metrics.normalise_rows(cm)
    fig, ax = plt.subplots(figsize=(0.55 * n + 2.5, 0.55 * n + 2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{norm[i, j]:.2f}\n{cm[i, j]}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def per_class_bars(acc: dict[str, np.ndarray], classes: list[str], title: str = "") -> Figure:
    """Per-class accuracy, one bar group per class and one bar per run."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(classes) * max(1, len(acc)) ** 0.5), 3.2))
    width = 0.8 / max(1, len(acc))
    for i, (name, values) in enumerate(acc.items()):
        ax.bar(np.arange(len(classes)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.grid(axis="y", alpha=0.3)
    if len(acc) > 1:
        _legend(ax, fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, captions: list[str], cols: int = 8, title: str = "") -> Figure:
    """(N, H, W, 3) uint8 images (already de-normalised: stored as raw pixels) with a caption each."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(cap, fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def embedding_scatter(xy: np.ndarray, labels: np.ndarray, classes: list[str], title: str = "") -> Figure:
    """2-D projection coloured by class."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, name in enumerate(classes):
        m = labels == k
        ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(k % cmap.N), label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= 20:
        _legend(ax, fontsize=6, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def accuracy_vs_labels(series: dict[str, list[tuple[int, float, float]]], title: str = "") -> Figure:
    """Low-label curve: {method: [(labels per class, mean acc, std)]} on a log x-axis."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, pts in series.items():
        pts = sorted(pts)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    ax.set_title(title)
    fig.tight_layout()
    return fig
