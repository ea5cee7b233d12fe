#!/usr/bin/env python3
"""The same study, the same seeds, run by an earlier commit's code and by this checkout's, side by side.

Issue 23 asks that the run-context redesign leave the figures as they were, within seed noise. This script checks
out ``--before`` into a temporary git worktree, runs that commit's own study file (``--study``, a path inside the
repository) with the old code and then the same file with this checkout's code, each in its own process with its
own data root, and prints one row per arm: test accuracy mean ± sd over the seeds (n), both sides, their difference
and Welch's p (``cifarlab.analysis.stats.welch``, the report's test) where each side has 3 seeds or more; then the mean
seconds of work per run (the summaries' ``train_time_s`` + ``embed_time_s``, or the embedding cache's read where a
run found it cached) on both sides and their ratio. The sides run one after the other, each alone on the machine,
so the seconds are comparable. Each side first checks that ``import cifarlab`` loads its own ``src`` (not an
installed copy), and the script exits non-zero, after the table, when a side's study did not complete.

    CIFARLAB_DATASET=folder:../shared/datasets/cifar10-png.tar.gz \\
        python benchmarks/before_after.py --before 96be85b --study configs/studies/quick.toml [--out /tmp/ba]

Where there is no git history (the GPU machine), ``--before-src`` names the old ``src`` folder, or a ``.tar.gz``
of it such as ``git archive --format=tar.gz 96be85b src`` makes; ``--before`` is then only its label, and
``--study-file`` names the study (benchmarks/gpu_check.sh's ``beforeafter`` mode). Other PYTHONPATH entries (weight
packages) are kept on both sides; only this checkout's ``src`` is swapped out.

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
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from cifarlab.analysis.stats import welch  # noqa: E402

from common import short_commit  # noqa: E402

SEED = re.compile(r"-s\d+$")


def python_path(src: Path) -> str:
    """PYTHONPATH with ``src`` first and this checkout's ``src`` left out (weight packages on it stay)."""
    mine = (REPO / "src").resolve()
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != mine]
    return os.pathsep.join([str(src), *kept])


def imported_from(env: dict[str, str]) -> Path:
    """The folder ``import cifarlab`` loads the package from under ``env``."""
    done = subprocess.run([sys.executable, "-c", "import cifarlab; print(cifarlab.__file__)"], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"cannot import cifarlab with PYTHONPATH={env['PYTHONPATH']}: {done.stderr.strip()[-300:]}")
    return Path(done.stdout.strip()).resolve().parent


def run_study(src: Path, study: Path, out: Path, data: Path) -> tuple[float, int]:
    """``cifarlab study`` with the package at ``src`` (checked: the import must load it from there, not from an
    installed copy), its output in ``out.log``; returns its wall seconds and exit status. A study that fails is
    reported with its log's tail and the other side still runs."""
    env = {**os.environ, "PYTHONPATH": python_path(src), "CIFARLAB_DATA": str(data)}
    package = imported_from(env)
    if package != (src / "cifarlab").resolve():
        sys.exit(f"{out.name}: `import cifarlab` loads {package}, not {src / 'cifarlab'}")
    print(f"{out.name}: the package from {package}", flush=True)
    t0 = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        command = [sys.executable, "-m", "cifarlab.cli", "study", str(study), "--out", str(out), "--no-report"]
        rc = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc:
        tail = out.with_suffix(".log").read_text().splitlines()[-8:]
        print(f"{out.name}: cifarlab study exited {rc}:", *tail, sep="\n  ", file=sys.stderr)
    return time.perf_counter() - t0, rc


def arms(out: Path, key: str = "accuracy") -> dict[str, list[float]]:
    """Run name without its seed suffix -> test accuracies (%) of its complete runs, or with ``key="seconds"``
    the seconds each run spent working: ``train_time_s`` plus its embedding (``embed_time_s``), where a run that
    found its embeddings cached counts the read (``embed_read_s``): this checkout's ``embed_time_s`` on a cache hit
    is the cost the cache saved, 96be85b's the read. Runs without ``train_time_s`` are left out."""
    found: dict[str, list[float]] = {}
    for summary in sorted(out.glob("*/summary.json")):
        s = json.loads(summary.read_text())
        if key == "seconds":
            embed = s.get("embed_read_s" if s.get("embedding_cache") == "hit" else "embed_time_s", 0.0)
            value = None if s.get("train_time_s") is None else s["train_time_s"] + embed
        else:
            acc = s.get("test_acc", s.get("linear_acc"))
            value = None if acc is None else 100 * acc
        if s.get("status") == "complete" and value is not None:
            found.setdefault(SEED.sub("", summary.parent.name), []).append(value)
    return found


def before_tree(args: argparse.Namespace, out: Path) -> tuple[Path, Path | None]:
    """The old code's ``src`` and, where a worktree was made for it, the worktree (to remove)."""
    if not args.before_src:
        tree = Path(tempfile.mkdtemp(prefix="before-", dir=out))
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), args.before], cwd=REPO, check=True,
                       capture_output=True)
        return tree / "src", tree
    given = Path(args.before_src)
    if given.is_dir():
        if not (given / "cifarlab" / "__init__.py").is_file():
            sys.exit(f"--before-src {given}: no cifarlab/__init__.py in it (give the src folder)")
        return given.resolve(), None
    if not given.is_file():
        sys.exit(f"--before-src {given}: no such folder or file")
    unpacked = out / "src-before"
    with tarfile.open(given) as tar:
        tar.extractall(unpacked, filter="data")
    found = [p.parent.parent for p in unpacked.rglob("cifarlab/__init__.py")]  # the folder that holds cifarlab/
    if len(found) != 1:
        sys.exit(f"--before-src {given}: expected one cifarlab package in it, found {len(found)}")
    return found[0].resolve(), None


def cell(values: list[float] | None) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f} (n={len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the earlier commit (only a label with --before-src)")
    ap.add_argument("--before-src", default="", help="the earlier code's src folder or a .tar.gz of it, instead "
                    "of a git worktree of --before")
    ap.add_argument("--study", default="configs/studies/quick.toml", help="the study file inside that commit")
    ap.add_argument("--study-file", default="", help="run this file on both sides instead (an edited copy)")
    ap.add_argument("--now", default="", help="label of this checkout's code; '' = its git commit")
    ap.add_argument("--out", default="/tmp/before-after")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if args.before_src and not args.study_file:
        sys.exit("--before-src needs --study-file (there is no commit to take --study from)")
    now_commit = args.now or short_commit() or "this checkout"
    src, tree = before_tree(args, out)
    try:
        study = Path(args.study_file).resolve() if args.study_file else out / "study.toml"
        if not args.study_file:
            shutil.copy(src.parent / args.study, study)
        sides = {"before": run_study(src, study, out / "before", out / "data-before"),
                 "now": run_study((REPO / "src").resolve(), study, out / "now", out / "data-now")}
    finally:
        if tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False,
                           capture_output=True)
    what = args.study_file or f"{args.study} of {args.before}"
    print(f"study {what}; before = {args.before}'s code ({sides['before'][0]:.0f} s), "
          f"now = {now_commit}'s code ({sides['now'][0]:.0f} s); test accuracy %, mean ± sd over seeds; "
          "seconds of work per run (training + embedding or its cache read), mean")
    for row in table(arms(out / "before"), arms(out / "now"), arms(out / "before", "seconds"),
                     arms(out / "now", "seconds")):
        print(row)
    failed = [side for side, (_, rc) in sides.items() if rc]
    if failed:
        sys.exit(f"the {' and '.join(failed)} side's study did not complete (its log: {out}/<side>.log)")


def table(before: dict, now: dict, before_s: dict, now_s: dict) -> list[str]:
    """The markdown rows: accuracy both sides, difference, Welch p, then seconds of work and their ratio."""
    rows = ["| arm | before | now | now - before | Welch p | work s before | work s now | now / before |",
            "|---|---|---|---|---|---|---|---|"]
    for arm in sorted(set(before) | set(now)):
        b, n = before.get(arm), now.get(arm)
        diff = f"{statistics.mean(n) - statistics.mean(b):+.2f}" if b and n else "–"
        tested = welch(n, b).p_value if b and n else None  # None: under 3 seeds a side, or neither varies
        p = "–" if tested is None else f"{tested:.3f}"
        sb, sn = before_s.get(arm), now_s.get(arm)
        mb, mn = (statistics.mean(sb) if sb else None), (statistics.mean(sn) if sn else None)
        ratio = f"{mn / mb:.2f}x" if mb and mn else "–"
        rows.append(f"| {arm} | {cell(b)} | {cell(n)} | {diff} | {p} | {'–' if mb is None else f'{mb:.1f}'} | "
                    f"{'–' if mn is None else f'{mn:.1f}'} | {ratio} |")
    return rows


if __name__ == "__main__":
    main()
