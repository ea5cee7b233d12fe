"""Reports over run directories: one self-contained HTML file (figures embedded as PNG data, no network requests),
or Markdown with the figures as files beside it. Every user-provided string is escaped."""

from __future__ import annotations

import base64
import datetime
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.analysis import metrics, plots
from cifarlab.analysis.runs import Run, find_runs
from cifarlab.errors import CifarlabError


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) and np.isfinite(x) else "–"


def _num(x: Any, fmt: str = "{:,.0f}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and np.isfinite(x) else "–"


def _data_budget(run: Run) -> str:
    pc, frac = run.key("per_class", 0), run.key("train_fraction", 1.0)
    return f"{pc}/class" if pc else ("all" if frac >= 1 else f"{frac:g} of train")


def _init(run: Run) -> str:
    init = run.key("init") or ""
    if init:
        return "random init" if init == "random" else f"init: {Path(init).name}"
    w = run.key("weights")
    return {"default": "pretrained", "none": "random init", None: "scratch"}.get(w, f"weights: {Path(str(w)).name}")


def summary_row(run: Run) -> dict[str, Any]:
    s = run.summary
    return {"run": run.name, "recipe": s.get("recipe"), "model": s.get("model"), "init": _init(run),
            "data": _data_budget(run), "seed": run.key("seed"), "status": run.status, "accuracy": run.accuracy,
            "linear_acc": s.get("linear_acc"), "knn_acc": s.get("knn_acc"), "params_total": s.get("params_total"),
            "params_trainable": s.get("params_trainable"), "train_time_s": s.get("train_time_s"),
            "images_per_s": s.get("images_per_s"), "peak_memory_mb": s.get("peak_memory_mb"),
            "epochs": s.get("epochs"), "error": s.get("error")}


def comparison_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Runs that differ only by seed are one row: mean +- std of accuracy over seeds."""
    rows = [summary_row(r) for r in runs if r.status == "complete"]
    out = []
    for key, group in metrics.group_runs(rows, ("recipe", "model", "init", "data")).items():
        m, sd, n = metrics.mean_std(g["accuracy"] for g in group)
        first = group[0]
        out.append({"recipe": key[0], "model": key[1], "init": key[2], "data": key[3], "acc_mean": m, "acc_std": sd,
                    "seeds": n, "params_total": first["params_total"], "params_trainable": first["params_trainable"],
                    "train_time_s": metrics.mean_std(g["train_time_s"] for g in group)[0],
                    "images_per_s": metrics.mean_std(g["images_per_s"] for g in group)[0],
                    "peak_memory_mb": max((g["peak_memory_mb"] or 0) for g in group)})
    return sorted(out, key=lambda r: (str(r["recipe"]), str(r["model"]), str(r["init"]), str(r["data"])))


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


def lowlabel_series(runs: list[Run]) -> dict[str, list[tuple[int, float, float]]]:
    """Accuracy vs labelled images per class, per method (runs tagged ``lowlabel`` by a study)."""
    by: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        method = r.summary.get("study_series")
        if method and r.status == "complete" and r.accuracy is not None and r.key("per_class"):
            by.setdefault((method, int(r.key("per_class"))), []).append(r.accuracy)
    series: dict[str, list[tuple[int, float, float]]] = {}
    for (method, n), accs in by.items():
        m, sd, _ = metrics.mean_std(accs)
        series.setdefault(method, []).append((n, m, sd))
    return series


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
    analyses = {r.name: run_analysis(r, embedding) for r in runs}
    title = title or f"cifarlab report: {Path(root).resolve().name}"
    if fmt == "md":
        return _markdown(runs, analyses, out, title)
    return _html(runs, analyses, out, title, root)


def _img_html(fig: Figure) -> str:
    return f'<img alt="{esc(fig.alt)}" src="data:image/png;base64,{base64.b64encode(fig.png).decode()}">'


def _html(runs: list[Run], analyses: dict[str, Any], out: Path, title: str, root: str | Path) -> Path:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    h = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
         f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>",
         f"<p class=meta>{len(runs)} runs under <code>{esc(Path(root).resolve())}</code>; generated {esc(now)}. "
         "Accuracies are on the test split, evaluated once per run with the weights selected on the validation "
         "split (rotation runs: rotation accuracy).</p>", "<h2>Summary</h2><table id=summary><tr>"]
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
    h.append("</table>")
    h += _comparison_html(runs, analyses)
    for r in runs:
        h += _run_html(r, analyses[r.name])
    # no network, no dependencies: after load, record how many images decoded (read by the browser test)
    h.append("<script>addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images="
             "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>")
    h.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(h), encoding="utf-8")
    return out


def _comparison_html(runs: list[Run], analyses: dict[str, Any]) -> list[str]:
    h = ["<section><h2>Comparison</h2><p class=meta>Runs that differ only by seed are averaged (mean ± std over "
         "seeds).</p><table id=comparison><tr><th>recipe</th><th>model</th><th>init</th><th>train data</th>"
         "<th>test acc</th><th>seeds</th><th>params</th><th>trainable</th><th>train s</th><th>img/s</th>"
         "<th>peak MB</th></tr>"]
    for c in comparison_rows(runs):
        acc = _pct(c["acc_mean"]) + (f" ± {100 * c['acc_std']:.2f}" if c["seeds"] > 1 else "")
        h.append(f"<tr><td>{esc(c['recipe'])}</td><td>{esc(c['model'])}</td><td>{esc(c['init'])}</td>"
                 f"<td>{esc(c['data'])}</td><td class=n>{esc(acc)}</td><td class=n>{c['seeds']}</td>"
                 f"<td class=n>{_num(c['params_total'])}</td><td class=n>{_num(c['params_trainable'])}</td>"
                 f"<td class=n>{_num(c['train_time_s'], '{:,.1f}')}</td><td class=n>{_num(c['images_per_s'])}</td>"
                 f"<td class=n>{_num(c['peak_memory_mb'])}</td></tr>")
    h.append("</table>")
    with_pc = [(r, analyses[r.name]) for r in runs if analyses[r.name]["per_class"] is not None]
    if with_pc:
        classes = with_pc[0][0].classes
        same = [(r, a) for r, a in with_pc if r.classes == classes][:12]
        fig = plots.per_class_bars({r.name: a["per_class"] for r, a in same}, classes, "per-class test accuracy")
        h.append(_img_html(Figure("per_class", _png(fig), "per-class accuracy of every run")))
        h.append("<h3>Most-confused class pairs per run</h3><table id=pairs><tr><th>run</th><th>top pairs "
                 "(mistakes both ways)</th></tr>")
        for r, a in with_pc:
            pairs = ", ".join(f"{p['a']} ↔ {p['b']} ({p['count']})" for p in a["pairs"][:3])
            h.append(f"<tr><td>{esc(r.name)}</td><td>{esc(pairs)}</td></tr>")
        h.append("</table>")
    series = lowlabel_series(runs)
    if series:
        fig = plots.accuracy_vs_labels(series, "test accuracy vs labelled images per class")
        h.append("<h3>Low-label curve</h3>" + _img_html(Figure("lowlabel", _png(fig), "accuracy vs labels")))
    h.append("</section>")
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


def _markdown(runs: list[Run], analyses: dict[str, Any], out: Path, title: str) -> Path:
    files = out.with_name(out.stem + "_files")
    files.mkdir(parents=True, exist_ok=True)

    def md(x: Any) -> str:
        return esc(x).replace("|", "\\|")

    lines = [f"# {md(title)}", "", "| " + " | ".join(label for _, label in SUMMARY_COLS) + " |",
             "|" + "---|" * len(SUMMARY_COLS)]
    for r in runs:
        row = summary_row(r)
        lines.append("| " + " | ".join(md(_cell(k, row[k])) for k, _ in SUMMARY_COLS) + " |")
    lines += ["", "## Comparison", "", "| recipe | model | init | data | test acc | seeds |",
              "|---|---|---|---|---|---|"]
    for c in comparison_rows(runs):
        lines.append(f"| {md(c['recipe'])} | {md(c['model'])} | {md(c['init'])} | {md(c['data'])} | "
                     f"{_pct(c['acc_mean'])} ± {100 * c['acc_std']:.2f} | {c['seeds']} |")
    for r in runs:
        lines += ["", f"## {md(r.name)}", ""]
        for f in analyses[r.name]["figures"]:
            name = f"{r.name}-{f.name}.png".replace("/", "_")
            (files / name).write_bytes(f.png)
            lines.append(f"![{md(f.alt)}]({files.name}/{name})")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
