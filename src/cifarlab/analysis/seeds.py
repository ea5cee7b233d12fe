"""How many seeds per arm a report's comparisons need: from pilot runs already in a folder, for each comparison
the report would make (``findings.answer``, the report's own discovery), the seeds per arm at which Welch's t-test
detects a given difference with 80% power, at each arm's sample standard deviation over its pilot seeds."""

from __future__ import annotations

import math
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path

from cifarlab.analysis import findings
from cifarlab.analysis.runs import find_runs
from cifarlab.analysis.stats import ALPHA, MIN_SEEDS, POWER, seeds_needed
from cifarlab.errors import CifarlabError


@dataclass(frozen=True)
class Need:
    """One comparison's answer: the pilot's seeds and sds (points; None under 2 seeds), and the seeds per arm
    (None with ``why`` when it cannot be said)."""

    question: str
    a: str
    b: str
    metric: str
    pilot: tuple[int, int]
    sd_points: tuple[float | None, float | None]
    seeds: int | None
    why: str = ""


def _sd(values: list[float]) -> float | None:
    return 100 * statistics.stdev(values) if len(values) >= 2 else None


def needs(root: str | Path, detect_points: float) -> tuple[list[Need], float]:
    """(one :class:`Need` per comparison the report of ``root`` makes, the alpha used): alpha is 0.05 over the
    number of comparisons, Holm's first step, the level the report's family asks of a lone real difference."""
    if not (math.isfinite(detect_points) and detect_points > 0):
        raise CifarlabError(f"--detect {detect_points!r}: expected a positive difference in points")
    runs = find_runs(root)
    if not runs:
        raise CifarlabError(f"no run directories (with summary.json) under {root}")
    stated = [(f.key, s) for f in findings.answer(runs) for s in f.comparisons]
    alpha = ALPHA / max(len(stated), 1)
    out = []
    for question, s in stated:
        c = s.comparison
        sa, sb = _sd(c.a_values), _sd(c.b_values)
        pilot = (len(c.a_values), len(c.b_values))
        seeds, why = None, ""
        if sa is None or sb is None:
            why = "no sd: an arm has fewer than 2 pilot seeds (run at least 2 to estimate it)"
        elif sa == 0 and sb == 0:
            why = "no spread in the pilot: neither arm varies over its seeds (run more seeds to estimate it)"
        else:
            seeds = seeds_needed(detect_points, sa, sb, alpha, POWER)
            why = "" if seeds is not None else "more than 10,000 seeds per arm"
        out.append(Need(question, str(s.a), str(s.b), str(s.metric), pilot, (sa, sb), seeds, why))
    return out, alpha


def table(root: str | Path, detect_points: float) -> str:
    """The answer of ``cifarlab seeds RUNS --detect POINTS`` as text: what was computed, then one row per
    comparison."""
    rows, alpha = needs(root, detect_points)
    if not rows:
        return f"no comparisons: the runs under {root} answer no question that compares two arms"
    m = len(rows)
    head = [f"Seeds per arm for Welch's t-test to detect a difference of {detect_points:.2f} points with "
            f"{POWER:.0%} power (two-sided, alpha {ALPHA}/{m} = {alpha:.4g}: Holm's first step over the report's "
            f"{m} comparison{'s' if m > 1 else ''}), the same number in both arms and at least {MIN_SEEDS} (the "
            "report tests no arm with fewer).",
            f"sd: each arm's sample standard deviation (n - 1) over its pilot seeds in {root}, in points. It is a "
            "pilot estimate: with few seeds the true sd can be well above it, and the seeds needed with it.", ""]
    cells = [("question", "a vs b (metric)", "pilot seeds", "sd a, sd b", "seeds per arm")]
    for r in rows:
        sd = ", ".join("–" if v is None else f"{v:.2f}" for v in r.sd_points)
        cells.append((r.question, f"{r.a} vs {r.b} ({r.metric})", f"{r.pilot[0]}, {r.pilot[1]}", sd,
                      str(r.seeds) if r.seeds is not None else r.why))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1] for row in cells]
    head = [textwrap.fill(h, 120) for h in head]
    return "\n".join(head + lines[:1] + ["-" * len(lines[0])] + lines[1:])
