"""Reports over run directories: one self-contained HTML file (figures embedded as PNG data, no network requests),
or Markdown with the figures as files beside it. Every user-provided string is escaped."""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.analysis import findings, metrics, plots
from cifarlab.analysis.runs import Run, find_runs
from cifarlab.engine.rundir import read_json
from cifarlab.errors import CifarlabError


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) and np.isfinite(x) else "–"


def _num(x: Any, fmt: str = "{:,.0f}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and np.isfinite(x) else "–"


def _init(run: Run) -> str:
    init = run.key("init") or ""
    if init:
        return "random init" if init == "random" else f"init: {Path(init).name}"
    w = run.key("weights")
    return {"default": "pretrained", "none": "random init", None: "scratch"}.get(w, f"weights: {Path(str(w)).name}")


def summary_row(run: Run) -> dict[str, Any]:
    s = run.summary
    return {"run": run.name, "recipe": s.get("recipe"), "model": s.get("model"), "init": _init(run),
            "data": findings.data_budget(run), "seed": run.key("seed"), "status": run.status, "accuracy": run.accuracy,
            "linear_acc": s.get("linear_acc"), "knn_acc": s.get("knn_acc"), "params_total": s.get("params_total"),
            "params_trainable": s.get("params_trainable"), "train_time_s": s.get("train_time_s"),
            "images_per_s": s.get("images_per_s"), "peak_memory_mb": s.get("peak_memory_mb"),
            "epochs": s.get("epochs"), "error": s.get("error")}


@dataclass
class Figure:
    name: str
    png: bytes
    alt: str


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def project_2d(emb: np.ndarray, method: str, seed: int = 0) -> np.ndarray | None:
    """t-SNE (scikit-learn) or UMAP (umap-learn, when installed) of embeddings; None if unavailable."""
    if method == "umap":
        try:
            import umap
        except ImportError:
            return None
        return umap.UMAP(random_state=seed).fit_transform(emb)
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(emb) - 1) // 3)))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(emb)


def run_analysis(run: Run, embedding: str = "tsne", max_points: int = 1000) -> dict[str, Any]:
    """Everything the report shows for one run: metrics and figures (as PNG bytes). Never raises: what cannot be
    computed (a run that diverged, failed, or left unreadable files) is listed in ``missing`` with the reason."""
    out: dict[str, Any] = {"figures": [], "pairs": [], "per_class": None, "silhouette": None, "missing": []}
    try:
        _analyse(run, embedding, max_points, out)
    except Exception as exc:  # a broken run directory must not take the whole report down
        out["missing"].append(f"analysis stopped: {type(exc).__name__}: {exc}")
    if run.status != "complete":
        out["missing"].insert(0, f"status {run.status}: no test accuracy is reported for this run")
    return out


def analyse_all(runs: list[Run], embedding: str = "tsne", workers: int | None = None,
                meanwhile: Callable[[], Any] | None = None) -> dict[str, dict[str, Any]]:
    """``run_analysis`` of every run, spread over worker interpreters, one per core (matplotlib and t-SNE are
    single-threaded: on 2 cores this halves the report of a 24-run study). Workers are plain ``python -c``
    subprocesses, so no caller's main module is re-imported and no process that ran torch is forked. Runs a worker
    could not analyse are analysed here. ``meanwhile`` runs here while the workers work."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(workers, 8, len(runs) // 4)  # a few runs: starting interpreters costs more than it saves
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cifarlab-report-") as tmp:
        procs = []
        # one thread per worker: OpenMP threads spinning in several processes on the same cores were 2x slower
        env = {**os.environ, **{k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
        for k in range(workers if workers > 1 else 0):
            job = Path(tmp) / f"job{k}.pkl"
            job.write_bytes(pickle.dumps(([str(r.path) for r in runs[k::workers]], embedding)))
            procs.append((job, subprocess.Popen(
                [sys.executable, "-c", "from cifarlab.analysis.report import _worker; _worker()", str(job)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)))
        if meanwhile is not None:
            meanwhile()
        for job, proc in procs:
            result = job.with_suffix(".out")
            if proc.wait() == 0 and result.is_file():
                out.update(pickle.loads(result.read_bytes()))
    return {r.name: out.get(r.name) or run_analysis(r, embedding) for r in runs}


def _worker() -> None:
    """Entry point of an ``analyse_all`` worker: argv[1] holds (run paths, embedding); writes {name: analysis}."""
    job = Path(sys.argv[1])
    paths, embedding = pickle.loads(job.read_bytes())
    runs = [Run(Path(p), read_json(Path(p) / "summary.json")) for p in paths]
    result = {r.name: run_analysis(r, embedding) for r in runs}
    tmp = job.with_suffix(".part")
    tmp.write_bytes(pickle.dumps(result))
    tmp.replace(job.with_suffix(".out"))


def _analyse(run: Run, embedding: str, max_points: int, out: dict[str, Any]) -> None:
    if run.metrics:
        out["figures"].append(Figure("curves", _png(plots.curves(run.metrics)), "training curves"))
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
        out["figures"].append(Figure("confusion", _png(plots.confusion_matrix(cm, classes, "confusion (rows = true)")),
                                     "confusion matrix"))
        if len(pred.get("mis_images", [])):
            caps = [f"{classes[pred['labels'][i]]} → {classes[pred['preds'][i]]}\n{100 * c:.0f}%"
                    for i, c in zip(pred["mis_idx"], pred["mis_conf"])]
            out["figures"].append(Figure("misclassified", _png(plots.image_grid(
                pred["mis_images"], caps, title="most confident mistakes (true → predicted, confidence)")),
                "misclassified test images"))
    emb = pred.get("embeddings")
    if emb is not None and len(emb) >= 10 and embedding != "none":
        labels = pred["labels"][pred["embed_idx"]]
        emb, labels = emb[:max_points].astype(np.float32), labels[:max_points]
        finite = np.isfinite(emb).all(1)
        if not finite.all():
            out["missing"].append(f"embedding plot: {int((~finite).sum())} of {len(emb)} embeddings are not finite")
            return
        out["silhouette"] = metrics.embedding_silhouette(emb, labels)
        xy = project_2d(emb, embedding)
        if xy is not None:
            out["figures"].append(Figure("embedding", _png(plots.embedding_scatter(
                xy, labels, classes, f"{embedding.upper()} of test embeddings (silhouette {out['silhouette']:.3f})")),
                f"{embedding} of embeddings"))


SUMMARY_COLS = [("run", "run"), ("recipe", "recipe"), ("model", "model"), ("init", "init"), ("data", "train data"),
                ("seed", "seed"), ("status", "status"), ("accuracy", "test acc"), ("linear_acc", "linear"),
                ("knn_acc", "kNN"), ("params_total", "params"), ("params_trainable", "trainable"),
                ("train_time_s", "train s"), ("images_per_s", "img/s"), ("peak_memory_mb", "peak MB")]
PCT = {"accuracy", "linear_acc", "knn_acc"}


def _cell(key: str, v: Any) -> str:
    if key in PCT:
        return _pct(v)
    if key == "train_time_s":
        return _num(v, "{:,.1f}")
    if key in ("params_total", "params_trainable", "images_per_s", "peak_memory_mb"):
        return _num(v)
    return "–" if v is None else str(v)


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f0f3f7}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.failed td{background:#fdecea}
img{max-width:100%;border:1px solid #eee;margin:4px 0}section{border-top:2px solid #dde;margin-top:2em}
.meta{color:#666;font-size:13px}code{background:#f4f4f4;padding:1px 4px}"""


def build(root: str | Path, fmt: str = "html", out: str | Path = "report.html", embedding: str = "tsne",
          title: str | None = None) -> Path:
    """Write the report for every run directory under ``root``; returns the written file."""
    runs = find_runs(root)
    if not runs:
        raise CifarlabError(f"no run directories (with summary.json) under {root}")
    out = Path(out)
    answers = findings.answer(runs)
    charts: dict[str, list[Figure]] = {}

    def draw_questions() -> None:  # while the per-run analyses are drawn in worker processes
        charts.update({f.key: _finding_chart(f, runs) for f in answers}, overview=_overview_figures(runs))

    analyses = analyse_all(runs, embedding, meanwhile=draw_questions if fmt == "html" else None)
    study = read_json(Path(root) / "study.json") if (Path(root) / "study.json").is_file() else {}
    title = title or (f"cifarlab study: {study['name']}" if study.get("name") else
                      f"cifarlab report: {Path(root).resolve().name}")
    if fmt == "md":
        return _markdown(runs, analyses, answers, out, title)
    return _html(runs, analyses, answers, charts, out, title, root, study)


def _img_html(fig: Figure) -> str:
    return f'<img alt="{esc(fig.alt)}" src="data:image/png;base64,{base64.b64encode(fig.png).decode()}">'


def _html(runs: list[Run], analyses: dict[str, Any], answers: list[findings.Finding],
          charts: dict[str, list[Figure]], out: Path, title: str, root: str | Path, study: dict[str, Any]) -> Path:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    h = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
         f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>",
         f"<p class=meta>{len(runs)} runs under <code>{esc(Path(root).resolve())}</code>; generated {esc(now)}. "
         "Accuracies are on the test split, evaluated once per run with the weights selected on the validation "
         "split (rotation runs: rotation accuracy). Training time includes the frozen-backbone embedding and the "
         "head probe where a run had them.</p>"]
    if study.get("note"):
        h.append(f"<p class=note>{esc(study['note'])}</p>")
    toc = [("overview", "Accuracy against training time")] + [(f"q-{f.key}", f.title) for f in answers] + [
        ("per-class", "Per-class accuracy"), ("all-runs", "All runs")]
    h.append("<nav><b>Contents:</b> " + " · ".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in toc) + "</nav>")
    h += _overview_html(runs, charts["overview"])
    for f in answers:
        h += _finding_html(f, charts[f.key])
    h += _per_class_html(runs, analyses)
    h.append("<section id=all-runs><h2>All runs</h2><table id=summary><tr>")
    h += [f"<th>{esc(label)}</th>" for _, label in SUMMARY_COLS] + ["</tr>"]
    for r in runs:
        row = summary_row(r)
        cls = " class=failed" if r.status != "complete" else ""
        cells = []
        for key, _ in SUMMARY_COLS:
            text = _cell(key, row[key])
            if key == "run":
                text = f'<a href="#run-{esc(r.name)}">{esc(text)}</a>'
            else:
                text = esc(text)
            numeric = key in PCT or key.startswith(("params", "train", "images", "peak"))
            cells.append(f"<td{' class=n' if numeric else ''}>{text}</td>")
        h.append(f"<tr{cls}>{''.join(cells)}</tr>")
    h.append("</table></section>")
    for r in runs:
        h += _run_html(r, analyses[r.name])
    # no network, no dependencies: after load, record how many images decoded (read by the browser test)
    h.append("<script>addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images="
             "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>")
    h.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(h), encoding="utf-8")
    return out


def _group(run: Run) -> str:
    recipe = str(run.summary.get("recipe"))
    if recipe in findings.TRANSFER:
        kind = findings.init_kind(run, {})
        return f"{recipe} ({'pretrained' if kind == 'pretrained' else 'from a run' if kind == 'a run' else kind})"
    return recipe


def _overview_points(runs: list[Run]) -> list[tuple[str, str, float, float]]:
    return [(r.name, _group(r), c, r.accuracy) for r in runs
            if r.accuracy is not None and (c := findings.cost_s(r.summary))]


def _overview_figures(runs: list[Run]) -> list[Figure]:
    points = _overview_points(runs)
    return [Figure("overview", _png(plots.accuracy_vs_time(points, "every run: test accuracy (rotation runs: "
                                                                   "rotation accuracy)")),
                   "test accuracy against training time, every run")] if points else []


def _overview_html(runs: list[Run], figures: list[Figure]) -> list[str]:
    points = _overview_points(runs)
    h = ["<section id=overview><h2>Accuracy against training time</h2>"]
    if not points:
        return h + ["<p class=missing>No complete run with a test accuracy and a training time.</p></section>"]
    h += [_img_html(f) for f in figures]
    classifiers = [p for p in points if p[1] != "rotation"] or points  # a pretext score is not a class accuracy
    best = max(classifiers, key=lambda p: p[3])
    fast = min(classifiers, key=lambda p: p[2])
    h.append(f"<p class=finding>The most accurate classifier is {esc(best[0])} ({_pct(best[3])} in {best[2]:,.1f} s); "
             f"the quickest is {esc(fast[0])} ({_pct(fast[3])} in {fast[2]:,.1f} s). Rotation runs are plotted with "
             "their 4-way pretext accuracy, not a class accuracy.</p></section>")
    return h


def _metric_columns(f: findings.Finding) -> list[tuple[str, str]]:
    """(metric, label) shown for a question's arms: linear probe and kNN for contrastive encoders, else accuracy."""
    if f.key == "supcon":
        return [("linear_acc", "linear probe"), ("knn_acc", "kNN")]
    pretext_only = f.key == "rotation" and all(a.runs[0].summary.get("recipe") == "rotation" for a in f.arms)
    return [("accuracy", "rotation acc" if pretext_only else "test acc")]


def _finding_chart(f: findings.Finding, runs: list[Run]) -> list[Figure]:
    if f.key == "scratch":
        hist = {r.name: r.metrics for arm in f.arms for r in arm.runs if r.metrics}
        return [Figure("scratch", _png(plots.validation_curves(dict(list(hist.items())[:8]), "accuracy per epoch")),
                       "accuracy per epoch of the from-scratch runs")] if hist else []
    groups = {a.label: {lab: a.stat(m)[:2] for m, lab in _metric_columns(f) if a.values(m)} for a in f.arms}
    groups = {k: v for k, v in groups.items() if v}
    figs = [Figure(f.key, _png(plots.arm_bars(groups, f.title)), f"{f.title}: accuracy per arm")] if groups else []
    series = findings.lowlabel_series(runs) if f.key == "rotation" else {}
    if series:
        figs.append(Figure("lowlabel", _png(plots.accuracy_vs_labels(series, "test accuracy vs labelled images per "
                                                                              "class")), "accuracy vs labels"))
    return figs


def _finding_html(f: findings.Finding, figures: list[Figure]) -> list[str]:
    h = [f'<section class=question id="q-{esc(f.key)}" data-question="{esc(f.key)}"><h2>{esc(f.title)}</h2>'
         f"<p class=ask>{esc(f.question)}</p>"]
    for fig in figures:
        if fig.name == "lowlabel":
            h.append("<h3>Low-label curve</h3>")
        h.append(_img_html(fig))
    metric_cols = _metric_columns(f)
    h.append("<table class=arms><tr><th>arm</th>" + "".join(f"<th>{esc(lab)} (mean ± sd)</th>" for _, lab in
                                                             metric_cols)
             + "<th>seeds</th><th>trainable params</th><th>train s</th><th>runs</th></tr>")
    for arm in f.arms:
        cells = []
        for m, _ in metric_cols:
            mean, sd, n = arm.stat(m)
            cells.append(f"<td class=n>{_pct(mean)}{f' ± {100 * sd:.2f}' if n > 1 else ''}</td>")
        links = ", ".join(f'<a href="#run-{esc(r.name)}">{esc(r.name)}</a>' for r in arm.runs)
        h.append(f"<tr><td>{esc(arm.label)}</td>{''.join(cells)}<td class=n>{len(arm.values())}</td>"
                 f"<td class=n>{_num(arm.trainable)}</td><td class=n>{_num(arm.cost, '{:,.1f}')}</td>"
                 f"<td>{links}</td></tr>")
    h.append("</table>")
    for sentence, data in zip(f.sentences, f.numbers):
        attrs = ""
        if data and "b_mean" in data:
            attrs = f' data-a-mean="{data["a_mean"]:.6f}" data-b-mean="{data["b_mean"]:.6f}" data-metric="' \
                    f'{esc(data["metric"])}"'
        h.append(f"<p class=finding{attrs}>{esc(sentence)}</p>")
    h.append("</section>")
    return h


def _per_class_html(runs: list[Run], analyses: dict[str, Any]) -> list[str]:
    h = ["<section id=per-class><h2>Per-class accuracy</h2>"]
    with_pc = [(r, analyses[r.name]) for r in runs if analyses[r.name]["per_class"] is not None]
    if not with_pc:
        return h + ["<p class=missing>No run has test predictions.</p></section>"]
    classes = with_pc[0][0].classes
    same = [(r, a) for r, a in with_pc if r.classes == classes]
    fig = plots.per_class_heatmap({r.name: a["per_class"] for r, a in same}, classes,
                                  "per-class test accuracy (%), runs x classes")
    h.append(_img_html(Figure("per_class", _png(fig), "per-class accuracy of every run")))
    h.append("<h3>Most-confused class pairs per run</h3><table id=pairs><tr><th>run</th><th>top pairs "
             "(mistakes both ways)</th></tr>")
    for r, a in with_pc:
        pairs = ", ".join(f"{p['a']} ↔ {p['b']} ({p['count']})" for p in a["pairs"][:3])
        h.append(f"<tr><td>{esc(r.name)}</td><td>{esc(pairs)}</td></tr>")
    h.append("</table></section>")
    return h


def _run_html(r: Run, a: dict[str, Any]) -> list[str]:
    s = r.summary
    facts = {"status": r.status, "recipe": s.get("recipe"), "model": s.get("model"), "dataset": s.get("dataset"),
             "train/val/test images": f"{s.get('num_train')}/{s.get('num_val')}/{s.get('num_test')}",
             "selection": s.get("selection"), "best epoch": s.get("best_epoch"),
             "test accuracy": _pct(r.accuracy), "silhouette (embeddings, cosine)":
                 f"{a['silhouette']:.3f}" if a.get("silhouette") is not None else "–"}
    if s.get("error"):
        facts["error"] = s["error"]
    if s.get("bn_lag_epochs"):
        facts["note"] = (f"epoch(s) {s['bn_lag_epochs']}: large validation loss from lagging BatchNorm running "
                         "statistics, not divergence")
    h = [f'<section id="run-{esc(r.name)}"><h2>{esc(r.name)}</h2><table>']
    h += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts.items()]
    h.append("</table>")
    if a.get("per_class") is not None:
        counts = a["cm"].sum(1)
        h.append("<table class=perclass><tr><th>class</th><th>test images</th><th>accuracy</th></tr>" + "".join(
            f"<tr><td>{esc(c)}</td><td class=n>{int(n)}</td><td class=n>{_pct(acc)}</td></tr>"
            for c, n, acc in zip(r.classes, counts, a["per_class"])) + "</table>")
    if a["pairs"]:
        h.append("<p>Most-confused pairs: " + esc("; ".join(
            f"{p['a']} ↔ {p['b']}: {p['count']} ({p['a_as_b']} / {p['b_as_a']})" for p in a["pairs"])) + "</p>")
    h += [_img_html(f) for f in a["figures"]]
    if a.get("missing"):
        h.append("<p class=missing>Not shown: " + esc("; ".join(a["missing"])) + "</p>")
    h.append("</section>")
    return h


def _markdown(runs: list[Run], analyses: dict[str, Any], answers: list[findings.Finding], out: Path, title: str
              ) -> Path:
    files = out.with_name(out.stem + "_files")
    files.mkdir(parents=True, exist_ok=True)

    def md(x: Any) -> str:
        return esc(x).replace("|", "\\|")

    lines = [f"# {md(title)}", ""]
    for f in answers:
        lines += [f"## {md(f.title)}", "", f"*{md(f.question)}*", "", "| arm | accuracy (mean ± sd) | seeds |",
                  "|---|---|---|"]
        for arm in f.arms:
            m, sd, n = arm.stat()
            lines.append(f"| {md(arm.label)} | {_pct(m)}{f' ± {100 * sd:.2f}' if n > 1 else ''} | {n} |")
        lines += [""] + [md(sentence) for sentence in f.sentences] + [""]
    lines += ["## All runs", "", "| " + " | ".join(label for _, label in SUMMARY_COLS) + " |",
              "|" + "---|" * len(SUMMARY_COLS)]
    for r in runs:
        row = summary_row(r)
        lines.append("| " + " | ".join(md(_cell(k, row[k])) for k, _ in SUMMARY_COLS) + " |")
    for r in runs:
        lines += ["", f"## {md(r.name)}", ""]
        for f in analyses[r.name]["figures"]:
            name = f"{r.name}-{f.name}.png".replace("/", "_")
            (files / name).write_bytes(f.png)
            lines.append(f"![{md(f.alt)}]({files.name}/{name})")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
