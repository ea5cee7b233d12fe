"""Figures: data in, matplotlib Figure out (no file or run-directory access here)."""

from __future__ import annotations

from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.ticker

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


def image_grid(images: np.ndarray, captions: list[str], cols: int = 8, title: str = "") -> Figure:
    """(N, H, W, 3) uint8 images (already de-normalised: stored as raw pixels) with a caption each, drawn as one
    montage in one axes (one axes per image made this the slowest figure of a report)."""
    n = len(images)
    rows = max(1, -(-n // cols))
    h, w = images.shape[1:3] if n else (32, 32)
    pad_x, pad_y = max(2, w // 8), max(2, h // 2)  # room under each image for its two-line caption
    sheet = np.full((rows * (h + pad_y), cols * (w + pad_x), 3), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        sheet[r * (h + pad_y):r * (h + pad_y) + h, c * (w + pad_x):c * (w + pad_x) + w] = img[..., :3]
    fig, ax = plt.subplots(figsize=(1.5 * cols, 1.75 * rows + 0.4))
    ax.imshow(sheet, interpolation="nearest")
    for k, cap in enumerate(captions[:n]):
        r, c = divmod(k, cols)
        ax.text(c * (w + pad_x) + w / 2, r * (h + pad_y) + h + 1, cap, ha="center", va="top", fontsize=6)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93)
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


def per_class_heatmap(acc: dict[str, np.ndarray], classes: list[str], title: str = "") -> Figure:
    """Per-class accuracy (fractions in ``acc``) as a heatmap in percent: one row per label (an arm, or a run), one
    column per class, the value in each cell, the colour bar in the same percent."""
    names = list(acc)
    grid = 100 * np.array([acc[n] for n in names], dtype=float)  # percent, as the cells and the colour bar read
    fig, ax = plt.subplots(figsize=(max(6, 0.62 * len(classes) + 3), 0.32 * len(names) + 1.6))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if grid.size <= 600:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="black" if grid[i, j] > 60 else "white")
    fig.colorbar(im, ax=ax, fraction=0.03, label="accuracy, %")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def arm_bars(groups: dict[str, dict[str, tuple[float, float]]], title: str = "", xlabel: str = "test accuracy"
             ) -> Figure:
    """Horizontal bars with seed error bars: {arm label: {metric label: (mean, std)}}, one bar per metric."""
    labels = list(groups)
    series = list(dict.fromkeys(m for g in groups.values() for m in g))
    height = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(labels) * max(1, len(series)) ** 0.5 + 1.3))
    for k, metric in enumerate(series):
        ys = np.arange(len(labels)) + k * height
        vals = [groups[lab].get(metric, (np.nan, 0.0)) for lab in labels]
        ax.barh(ys, [v[0] for v in vals], height, xerr=[v[1] for v in vals], capsize=3,
                label=metric if len(series) > 1 else None)
        for y, (m, sd) in zip(ys, vals):
            if np.isfinite(m):
                ax.text(m + (sd if np.isfinite(sd) else 0), y, f"  {100 * m:.1f}%", va="center", fontsize=7)
    ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    _legend(ax, fontsize=7, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def validation_curves(histories: dict[str, list[dict[str, Any]]], title: str = "") -> Figure:
    """Validation (solid) and training (dotted) accuracy per epoch, one colour per run."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for k, (name, rows) in enumerate(histories.items()):
        color = f"C{k % 10}"
        ep = [r["epoch"] for r in rows]
        for split, style in (("val", "-"), ("train", ":")):
            ys = [r.get(f"{split}_acc") for r in rows]
            if any(isinstance(y, (int, float)) and np.isfinite(y) for y in ys):
                ax.plot(ep, [y if isinstance(y, (int, float)) else np.nan for y in ys], style, color=color,
                        marker="." if split == "val" else None, label=f"{name} ({split})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def accuracy_vs_time(arms: dict[str, list[tuple[float, float]]], title: str = "",
                     ylabel: str = "test accuracy") -> Figure:
    """Each arm as its mean ± sd (error bars in time and accuracy) over its seeds, drawn as small points:
    {arm label: [(seconds, accuracy) per run]}, log-scale time. Arms are numbered at their mean and named in the
    legend beside the axes: labelling every run made 50 runs unreadable. ``ylabel`` names the one task the
    points share."""
    fig, ax = plt.subplots(figsize=(10, 4.6), layout="constrained")  # constrained: keeps the outside legend in
    cmap = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20")
    for k, (label, pts) in enumerate(arms.items()):
        color = cmap(k % cmap.N)
        t, a = np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)
        ax.scatter(t, a, s=9, color=color, alpha=0.45, linewidths=0)
        # the mean of log-time: the axis is logarithmic, so the marker sits among its seeds
        tm, am = float(np.exp(np.log(t).mean())), float(a.mean())
        sd_a = float(a.std(ddof=1)) if len(a) > 1 else 0.0
        lo, hi = max(0.0, tm - float(t.min())), max(0.0, float(t.max()) - tm)  # >= 0 despite rounding
        ax.errorbar([tm], [am], xerr=[[lo], [hi]], yerr=[sd_a], fmt="o", ms=6, color=color, capsize=3, lw=1,
                    mec="black", mew=0.5, label=f"{k + 1}  {label}")
        ax.annotate(str(k + 1), (tm, am), fontsize=7, xytext=(4, 3), textcoords="offset points", weight="bold")
    ax.set_xscale("log")
    # ticks at 1-2-5 steps labelled as plain numbers (the default "2x10^0 3x10^0 ..." minor labels overlap)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training time, s (log; embedding and head probe included)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
            title="arm: mean ± sd over seeds (bars: time range)", title_fontsize=7)
    ax.set_title(title)
    return fig


def confusion_grid(mats: dict[str, np.ndarray], classes: list[str], title: str = "",
                   reference: np.ndarray | None = None, cols: int = 4) -> Figure:
    """Row-normalised confusion matrices side by side, one panel per label (rows = true class). With ``reference``
    (a row-normalised matrix), each panel is its matrix minus the reference on a diverging map centred at 0."""
    n, k = len(classes), len(mats)
    cols = max(1, min(cols, k))
    rows = max(1, -(-k // cols))
    side = max(2.4, 0.28 * n + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 1.2, side * rows + 0.5), squeeze=False,
                             layout="constrained")
    grids = {lab: m - reference if reference is not None else m for lab, m in mats.items()}
    if reference is not None:
        lim = max(0.05, max((float(np.abs(g).max()) for g in grids.values()), default=0.05))
        style = {"cmap": "RdBu_r", "norm": matplotlib.colors.TwoSlopeNorm(0.0, -lim, lim)}
    else:
        lim, style = 1.0, {"cmap": "Blues", "vmin": 0, "vmax": 1}
    im = None
    for ax, (label, grid) in zip(axes.flat, grids.items()):
        im = ax.imshow(grid, **style)
        ax.set_title(label, fontsize=7)
        ax.set_xticks(range(n), classes if ax in axes[-1] or n <= 12 else [], rotation=60, ha="right", fontsize=6)
        ax.set_yticks(range(n), classes, fontsize=6)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    v = grid[i, j]
                    if abs(v) >= 0.005:
                        ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=5,
                                color="white" if abs(v) > 0.55 * lim else "black")
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02,
                     label="difference, points of the true class" if reference is not None else "share of true class")
    fig.suptitle(title, fontsize=9)
    return fig
