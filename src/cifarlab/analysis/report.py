"""Reports over run directories: one self-contained HTML file (figures embedded as PNG data, no network requests),
or Markdown with the figures as files beside it, or a PDF (the HTML printed by ``analysis.pdf``), rendered from one
context by Jinja2 templates (``templates/``; HTML autoescaped, so every user-provided string is escaped). Beside
the report, ``OUT.findings.json`` holds every comparison the report states, machine-readable."""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from markupsafe import Markup

from cifarlab.analysis import findings, pdf, references
from cifarlab.analysis.context import ReportParts, build_context, finding_charts, overview_figures
from cifarlab.analysis.origin import Origins
from cifarlab.analysis.perrun import EMBEDDINGS, FIGURES, Figure, analyse_all
from cifarlab.analysis.runs import find_runs
from cifarlab.engine.rundir import read_json
from cifarlab.errors import CifarlabError
from cifarlab.progress import enabled

FORMATS = ("html", "md", "pdf")
PROGRESS = ("auto", "on", "off")
UMAP_INSTALL = "pip install 'cifarlab[umap]'"

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f0f3f7}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.failed td{background:#fdecea}
img{max-width:100%;border:1px solid #eee;margin:4px 0}section{border-top:2px solid #dde;margin-top:2em}
.meta{color:#666;font-size:13px}code{background:#f4f4f4;padding:1px 4px}
.published{background:#fff3cd;border:1px solid #e0c060;border-radius:3px;padding:0 4px;font-size:11px}
.caption{color:#444;font-size:13px}""" + pdf.PRINT_CSS


def check_options(fmt: str, embedding: str, progress: str, figures: str = "first-seed") -> None:
    """Refuse a bad option, or an embedding whose library is missing, before any work."""
    for name, value, allowed in (("format", fmt, FORMATS), ("embedding", embedding, EMBEDDINGS),
                                 ("progress", progress, PROGRESS), ("figures", figures, FIGURES)):
        if value not in allowed:
            raise CifarlabError(f"report {name} {value!r} is not allowed; choose from: {', '.join(allowed)}")
    if embedding == "umap" and importlib.util.find_spec("umap") is None:
        raise CifarlabError(f"--embedding umap needs umap-learn, which is not installed: {UMAP_INSTALL} "
                            "(or use --embedding tsne)")
    if fmt == "pdf":
        pdf.check()


def findings_path(out: str | Path) -> Path:
    """OUT.findings.json beside OUT.html / OUT.md / OUT.pdf."""
    out = Path(out)
    return out.with_name(out.stem + ".findings.json")


def build(root: str | Path, fmt: str = "html", out: str | Path = "report.html", embedding: str = "tsne",
          title: str | None = None, progress: str = "auto", figures: str = "first-seed",
          equivalence_margin: float | None = None) -> Path:
    """Write the report of every run directory under ``root`` and its ``findings.json``; returns the report file.

    Args:
        root: a run directory, or a folder holding run directories (e.g. a study's ``--out``).
        fmt: html (one self-contained file), md (figures in ``OUT_files/`` beside it) or pdf (the HTML report
            printed to A4 by WeasyPrint, the per-run pages as its appendix).
        out: the report file; ``OUT.findings.json`` is written beside it.
        embedding: tsne, umap (needs umap-learn) or none: the 2-D projection of each run's test embeddings.
        title: the report's title (default: the study's name, else the folder's).
        progress: auto (only on a terminal), on or off: one progress line on stderr for the per-run analyses.
        figures: first-seed (each run's curves, confusion matrix, mistakes and 2-D embedding drawn once per arm, for
            its lowest seed; the other seeds' pages link there and keep their own tables) or all (every run's).
        equivalence_margin: points; where no difference is called, a TOST verdict within ± this (None: no TOST).
    """
    check_options(fmt, embedding, progress, figures)
    runs = find_runs(root)
    if not runs:
        raise CifarlabError(f"no run directories (with summary.json) under {root}")
    out = Path(out)
    answers = findings.answer(runs, equivalence_margin)
    origins = Origins(runs)
    refs = {f.key: references.matches(f, origins) for f in answers}  # a bad `reference` key fails here, early
    charts: dict[str, list[Figure]] = {}

    def draw_questions() -> None:  # while the per-run analyses are drawn in worker processes
        charts.update({f.key: finding_charts(f, runs) for f in answers}, overview=overview_figures(runs, origins))

    analyses = analyse_all(runs, embedding, None, meanwhile=draw_questions, progress=enabled(progress),
                           figures=figures)
    study_file = Path(root) / "study.json"
    study = read_json(study_file) if study_file.is_file() else {}
    title = title or (f"cifarlab study: {study['name']}" if study.get("name") else
                      f"cifarlab report: {Path(root).resolve().name}")
    ctx = build_context(root, title, study, runs, ReportParts(answers, analyses, charts, refs,
                                                              findings.unfiled(runs, origins)))
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pdf":
        pdf.write(_html(ctx), out)
    else:
        out.write_text(_markdown(ctx, out) if fmt == "md" else _html(ctx), encoding="utf-8")
    findings_path(out).write_text(json.dumps(findings.findings_json(answers), indent=1) + "\n", encoding="utf-8")
    return out


def _environment(autoescape: bool):
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("cifarlab.analysis", "templates"), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["md"] = lambda x: html.escape(str(x), quote=True).replace("|", "\\|")
    return env


def _html(ctx: dict[str, Any]) -> str:
    def src(fig: Figure) -> str:
        return "data:image/png;base64," + base64.b64encode(fig.png).decode()

    # the stylesheet is ours, not user input: marked safe so that its quotes reach the <style> element unescaped
    return _environment(autoescape=True).get_template("report.html.j2").render(**ctx, css=Markup(CSS), src=src)


def _markdown(ctx: dict[str, Any], out: Path) -> str:
    """Writes every figure of the context into OUT_files/ and renders the Markdown that links them."""
    files = out.with_name(out.stem + "_files")
    files.mkdir(parents=True, exist_ok=True)
    names: dict[int, str] = {}

    def place(fig: Figure, owner: str) -> None:
        # a file name safe in a Markdown link whatever the run is called; the count keeps lookalikes apart
        name = f"{len(names):03d}-{re.sub(r'[^A-Za-z0-9._-]', '_', owner)}-{fig.name}.png"
        (files / name).write_bytes(fig.png)
        names[id(fig)] = f"{files.name}/{name}"

    for fig in ctx["overview"]["figures"]:
        place(fig, "report")
    for q in ctx["questions"]:
        for fig in q["figures"]:
            place(fig, f"q-{q['key']}")
    if ctx["per_class"]:
        place(ctx["per_class"]["figure"], "report")
    for fig in (ctx["regimes"] or {}).get("figures", []):
        place(fig, "report")
    for r in ctx["runs"]:
        for fig in r["figures"]:
            place(fig, r["name"])
    return _environment(autoescape=False).get_template("report.md.j2").render(**ctx, src=lambda f: names[id(f)])
