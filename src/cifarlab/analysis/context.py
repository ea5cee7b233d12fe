"""The report's content as plain data (strings already formatted, user strings not yet escaped): the one input
of both templates, HTML and Markdown, which escape it as they render."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.analysis import findings, metrics, origin, plots, recipe_facts, regimes
from cifarlab.analysis.findings import Finding
from cifarlab.analysis.perrun import Figure, png
from cifarlab.analysis.references import Match
from cifarlab.analysis.runs import Run
from cifarlab.analysis.stats import is_finite


def pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if is_finite(x) else "–"


def num(x: Any, fmt: str = "{:,.0f}") -> str:
    return fmt.format(x) if is_finite(x) else "–"


def embedding_text(summary: dict[str, Any]) -> str:
    """'embedding cached; computed in 19.3 s', 'embedding computed in 19.3 s', or '–' for a run without one."""
    t, cache = summary.get("embed_time_s"), summary.get("embedding_cache")
    if not is_finite(t):
        return "–"
    if cache == "hit":
        return f"embedding cached; computed in {t:,.1f} s"
    if cache == "miss":
        return f"embedding computed in {t:,.1f} s"
    return f"embedding {t:,.1f} s (cache use unrecorded)"


# (key, label, numeric) of the all-runs table; "dataset" only where the runs mix datasets
SUMMARY_COLS = [("run", "run", False), ("recipe", "recipe", False), ("model", "model", False),
                ("dataset", "dataset", False), ("init", "init", False), ("data", "train data", False),
                ("seed", "seed", False), ("status", "status", False), ("accuracy", "test acc", True),
                ("linear_acc", "linear", True), ("knn_acc", "kNN", True), ("params_total", "params", True),
                ("params_trainable", "trainable", True), ("train_time_s", "train s", True),
                ("embedding", "embedding", False), ("cost_s", "cost s", True), ("images_per_s", "img/s", True),
                ("peak_memory_mb", "peak MB", True)]


def summary_row(run: Run) -> dict[str, str]:
    s = run.summary
    row = {"run": run.name, "recipe": s.get("recipe"), "model": s.get("model"), "dataset": findings.dataset_of(run),
           "init": origin.label(run), "data": findings.data_budget(run), "seed": run.key("seed"), "status": run.status,
           "accuracy": pct(run.accuracy), "linear_acc": pct(s.get("linear_acc")), "knn_acc": pct(s.get("knn_acc")),
           "params_total": num(s.get("params_total")), "params_trainable": num(s.get("params_trainable")),
           "train_time_s": num(s.get("train_time_s"), "{:,.1f}"), "embedding": embedding_text(s),
           "cost_s": num(findings.cost_s(s), "{:,.1f}"), "images_per_s": num(s.get("images_per_s")),
           "peak_memory_mb": num(s.get("peak_memory_mb"))}
    return {k: "–" if v is None else str(v) for k, v in row.items()}


def overview_points(runs: list[Run], origins: origin.Origins) -> list[tuple[str, str, float, float]]:
    return [(r.name, regimes.group_label(r, origins), c, r.accuracy) for r in runs
            if r.accuracy is not None and (c := findings.cost_s(r.summary))]


ROTATION_AXIS = "rotation accuracy (4-way pretext, chance 25%)"


def accuracy_axis(runs: list[Run]) -> str:
    """The axis label of the runs' headline accuracy, with its task and chance level: a 4-way rotation score and a
    10-way class accuracy never share an axis."""
    if runs and all(r.summary.get("recipe") == "rotation" for r in runs):
        return ROTATION_AXIS
    sizes = {len(r.classes) for r in runs}
    k = sizes.pop() if len(sizes) == 1 else 0
    return f"test accuracy ({k} classes, chance {100 / k:.0f}%)" if k else "test accuracy"


def overview_figures(runs: list[Run], origins: origin.Origins) -> list[Figure]:
    """Accuracy against training time, per arm: class accuracy in one chart, rotation runs' pretext accuracy in
    another (a 4-way and a 10-way score never share an axis)."""
    figs = []
    arms = regimes.regime_arms(runs, origins)
    for task, group in (("classifiers", [a for a in arms if a.runs[0].summary.get("recipe") != "rotation"]),
                        ("rotation", [a for a in arms if a.runs[0].summary.get("recipe") == "rotation"])):
        points = {a.label: pts for a in group
                  if (pts := [(c, r.accuracy) for r in a.runs
                              if r.accuracy is not None and (c := findings.cost_s(r.summary))])}
        if points:
            axis = accuracy_axis([r for a in group for r in a.runs])
            figs.append(Figure("overview" if task == "classifiers" else "overview-rotation",
                               png(plots.accuracy_vs_time(points, f"{axis.split(' (')[0]} per arm", ylabel=axis)),
                               f"{axis} against training time, per arm"))
    return figs


def _overview_sentence(points: list[tuple[str, str, float, float]]) -> str | None:
    if not points:
        return None
    classifiers = [p for p in points if p[1] != "rotation"] or points  # a pretext score is not a class accuracy
    best = max(classifiers, key=lambda p: p[3])
    fast = min(classifiers, key=lambda p: p[2])
    return (f"The most accurate classifier is {best[0]} ({pct(best[3])} in {best[2]:,.1f} s); the quickest is "
            f"{fast[0]} ({pct(fast[3])} in {fast[2]:,.1f} s). Rotation runs' 4-way pretext accuracy, not a class "
            "accuracy, has its own chart.")


def metric_columns(f: Finding) -> list[tuple[str, str]]:
    """(metric, label) shown for a question's arms: linear probe and kNN for contrastive encoders, else accuracy."""
    if f.key == "supcon":
        return [("linear_acc", "linear probe"), ("knn_acc", "kNN")]
    pretext_only = f.key == "rotation" and all(a.first.get("recipe") == "rotation" for a in f.arms)
    return [("accuracy", "rotation acc" if pretext_only else "test acc")]


def arm_groups(f: Finding) -> dict[str, dict[str, tuple[float, float]]]:
    """{arm label: {metric label: (mean, sd over seeds)}} of a question's arms: what its bar chart draws."""
    groups = {a.label: {lab: a.stat(m)[:2] for m, lab in metric_columns(f) if a.values(m)} for a in f.arms}
    return {k: v for k, v in groups.items() if v}


def finding_charts(f: Finding, runs: list[Run]) -> list[Figure]:
    if f.key == "scratch":
        hist = {r.name: r.metrics for arm in f.arms for r in arm.runs if r.metrics}
        return [Figure("scratch", png(plots.validation_curves(dict(list(hist.items())[:8]), "accuracy per epoch")),
                       "accuracy per epoch of the from-scratch runs")] if hist else []
    figs = []
    pretext = [a for a in f.arms if a.first.get("recipe") == "rotation"]
    for name, arms in ((f.key, [a for a in f.arms if a not in pretext]), (f"{f.key}-pretext", pretext)):
        groups = {a.label: {lab: a.stat(m)[:2] for m, lab in metric_columns(f) if a.values(m)} for a in arms}
        groups = {k: v for k, v in groups.items() if v}
        if groups:  # a 4-way rotation score gets its own chart and axis, never the class accuracy's
            axis = accuracy_axis([r for a in arms for r in a.runs]) if f.key != "supcon" else "accuracy"
            figs.append(Figure(name, png(plots.arm_bars(groups, f.title, xlabel=axis)), f"{f.title}: {axis} per arm"))
    series = findings.lowlabel_series(runs) if f.key == "rotation" else {}
    if series:
        figs.append(Figure("lowlabel", png(plots.accuracy_vs_labels(series, "test accuracy vs labelled images per "
                                                                            "class")), "accuracy vs labels"))
    return figs


def _statement(s: findings.Statement) -> dict[str, Any]:
    attrs: dict[str, str] = {}
    c = s.comparison
    if c is not None:
        attrs = {"data-a-mean": f"{c.a_mean:.6f}", "data-b-mean": f"{c.b_mean:.6f}", "data-metric": str(s.metric),
                 "data-diff-points": f"{c.diff_points:.6f}", "data-verdict": c.verdict,
                 "data-p-value": "" if c.p_value is None else f"{c.p_value:.6g}",
                 "data-p-holm": "" if c.p_holm is None else f"{c.p_holm:.6g}"}
    return {"text": s.text, "attrs": attrs}


METRIC_WORDS = {("accuracy", False): "test accuracy", ("accuracy", True): "rotation accuracy",
                ("linear_acc", False): "linear-probe accuracy"}


def _question(f: Finding, charts: list[Figure], refs: list[Match]) -> dict[str, Any]:
    cols = metric_columns(f)
    arms = []
    for arm in f.arms:
        cells = []
        for m, _ in cols:
            mean, sd, n = arm.stat(m)
            # a rotation arm under a class-accuracy column: its cell says it holds the 4-way pretext score
            pretext = m == "accuracy" and arm.first.get("recipe") == "rotation" and cols[0][1] != "rotation acc"
            tag = " (rotation, 4-way)" if pretext else ""
            cells.append(pct(mean) + (f" ± {100 * sd:.2f}" if n > 1 else "") + tag)
        hits = arm.cache_hits
        arms.append({"label": arm.label, "dataset": arm.dataset, "cells": cells, "seeds": len(arm.values()),
                     "trainable": num(arm.trainable), "cost": num(arm.cost, "{:,.1f}"),
                     "cost_note": f"embedding cached in {hits} of {len(arm.runs)} runs, counted at the time it took "
                                  "when computed" if hits else "",
                     "runs": [r.name for r in arm.runs], "facts": recipe_facts.arm_facts(arm.runs)})
    published = [{"arm": m.arm.label, "figure": m.reference.figure, "metric": METRIC_WORDS.get(
                      (m.reference.metric, m.reference.recipe == "rotation"), m.reference.metric),
                  "source": m.reference.source, "setting": m.reference.setting, "id": m.reference.id,
                  "differs": "; ".join(m.differences) or "none of the compared keys differ",
                  "how": "named by the run's config" if m.named else "matched by question, recipe and model"}
                 for m in refs]
    return {"key": f.key, "title": f.title, "question": f.question, "figures": charts,
            "metric_labels": [lab for _, lab in cols], "show_dataset": f.mixes_datasets, "arms": arms,
            "fact_columns": recipe_facts.FACT_COLUMNS, "show_overrides": any(a["facts"]["overrides"] for a in arms),
            "sentences": [_statement(s) for s in f.statements], "published": published}


def _run_page(r: Run, a: dict[str, Any]) -> dict[str, Any]:
    s = r.summary
    facts = {"status": r.status, "recipe": s.get("recipe"), "model": s.get("model"), "dataset": s.get("dataset"),
             "started from": origin.label(r),
             "train/val/test images": f"{s.get('num_train')}/{s.get('num_val')}/{s.get('num_test')}",
             "selection": s.get("selection"), "best epoch": s.get("best_epoch"), "test accuracy": pct(r.accuracy),
             "cost (training, embedding, head probe)": num(findings.cost_s(s), "{:,.1f} s"),
             "embedding": embedding_text(s),
             "silhouette (embeddings, cosine)": f"{a['silhouette']:.3f}" if a.get("silhouette") is not None else "–"}
    if s.get("error"):
        facts["error"] = s["error"]
    if s.get("bn_lag_epochs"):
        facts["note"] = (f"epoch(s) {s['bn_lag_epochs']}: large validation loss from lagging BatchNorm running "
                         "statistics, not divergence")
    perclass = []
    if a.get("per_class") is not None:
        perclass = [(c, int(n), pct(acc)) for c, n, acc in zip(r.classes, a["cm"].sum(1), a["per_class"])]
    pairs = "; ".join(f"{p['a']} ↔ {p['b']}: {p['count']} ({p['a_as_b']} / {p['b_as_a']})" for p in a["pairs"])
    return {"name": r.name, "facts": [(k, "–" if v is None else str(v)) for k, v in facts.items()],
            "perclass": perclass, "pairs": pairs, "figures": a["figures"], "figures_in": a.get("figures_in", ""),
            "missing": "; ".join(a["missing"])}


def _pairs_text(cm: Any, classes: list[str], k: int = 3) -> str:
    return ", ".join(f"{p['a']} ↔ {p['b']} ({p['count']})" for p in metrics.top_confused_pairs(cm, classes, k))


def per_arm(runs: list[Run], analyses: dict[str, Any], origins: origin.Origins
            ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The per-class heatmap (one row per arm, the mean over its seeds) with each arm's runs and confused pairs, and
    the regimes side by side: each arm's mean confusion matrix and its difference against a reference arm."""
    first = next((r for r in runs if analyses[str(r.path)].get("cm") is not None), None)
    if first is None:
        return None, None
    classes = first.classes
    views = regimes.arm_views(regimes.regime_arms(runs, origins), analyses, classes)
    fig = plots.per_class_heatmap({v.label: v.per_class for v in views}, classes,
                                  "per-class test accuracy (%), arms x classes, mean over seeds")
    heat = {"figure": Figure("per_class", png(fig), "per-class accuracy of every arm, mean over seeds"),
            "arms": [{"label": v.label, "runs": v.runs, "pairs": _pairs_text(v.counts, classes)} for v in views]}
    side = {"figures": [Figure("confusions", png(plots.confusion_grid(
        {v.label: v.confusion for v in views}, classes, "confusion per arm (rows = true class, % of its test "
                                                        "images), mean over seeds")), "confusion matrix per arm")],
            "caption": "", "sentences": []}
    ref = regimes.reference(views, origins)
    if ref is not None:
        base, why = ref
        others = [v for v in views if v is not base]
        side["figures"].append(Figure("confusion_diff", png(plots.confusion_grid(
            {v.label: v.confusion for v in others}, classes, f"difference against {base.label} (points; rows = "
                                                             "true class)", reference=base.confusion)),
            f"confusion difference per arm against {base.label}"))
        side["caption"] = (f"Reference: {base.label}, {why}. Each cell is the arm's share of the true class's test "
                           "images minus the reference's, in points (mean over seeds, not tested): off the diagonal, "
                           "blue is a confusion the arm makes less often (fixed) and red one it makes more often; on "
                           "the diagonal, red is more correct. Arms also differ in their data and budget where the "
                           "study gave them different ones.")
        side["sentences"] = [regimes.fixes_sentence(v, base, classes) for v in others]
    return heat, side


@dataclass(frozen=True)
class ReportParts:
    """What the report computed before rendering: the answered questions, the per-run analyses, the charts, the
    published references matched to arms, and the runs no question files."""

    answers: list[Finding]
    analyses: dict[str, Any]
    charts: dict[str, list[Figure]]
    refs: dict[str, list[Match]]
    unfiled: list[Run]


def study_note(study: dict[str, Any]) -> str | None:
    """The study file's note, and the ``--set`` keys that replaced its values (study.json's ``overrides``)."""
    sets = study.get("overrides") or {}
    said = (f"Run with --set {', '.join(f'{k}={v}' for k, v in sets.items())}: these values replace the study "
            "file's in every run whose recipe has the key, so the runs are smaller or otherwise different from the "
            "ones the file describes.") if sets else ""
    return " ".join(t for t in (study.get("note"), said) if t) or None


def build_context(root: str | Path, title: str, study: dict[str, Any], runs: list[Run], parts: ReportParts
                  ) -> dict[str, Any]:
    """Everything either template renders."""
    answers, analyses, charts, refs, unfiled = parts.answers, parts.analyses, parts.charts, parts.refs, parts.unfiled
    origins = origin.Origins(runs)
    mixed = len({findings.dataset_of(r) for r in runs}) > 1
    cols = [(k, lab, n) for k, lab, n in SUMMARY_COLS if k != "dataset" or mixed]
    toc = [("overview", "Accuracy against training time")] + [(f"q-{f.key}", f.title) for f in answers] + [
        ("per-class", "Per-class accuracy"), ("regimes", "Regimes side by side"), ("all-runs", "All runs"),
        ("per-run", "Per-run pages")]
    heat, side = per_arm(runs, analyses, origins)
    return {
        "title": title, "root": str(Path(root).resolve()), "n_runs": len(runs), "note": study_note(study),
        "generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "toc": toc,
        "overview": {"figures": charts.get("overview", []),
                     "sentence": _overview_sentence(overview_points(runs, origins))},
        "questions": [_question(f, charts.get(f.key, []), refs.get(f.key, [])) for f in answers],
        "unfiled": [{"name": r.name, "init": origin.label(r)} for r in unfiled],
        "per_class": heat, "regimes": side,
        "summary": {"cols": cols, "rows": [{"name": r.name, "failed": r.status != "complete", "cells": summary_row(r)}
                                           for r in runs]},
        "runs": [_run_page(r, analyses[str(r.path)]) for r in runs],
    }
