"""Results in Python: one run directory (:class:`RunResults`) or a study's folder (:class:`StudyResults`) as objects
whose views are the report's own figures (``analysis.plots`` through ``analysis.perrun``) and whose arrays are the
numbers behind them. They read run directories only, like the report, so any run can be looked at later.

Example::

    from cifarlab import api
    run = api.load_run("runs/scratch-resnet18-cifar10-s0")
    run.confusion()                 # a matplotlib Figure (shown inline in Jupyter)
    cm = run.confusion_matrix()     # (K, K) counts, rows = true class
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cifarlab.analysis import findings, metrics, perrun, plots
from cifarlab.analysis.context import arm_groups, embedding_text, metric_columns, num, pct
from cifarlab.analysis.runs import Run, find_runs
from cifarlab.engine.rundir import read_json
from cifarlab.errors import CifarlabError

# which file each view reads, and what writes it (named in the error when the file is missing)
WRITERS = {"summary.json": "every run, when it starts",
           "config.json": "every run, once its data is loaded",
           "metrics.csv": "every recipe, after each epoch",
           "predictions.npz": "every recipe, once the run completes (rotation runs save embeddings but no class "
                              "predictions)"}
COMPARE = ("accuracy", "per_class")


@dataclass(frozen=True)
class Mistakes:
    """The most confident test mistakes a run kept: images (N, H, W, 3) uint8, true and predicted class indices,
    the softmax confidence of the prediction, and their indices into the test split."""

    images: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    index: np.ndarray


def _load(path: str | Path) -> Run:
    p = Path(path)
    if not p.is_dir():
        raise CifarlabError(f"{p}: no such run directory")
    if not (p / "summary.json").is_file():
        inside = sorted(q.parent.name for q in p.glob("*/summary.json"))
        more = ", ..." if len(inside) > 3 else ""
        hint = (f"; it holds {len(inside)} run directories ({', '.join(inside[:3])}{more}): use load_study for a "
                "folder of runs") if inside else ""
        raise CifarlabError(f"{p} is not a run directory: no summary.json (written by {WRITERS['summary.json']}){hint}")
    return Run(p, read_json(p / "summary.json"))


class RunResults:
    """One run directory: its facts (``summary``, ``config``), its arrays and the report's figures of it.

    Figures: :meth:`curves`, :meth:`confusion`, :meth:`per_class`, :meth:`mistakes`, :meth:`embedding`.
    Arrays behind them: :meth:`history`, :meth:`confusion_matrix`, :meth:`per_class_accuracy`, :meth:`misclassified`,
    :meth:`projection`; every array the run saved: :attr:`predictions`.
    """

    def __init__(self, path: str | Path) -> None:
        self._run = _load(path)

    @property
    def path(self) -> Path:
        return self._run.path

    @property
    def name(self) -> str:
        return self._run.name

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json: status, headline metrics, timings, parameter counts."""
        return self._run.summary

    @property
    def config(self) -> dict[str, Any]:
        """Every key the run ran with (defaults filled in), from config.json."""
        return self._need("config.json", self._run.config).get("config", {})

    @property
    def resolved(self) -> dict[str, Any]:
        """What each ``auto`` key became on the machine that ran it (device, amp, resolution, ...)."""
        return self._need("config.json", self._run.config).get("resolved", {})

    @property
    def status(self) -> str:
        return self._run.status

    @property
    def classes(self) -> list[str]:
        return self._run.classes

    @property
    def accuracy(self) -> float | None:
        """Test accuracy (rotation accuracy for a rotation run); None unless the run completed."""
        return self._run.accuracy

    def _need(self, name: str, value: Any) -> Any:
        if not value:
            raise CifarlabError(f"run {self.name} ({self.path}) has no {name} (written by {WRITERS[name]}); "
                                f"its status is {self.status}")
        return value

    @cached_property
    def predictions(self) -> dict[str, np.ndarray]:
        """predictions.npz: ``labels`` and ``preds`` (test split), ``logits``, ``classes``, ``embeddings`` of a
        stratified test subset at ``embed_idx``, and the kept mistakes ``mis_idx`` / ``mis_conf`` / ``mis_images``."""
        return self._need("predictions.npz", self._run.predictions)

    def _classified(self) -> dict[str, np.ndarray]:
        pred = self.predictions
        if "preds" not in pred:
            raise CifarlabError(f"run {self.name} (recipe {self.summary.get('recipe')}) has no class predictions in "
                                "predictions.npz: a rotation run predicts rotations, not classes (its embedding() is "
                                "there; the class views are on the runs that start from it)")
        return pred

    # ---- arrays
    def history(self) -> list[dict[str, Any]]:
        """metrics.csv: one dict per epoch (epoch, lr, train_loss, train_acc, val_loss, val_acc, ...)."""
        return self._need("metrics.csv", self._run.metrics)

    def confusion_matrix(self) -> np.ndarray:
        """(K, K) counts on the test split, rows = true class, columns = predicted class."""
        pred = self._classified()
        return metrics.confusion(pred["labels"], pred["preds"], len(self.classes))

    def per_class_accuracy(self) -> dict[str, float]:
        """Test accuracy of each class, in class order."""
        return dict(zip(self.classes, metrics.per_class_accuracy(self.confusion_matrix()).tolist()))

    def misclassified(self) -> Mistakes:
        pred = self._classified()
        if not len(pred.get("mis_images", [])):
            raise CifarlabError(f"run {self.name}: predictions.npz keeps no misclassified images (every test image "
                                "was classified correctly, or the run predates mis_images)")
        idx = pred["mis_idx"]
        return Mistakes(pred["mis_images"], pred["labels"][idx], pred["preds"][idx], pred["mis_conf"], idx)

    def projection(self, method: str = "tsne", max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """(xy (N, 2), labels (N,)): the 2-D t-SNE or UMAP projection of the saved test embeddings, as the report
        draws it (seeded, so the same run gives the same picture)."""
        if method not in ("tsne", "umap"):
            raise CifarlabError(f"embedding method {method!r} is not allowed; choose from: tsne, umap")
        emb, labels, why = perrun.embedding_points(self.predictions, max_points)
        if why:
            raise CifarlabError(f"run {self.name}: no embedding plot: {why}")
        return perrun.project_2d(emb, method), labels

    # ---- figures (the report's own)
    def curves(self) -> Figure:
        """Loss, accuracy and learning rate per epoch, train vs validation."""
        return perrun.curves_figure(self.history())

    def confusion(self) -> Figure:
        """Row-normalised confusion matrix with counts."""
        return perrun.confusion_figure(self.confusion_matrix(), self.classes)

    def per_class(self) -> Figure:
        """Per-class test accuracy as a one-row heatmap (the report's heatmap, this run only)."""
        acc = np.array(list(self.per_class_accuracy().values()))
        return plots.per_class_heatmap({self.name: acc}, self.classes, "per-class test accuracy (%)")

    def mistakes(self) -> Figure:
        """The most confident mistakes: image, true → predicted, confidence."""
        self.misclassified()  # the clear error when none were kept
        return perrun.mistakes_figure(self.predictions, self.classes)

    def embedding(self, method: str = "tsne") -> Figure:
        """t-SNE (or UMAP) of the saved test embeddings, coloured by class, with the silhouette score."""
        xy, labels = self.projection(method)
        emb, _, _ = perrun.embedding_points(self.predictions)
        return perrun.embedding_figure(xy, labels, self.classes, method, metrics.embedding_silhouette(emb, labels))

    # ---- Jupyter
    def facts(self) -> dict[str, str]:
        """The run's facts as short strings: what ``_repr_html_`` shows."""
        s = self.summary
        headline = ("linear-probe accuracy", s.get("linear_acc")) if s.get("recipe") in findings.CONTRASTIVE else (
            "rotation accuracy" if s.get("recipe") == "rotation" else "test accuracy", self.accuracy)
        return {"run": self.name, "status": self.status, "recipe": str(s.get("recipe")), "model": str(s.get("model")),
                "dataset": str(s.get("dataset")),
                "images (train/val/test)": "/".join(num(s.get(k)) for k in ("num_train", "num_val", "num_test")),
                "epochs": str(s.get("epochs", "–")), headline[0]: pct(headline[1]),
                "parameters (trainable/total)": f"{num(s.get('params_trainable'))}/{num(s.get('params_total'))}",
                "training time": num(s.get("train_time_s"), "{:,.1f} s"), "embedding": embedding_text(s),
                **({"error": str(s["error"])} if s.get("error") else {})}

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self.facts().items())
        return f"<table>{rows}</table>"

    def __repr__(self) -> str:
        return f"RunResults({str(self.path)!r}, status={self.status!r})"


class StudyResults:
    """A folder of run directories (a study's ``--out``): its runs, the report's findings, and arms side by side."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CifarlabError(f"{self.path}: no such study folder")
        self._runs = find_runs(self.path)
        if not self._runs:
            raise CifarlabError(f"{self.path} holds no run directories (no */summary.json; each run writes one when "
                                "it starts)")
        self.meta = read_json(self.path / "study.json")
        self.runs = {r.name: RunResults(r.path) for r in self._runs}
        self._by_path = {str(r.path): r for r in self.runs.values()}

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.resolve().name)

    def run(self, name: str) -> RunResults:
        if name not in self.runs:
            raise CifarlabError(f"no run {name!r} in {self.path}; runs: {', '.join(self.runs)}")
        return self.runs[name]

    @cached_property
    def findings(self) -> list[findings.Finding]:
        """The report's questions answered from these runs (``analysis.findings.answer``): each with its arms and
        statements (a statement's ``comparison`` holds the Welch test)."""
        return findings.answer(self._runs)

    def findings_table(self):
        """Every comparison the report states, one row each (the rows of the report's findings.json): a pandas
        DataFrame where pandas is installed, else a list of dicts."""
        return _table(findings.findings_json(self.findings))

    def runs_table(self):
        """Each run's :meth:`RunResults.facts`, one row per run: a pandas DataFrame where pandas is installed, else
        a list of dicts."""
        return _table([r.facts() for r in self.runs.values()])

    def arms(self) -> dict[str, dict[str, tuple[float, float]]]:
        """{arm label: {metric: (mean, sd over seeds)}} of every question's arms: the numbers :meth:`compare`
        draws."""
        return {label: v for f in self.findings for label, v in arm_groups(f).items()}

    def per_arm_class_accuracy(self) -> dict[str, np.ndarray]:
        """{arm label: per-class test accuracy, the mean over the arm's seeds}, for arms whose runs predicted
        classes (in the class order of the first such run)."""
        out: dict[str, np.ndarray] = {}
        for f in self.findings:
            for arm in f.arms:
                accs = [np.array(list(self._by_path[str(r.path)].per_class_accuracy().values())) for r in arm.runs
                        if r.status == "complete" and (r.predictions or {}).get("preds") is not None]
                if accs:
                    out[arm.label] = np.mean(accs, axis=0)
        return out

    def compare(self, what: str = "accuracy", question: str | None = None) -> Figure:
        """Arms side by side: ``accuracy`` (mean ± sd bars over seeds, the report's bar chart) or ``per_class``
        (a heatmap, one row per arm, each cell the mean over its seeds). ``question``: one question's arms only
        (scratch, transfer, supcon, rotation)."""
        if what not in COMPARE:
            raise CifarlabError(f"compare {what!r} is not allowed; choose from: {', '.join(COMPARE)}")
        keys = [f.key for f in self.findings]
        if question is not None and question not in keys:
            raise CifarlabError(f"question {question!r} has no runs in {self.path}; choose from: {', '.join(keys)}")
        chosen = [f for f in self.findings if question in (None, f.key)]
        labels = {a.label for f in chosen for a in f.arms}
        if what == "per_class":
            acc = {k: v for k, v in self.per_arm_class_accuracy().items() if k in labels}
            if not acc:
                raise CifarlabError(f"no arm in {self.path} has class predictions to compare")
            classes = next(r.classes for r in self.runs.values() if r.classes)
            return plots.per_class_heatmap(acc, classes, "per-class test accuracy (%), arms x classes")
        groups = {k: v for f in chosen for k, v in arm_groups(f).items()}
        if not groups:
            raise CifarlabError(f"no arm in {self.path} has a completed run to compare")
        xlabel = " / ".join(dict.fromkeys(lab for f in chosen for _, lab in metric_columns(f)))
        return plots.arm_bars(groups, f"{self.name}: arms side by side (mean ± sd over seeds)", xlabel)

    def _repr_html_(self) -> str:
        sentences = "".join(f"<li>{html.escape(s)}</li>" for f in self.findings for s in f.sentences)
        rows = "".join(f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(str(r.summary.get('recipe')))}</td>"
                       f"<td>{html.escape(r.status)}</td><td>{html.escape(pct(r.accuracy))}</td></tr>"
                       for r in self.runs.values())
        return (f"<p><b>{html.escape(self.name)}</b>: {len(self.runs)} runs</p><ul>{sentences}</ul>"
                f"<table><tr><th>run</th><th>recipe</th><th>status</th><th>accuracy</th></tr>{rows}</table>")

    def __repr__(self) -> str:
        return f"StudyResults({str(self.path)!r}, runs={len(self.runs)})"


def _table(rows: list[dict[str, Any]]):
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def load_run(path: str | Path) -> RunResults:
    """The run directory at ``path`` as a :class:`RunResults`."""
    return RunResults(path)


def load_study(path: str | Path) -> StudyResults:
    """Every run directory under ``path`` (a study's ``--out``) as a :class:`StudyResults`."""
    return StudyResults(path)
