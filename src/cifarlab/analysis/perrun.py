"""The report's per-run analyses (curves, confusion matrix, mistakes, 2-D embedding), spread over worker processes
with ``cifarlab.workers`` and shown as one progress line."""

from __future__ import annotations

import io
import sys
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.analysis import metrics, plots
from cifarlab.analysis.runs import Run
from cifarlab.engine.rundir import read_json
from cifarlab.workers import imap, usable_cores

EMBEDDINGS = ("tsne", "umap", "none")
FIGURES = ("first-seed", "all")  # which runs' figures are drawn: one run per arm (its lowest seed), or every run
RUNS_PER_WORKER = 4  # fewer runs per worker: starting an interpreter costs more than it saves


@dataclass
class Figure:
    name: str
    png: bytes
    alt: str


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def project_2d(emb: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """t-SNE (scikit-learn) or UMAP (umap-learn; ``report.build`` checks it is installed before any work)."""
    if method == "umap":
        import umap

        return umap.UMAP(random_state=seed).fit_transform(emb)
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(emb) - 1) // 3)))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(emb)


def run_analysis(run: Run, embedding: str = "tsne", max_points: int = 1000, figures_in: str = "") -> dict[str, Any]:
    """Everything the report shows for one run: metrics and figures (as PNG bytes). Never raises: what cannot be
    computed (a run that diverged, failed, or left unreadable files) is listed in ``missing`` with the reason.
    ``figures_in``: the name of the run of the same arm whose figures stand for this one's (its metrics, per-class
    accuracy, confused pairs and silhouette are still computed); "" draws this run's own."""
    out: dict[str, Any] = {"figures": [], "pairs": [], "per_class": None, "silhouette": None, "missing": [],
                           "figures_in": figures_in}
    try:
        _analyse(run, embedding, max_points, out)
    except Exception as exc:  # a broken run directory must not take the whole report down
        out["missing"].append(f"analysis stopped: {type(exc).__name__}: {exc}")
    if run.status != "complete":
        out["missing"].insert(0, f"status {run.status}: no test accuracy is reported for this run")
    return out


def _analyse_path(job: tuple[str, str, str]) -> dict[str, Any]:
    """Worker entry point: the run directory's analysis from its path (a Run does not cross processes)."""
    path, embedding, figures_in = job
    return run_analysis(Run(Path(path), read_json(Path(path) / "summary.json")), embedding, figures_in=figures_in)


def figure_owners(runs: list[Run], figures: str = "first-seed") -> dict[str, str]:
    """Run path -> the name of the run whose figures stand for it ("" = its own). With ``first-seed``, the runs of
    one arm (the same recipe, start and configuration but the seed) share the figures of their lowest seed's run:
    five seeds' confusion matrices and t-SNE plots of one arm look alike, and drawing them was most of a study
    report's time. Failed runs and runs without a seed sibling keep their own."""
    owners = {str(r.path): "" for r in runs}
    if figures == "all":
        return owners
    from cifarlab.analysis.arms import group_by, variant

    complete = [r for r in runs if r.status == "complete"]
    for group in group_by(complete, lambda r: (variant(r), str(r.key("init") or ""))).values():
        first = min(group, key=lambda r: (r.key("seed") if isinstance(r.key("seed"), int) else 0, r.name))
        owners.update({str(r.path): first.name for r in group if r is not first})
    return owners


def analyse_all(runs: list[Run], embedding: str = "tsne", workers: int | None = None, meanwhile=None,
                progress: bool = False, figures: str = "first-seed") -> dict[str, dict[str, Any]]:
    """``run_analysis`` of every run, keyed by run path, in worker processes (matplotlib and t-SNE are
    single-threaded: on 2 cores two workers halve a 24-run report). ``meanwhile`` runs here while the workers work;
    ``progress`` shows one line on stderr with the rate. Runs a worker could not analyse are analysed here.
    ``figures``: ``first-seed`` draws one run's figures per arm (:func:`figure_owners`), ``all`` every run's."""
    from tqdm import tqdm

    owners = figure_owners(runs, figures)

    workers = min(usable_cores() if workers is None else workers, 8, len(runs) // RUNS_PER_WORKER)
    out: dict[str, dict[str, Any]] = {}
    ran = False

    def overlap() -> None:
        nonlocal ran
        ran = True
        if meanwhile is not None:
            meanwhile()

    with tqdm(total=len(runs), desc="report: per-run analyses", unit="run", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        try:
            jobs = [(str(r.path), embedding, owners[str(r.path)]) for r in runs]
            for r, result in zip(runs, imap(_analyse_path, jobs, workers, meanwhile=overlap)):
                out[str(r.path)] = result
                bar.update()
        except (BrokenProcessPool, OSError):  # a worker died (e.g. killed for memory): finish here
            pass
        if not ran:
            overlap()
        for r in runs:
            if str(r.path) not in out:
                out[str(r.path)] = run_analysis(r, embedding, figures_in=owners[str(r.path)])
                bar.update()
    return out


def curves_figure(rows: list[dict[str, Any]]):
    """The training curves of one run (its metrics.csv rows)."""
    return plots.curves(rows)


def confusion_figure(cm: np.ndarray, classes: list[str]):
    return plots.confusion_matrix(cm, classes, "confusion (rows = true)")


def mistakes_figure(pred: dict[str, np.ndarray], classes: list[str]):
    """The most confident mistakes kept in predictions.npz, captioned true → predicted and the confidence."""
    caps = [f"{classes[pred['labels'][i]]} → {classes[pred['preds'][i]]}\n{100 * c:.0f}%"
            for i, c in zip(pred["mis_idx"], pred["mis_conf"])]
    return plots.image_grid(pred["mis_images"], caps, title="most confident mistakes (true → predicted, confidence)")


def embedding_points(pred: dict[str, np.ndarray], max_points: int = 1000) -> tuple[np.ndarray, np.ndarray, str]:
    """(embeddings as float32, their labels, "" or why they cannot be drawn) of the saved test subset."""
    emb = pred.get("embeddings")
    if emb is None or len(emb) < 10:
        return np.zeros((0, 0), np.float32), np.zeros(0, int), "fewer than 10 test embeddings saved (embed_samples)"
    labels = pred["labels"][pred["embed_idx"]]
    emb, labels = emb[:max_points].astype(np.float32), labels[:max_points]
    finite = np.isfinite(emb).all(1)
    if not finite.all():
        return emb, labels, f"{int((~finite).sum())} of {len(emb)} embeddings are not finite"
    if emb.std(0).max() <= 1e-6 * max(1.0, float(np.abs(emb).max())):
        # t-SNE's PCA start divides by the spread: a collapsed encoder crashed scikit-learn's Barnes-Hut code
        return emb, labels, f"all {len(emb)} embeddings are the same vector (a collapsed encoder): nothing to project"
    return emb, labels, ""


def embedding_figure(xy: np.ndarray, labels: np.ndarray, classes: list[str], method: str,
                     silhouette: float | None):
    sil = f" (silhouette {silhouette:.3f})" if silhouette is not None else ""
    return plots.embedding_scatter(xy, labels, classes, f"{method.upper()} of test embeddings{sil}")


def _analyse(run: Run, embedding: str, max_points: int, out: dict[str, Any]) -> None:
    draw = not out["figures_in"]
    if run.metrics:
        if draw:
            out["figures"].append(Figure("curves", png(curves_figure(run.metrics)), "training curves"))
    else:
        out["missing"].append("training curves: no metrics.csv")
    pred = run.predictions if run.status == "complete" else None
    classes = run.classes
    if pred is None or not classes:
        if run.status == "complete":
            out["missing"].append("confusion matrix, mistakes, embeddings: no predictions.npz")
        return
    if "preds" in pred:
        cm = metrics.confusion(pred["labels"], pred["preds"], len(classes))
        out["cm"] = cm
        out["per_class"] = metrics.per_class_accuracy(cm)
        out["pairs"] = metrics.top_confused_pairs(cm, classes, 5)
        if draw:
            out["figures"].append(Figure("confusion", png(confusion_figure(cm, classes)), "confusion matrix"))
        if draw and len(pred.get("mis_images", [])):
            out["figures"].append(Figure("misclassified", png(mistakes_figure(pred, classes)),
                                         "misclassified test images"))
    if "embeddings" not in pred or len(pred["embeddings"]) < 10 or embedding == "none":
        return
    emb, labels, why = embedding_points(pred, max_points)
    if why:
        out["missing"].append(f"embedding plot: {why}")
        return
    out["silhouette"] = metrics.embedding_silhouette(emb, labels)
    if not draw:
        return
    xy = project_2d(emb, embedding)
    out["figures"].append(Figure("embedding", png(embedding_figure(xy, labels, classes, embedding, out["silhouette"])),
                                 f"{embedding} of embeddings"))
