#!/usr/bin/env python3
"""Regenerate every figure of the README's main job: run the ``quick`` study twice (seed offsets 0 and 10), each
from an empty data root (the dataset decode included) and timed by the wall clock, then

- write the comparison table of both runs (difference, 95% CI, p, verdict, and whether the verdict held) into
  docs/results.md between the markers ``<!-- quick:begin -->`` and ``<!-- quick:end -->``;
- write the README's example sentences (from the offset-0 run) between ``<!-- quick-sentences:begin -->`` and
  ``<!-- quick-sentences:end -->``;
- screenshot the offset-0 report with headless Chromium into docs/quick-report.png.

A verdict *holds* when both runs give the same direction and the same tested/significant status. Usage (from the
repository root, with the lossless copy)::

    CIFARLAB_DATASET=folder:../shared/datasets/cifar10-png.tar.gz .venv/bin/python benchmarks/quick_figures.py
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from common import short_commit  # noqa: E402

STUDY = "configs/studies/quick.toml"


def run_study(out: Path, offset: int, data_root: Path) -> float:
    """The study into ``out`` with ``--seed-offset offset``; returns its wall seconds."""
    env = {**os.environ, "CIFARLAB_DATA": str(data_root)}
    cmd = [sys.executable, "-m", "cifarlab.cli", "study", STUDY, "--out", str(out), "--seed-offset", str(offset)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    return time.perf_counter() - t0


def key(entry: dict) -> tuple:
    return entry["question"], entry["a"], entry["b"], entry["metric"]


def status(entry: dict) -> str:
    """'a better' / 'b better' / 'no significant difference' / 'not tested'."""
    return entry["verdict"]


def fmt(entry: dict | None) -> str:
    if entry is None:
        return "–"
    ci = entry.get("ci95_points")
    ci_text = f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
    p, p_holm = entry.get("p_value"), entry.get("p_holm")
    p_text = f", p = {p:.3f}" if p is not None else ""
    p_text += f" (Holm {p_holm:.3f})" if p_holm is not None else ""  # reports from before Holm have no p_holm
    return f"{entry['diff_points']:+.2f}{ci_text}{p_text}: {status(entry)}"


def table(runs: dict[int, list[dict]]) -> tuple[list[str], int, int]:
    """Markdown rows: one per comparison of either run; (rows, held, total)."""
    by = {o: {key(e): e for e in entries} for o, entries in runs.items()}
    keys = list(dict.fromkeys(k for o in sorted(by) for k in by[o]))
    rows = ["| question | a vs b (metric) | seed offset 0 | seed offset 10 | verdict held |", "|---|---|---|---|---|"]
    held = 0
    for k in keys:
        a, b = by[0].get(k), by[10].get(k)
        same = a is not None and b is not None and status(a) == status(b)
        held += same
        rows.append(f"| {k[0]} | {k[1]} vs {k[2]} ({k[3]}) | {fmt(a)} | {fmt(b)} | {'yes' if same else '**no**'} |")
    return rows, held, len(keys)


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"markers {begin} ... {end} not found")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)


def screenshot(report: Path, png: Path) -> bool:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium: docs/quick-report.png not regenerated", file=sys.stderr)
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,1500",
                        report.as_uri()], capture_output=True, timeout=180, check=False)
    return png.is_file()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/quick-figures", help="parent folder of the two study runs")
    ap.add_argument("--offsets", default="0,10")
    args = ap.parse_args()
    dataset = os.environ.get("CIFARLAB_DATASET")
    if not dataset:
        raise SystemExit("set CIFARLAB_DATASET (e.g. folder:../shared/datasets/cifar10-png.tar.gz)")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    offsets = [int(o) for o in args.offsets.split(",")]
    walls, findings = {}, {}
    for o in offsets:
        walls[o] = run_study(out / f"offset{o}", o, out / f"data{o}")  # an empty data root: decode included
        findings[o] = json.loads((out / f"offset{o}" / "report.findings.json").read_text())
    commit = short_commit()
    # this script's own outputs do not count as changes to what produced them
    outputs = {"README.md", "docs/results.md", "docs/quick-report.png"}
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                            text=True).stdout.splitlines()
    dirty = any(line[3:] not in outputs for line in status if line.strip())
    today = datetime.date.today().isoformat()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    rows, held, total = table(findings)
    times = ", ".join(f"seed offset {o}: {walls[o]:.0f} s ({walls[o] / 60:.1f} min)" for o in offsets)
    section = "\n".join([
        f"Generated by `benchmarks/quick_figures.py` on {today}, commit `{commit}`"
        f"{' (+ uncommitted changes)' if dirty else ''}, "
        f"{machine}; data `{dataset}`; each run from an empty data root (decode included). Commands: "
        f"`cifarlab study {STUDY} --out DIR --seed-offset N` for N in {args.offsets}.",
        "",
        f"Wall time, study and report: {times}. Verdicts that held between the two seed sets: **{held} of {total}**.",
        "Each cell: difference in points (a - b), its 95% confidence interval, Welch's p (Holm-adjusted over the "
        "report's comparisons), and the verdict (Holm-adjusted p < 0.05 is called a difference; fewer than 3 seeds "
        "in an arm is 'not tested').",
        "", *rows])
    results = REPO / "docs" / "results.md"
    results.write_text(replace_between(results.read_text(), "<!-- quick:begin -->", "<!-- quick:end -->", section))
    sentences = [e["sentence"] for e in findings[offsets[0]]][:4]
    readme = REPO / "README.md"
    body = "\n".join([f"From the run at commit `{commit}` ({today}, {walls[offsets[0]] / 60:.1f} min on this "
                      f"machine, decode included; regenerated by `benchmarks/quick_figures.py`):", "",
                      *[f"- *{s}*" for s in sentences]])
    readme.write_text(replace_between(readme.read_text(), "<!-- quick-sentences:begin -->",
                                      "<!-- quick-sentences:end -->", body))
    shot = screenshot(out / f"offset{offsets[0]}" / "report.html", REPO / "docs" / "quick-report.png")
    print(f"quick figures: {held}/{total} verdicts held; {times}; screenshot {'written' if shot else 'skipped'}")


if __name__ == "__main__":
    main()
