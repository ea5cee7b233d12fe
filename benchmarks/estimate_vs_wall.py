"""The study cost estimate (cifarlab.studies.cost) against the measured wall time of small studies on this machine.

For each study file (default: benchmarks/cost_studies/*.toml) it prints the estimate (calibrating what the cache
lacks, before the clock starts), then runs ``cifarlab study FILE --out TMP --no-report --yes`` in a subprocess and
times it, and prints one markdown row: study, runs, estimate, wall, estimate / wall. The report is not part of the
estimate, so it is not run.

    PYTHONPATH=src python benchmarks/estimate_vs_wall.py [STUDY.toml ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cifarlab.studies import cost

from common import REPO, machine


def compare(study: Path, tmp: Path) -> tuple[int, float, float]:
    """(runs, estimated s, measured s) of one study run by the CLI into a fresh folder (the estimate calibrates
    what the cache lacks before the clock starts)."""
    out = tmp / study.stem
    est = cost.estimate_study(study, out)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cifarlab", "study", str(study), "--out", str(out), "--no-report", "--yes"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return len(est.runs), est.total_s, time.perf_counter() - t0


def main(argv: list[str]) -> None:
    studies = [Path(a) for a in argv] or sorted((REPO / "benchmarks" / "cost_studies").glob("*.toml"))
    print(f"machine: {machine()}")
    print("| study | runs | estimate s | wall s | estimate / wall | load avg (1 min) before / after |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for study in studies:
            before = os.getloadavg()[0]
            n, est, wall = compare(study, Path(tmp))
            name = study.resolve().relative_to(REPO)
            print(f"| {name} | {n} | {est:.0f} | {wall:.0f} | {est / wall:.2f} | {before:.1f} / "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
