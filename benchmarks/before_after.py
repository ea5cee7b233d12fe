#!/usr/bin/env python3
"""The same study, the same seeds, run by an earlier commit's code and by this checkout's, side by side.

Issue 23 asks that the run-context redesign leave the figures as they were, within seed noise. This script checks
out ``--before`` into a temporary git worktree, runs that commit's own study file (``--study``, a path inside the
repository) with the old code and then the same file with this checkout's code, each in its own process with its
own data root, and prints one row per arm: test accuracy mean ± sd over the seeds (n), both sides, their difference
and Welch's p (``scipy.stats.ttest_ind(equal_var=False)``) where each side has 3 seeds or more.

    CIFARLAB_DATASET=folder:../shared/datasets/cifar10-png.tar.gz \\
        python benchmarks/before_after.py --before 96be85b --study configs/studies/quick.toml [--out /tmp/ba]

Arms are grouped by run name with the ``-s<seed>`` suffix removed. A key this checkout no longer accepts makes its
side fail with the config error (the old file is then edited by hand and passed as ``--study-file``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = re.compile(r"-s\d+$")


def run_study(src: Path, study: Path, out: Path, data: Path) -> float:
    """``cifarlab study`` with the package at ``src``; returns its wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(src), "CIFARLAB_DATA": str(data)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cifarlab.cli", "study", str(study), "--out", str(out)], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def arms(out: Path) -> dict[str, list[float]]:
    """Run name without its seed suffix -> test accuracies (%) of its complete runs."""
    found: dict[str, list[float]] = {}
    for summary in sorted(out.glob("*/summary.json")):
        s = json.loads(summary.read_text())
        acc = s.get("test_acc", s.get("linear_acc"))
        if s.get("status") == "complete" and acc is not None:
            found.setdefault(SEED.sub("", summary.parent.name), []).append(100 * acc)
    return found


def cell(values: list[float] | None) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f} (n={len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the earlier commit")
    ap.add_argument("--study", default="configs/studies/quick.toml", help="the study file inside that commit")
    ap.add_argument("--study-file", default="", help="run this file on both sides instead (an edited copy)")
    ap.add_argument("--out", default="/tmp/before-after")
    args = ap.parse_args()
    from scipy import stats

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tree = Path(tempfile.mkdtemp(prefix="before-", dir=out))
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), args.before], cwd=REPO, check=True,
                   capture_output=True)
    try:
        study = Path(args.study_file).resolve() if args.study_file else out / "study.toml"
        if not args.study_file:
            shutil.copy(tree / args.study, study)
        walls = {"before": run_study(tree / "src", study, out / "before", out / "data-before"),
                 "now": run_study(REPO / "src", study, out / "now", out / "data-now")}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False,
                       capture_output=True)
    now_commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    before, now = arms(out / "before"), arms(out / "now")
    what = args.study_file or f"{args.study} of {args.before}"
    print(f"study {what}; before = {args.before}'s code ({walls['before']:.0f} s), "
          f"now = {now_commit}'s code ({walls['now']:.0f} s); test accuracy %, mean ± sd over seeds")
    print("| arm | before | now | now - before | Welch p |")
    print("|---|---|---|---|---|")
    for arm in sorted(set(before) | set(now)):
        b, n = before.get(arm), now.get(arm)
        diff = f"{statistics.mean(n) - statistics.mean(b):+.2f}" if b and n else "–"
        p = "–"
        if b and n and len(b) >= 3 and len(n) >= 3:
            test = stats.ttest_ind(n, b, equal_var=False)
            p = "–" if test.pvalue != test.pvalue else f"{test.pvalue:.3f}"  # nan: no variance on either side
        print(f"| {arm} | {cell(b)} | {cell(n)} | {diff} | {p} |")


if __name__ == "__main__":
    main()
