#!/usr/bin/env python3
"""Do the main job's verdicts hold on seed sets nobody tuned on? Run a study (default: the quick study) at K seed
offsets into kept folders, read each report's findings.json, and table every verdict per offset, with the count of
contradictions (one offset calls ``a better``, another ``b better``) and of agreement (identical verdicts over all
pairs of offsets).

Usage (from the repository root, with the lossless copy)::

    CIFARLAB_DATASET=folder:../shared/datasets/cifar10-png.tar.gz \\
        .venv/bin/python benchmarks/verdict_stability.py --offsets 101 203 307 401 503 --out ../runs-stability

``--report-only`` runs nothing: it re-derives every offset's findings from the kept run folders with the current
code (``cifarlab report``, Markdown, no embedding plot), so the table can be redrawn after the statistics change.
Pick the offsets before looking at any of their results, and never the ones the study was designed on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from common import short_commit  # noqa: E402

SHORT = {"a better": "a", "b better": "b", "no significant difference": "ns", "not tested": "nt"}
REDERIVED = "rederived.md"  # --report-only's report; its findings are rederived.findings.json


def folder(out: Path, offset: int) -> Path:
    return out / f"off-{offset}"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cifarlab.cli", *args]


def run_offsets(study: str, out: Path, offsets: list[int], env: dict[str, str], jobs: int) -> dict[int, float]:
    """The study at each ``--seed-offset`` into its kept folder, up to ``jobs`` offsets at once; each offset's wall
    seconds (also kept in its wall.json). A failed study stops the script, naming its offset and log."""
    walls: dict[int, float] = {}
    pending, running = list(offsets), {}
    while pending or running:
        while pending and len(running) < jobs:
            o = pending.pop(0)
            folder(out, o).mkdir(parents=True, exist_ok=True)
            log = (folder(out, o) / "study.log").open("w")
            cmd = cli("study", study, "--out", str(folder(out, o)), "--seed-offset", str(o))
            running[o] = (subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
                          time.perf_counter(), log)
        time.sleep(0.2)
        for o, (proc, t0, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[o]
            if proc.returncode:
                raise SystemExit(f"offset {o}: the study failed (exit {proc.returncode}); see {log.name}")
            walls[o] = time.perf_counter() - t0
            (folder(out, o) / "wall.json").write_text(json.dumps(
                {"offset": o, "wall_s": round(walls[o], 1), "concurrent_offsets": jobs}) + "\n")
    return walls


def rederive(out: Path, offset: int, env: dict[str, str]) -> None:
    """The offset's findings again from its run folders, by the current report code."""
    d = folder(out, offset)
    subprocess.run(cli("report", str(d), "-o", str(d / REDERIVED), "--format", "md", "--embedding", "none",
                       "--progress", "off"), cwd=REPO, env=env, check=True)


def findings(out: Path, offset: int, report_only: bool) -> list[dict]:
    name = REDERIVED.replace(".md", ".findings.json") if report_only else "report.findings.json"
    path = folder(out, offset) / name
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: run the offset first (without --report-only)")
    return json.loads(path.read_text())


def key(entry: dict) -> tuple[str, str, str, str]:
    return entry["question"], entry["a"], entry["b"], entry["metric"]


def cell(entry: dict | None) -> str:
    """'+3.10, p 0.012 (Holm 0.080): ns' ('–' when the offset has no such comparison)."""
    if entry is None:
        return "–"
    p = entry.get("p_value")
    p_text = f", p {p:.3f}" if p is not None else ""
    if entry.get("p_holm") is not None:
        p_text += f" (Holm {entry['p_holm']:.3f})"
    return f"{entry['diff_points']:+.2f}{p_text}: {SHORT.get(entry['verdict'], entry['verdict'])}"


def tally(by_offset: dict[int, list[dict]]) -> dict:
    """Per comparison: its entry at every offset, whether it was called in opposite directions, and how many of its
    offset pairs gave the identical verdict; the totals over all comparisons."""
    by = {o: {key(e): e for e in entries} for o, entries in by_offset.items()}
    keys = list(dict.fromkeys(k for o in by for k in by[o]))
    rows, same_pairs, all_pairs, contradictions = [], 0, 0, 0
    for k in keys:
        verdicts = [by[o][k]["verdict"] if k in by[o] else None for o in by]
        pairs = list(itertools.combinations(verdicts, 2))
        same = sum(a == b and a is not None for a, b in pairs)
        opposite = "a better" in verdicts and "b better" in verdicts
        rows.append({"key": k, "entries": [by[o].get(k) for o in by], "same": same, "pairs": len(pairs),
                     "opposite": opposite})
        same_pairs, all_pairs, contradictions = same_pairs + same, all_pairs + len(pairs), contradictions + opposite
    return {"offsets": list(by), "rows": rows, "same_pairs": same_pairs, "all_pairs": all_pairs,
            "contradictions": contradictions}


def markdown(t: dict, header: str) -> str:
    offs = t["offsets"]
    lines = [header, "",
             f"Contradictions (one offset calls a better, another b better): **{t['contradictions']}**. Identical "
             f"verdict pairs across offsets: **{t['same_pairs']} of {t['all_pairs']}**"
             + (f" ({100 * t['same_pairs'] / t['all_pairs']:.0f}%)." if t["all_pairs"] else "."),
             "Each cell: difference in points (a - b), Welch's p (and the Holm-adjusted p where the report gives it),"
             " and the verdict: a / b = that arm better, ns = no significant difference, nt = not tested.", "",
             "| question | a vs b (metric) | " + " | ".join(f"offset {o}" for o in offs) + " | identical pairs |",
             "|---|---|" + "---|" * len(offs) + "---|"]
    for r in t["rows"]:
        q, a, b, m = r["key"]
        flag = " **opposite**" if r["opposite"] else ""
        lines.append(f"| {q} | {a} vs {b} ({m}) | " + " | ".join(cell(e) for e in r["entries"])
                     + f" | {r['same']} of {r['pairs']}{flag} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offsets", type=int, nargs="+", required=True, help="seed offsets, e.g. 101 203 307 401 503")
    ap.add_argument("--out", default="runs-stability", help="parent of the kept folders off-<offset>")
    ap.add_argument("--study", default="configs/studies/quick.toml")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: re-derive each offset's findings from its kept runs with the current code")
    ap.add_argument("--table", default=None, help="write the markdown table here (default OUT/stability.md)")
    ap.add_argument("--jobs", type=int, default=1, help="offsets run at once (their wall times are then not a "
                                                        "study's own)")
    args = ap.parse_args(argv)
    if len(set(args.offsets)) < 2:
        raise SystemExit("--offsets: give at least two different offsets")
    out = Path(args.out).resolve()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    walls = {}
    if args.report_only:
        for o in args.offsets:
            rederive(out, o, env)
    else:
        walls = run_offsets(args.study, out, args.offsets, env, max(1, args.jobs))
    t = tally({o: findings(out, o, args.report_only) for o in args.offsets})
    how = "re-derived by `--report-only` from the kept runs" if args.report_only else "as the study wrote them"
    wall = ("; wall time per offset" + (f" ({args.jobs} at once)" if args.jobs > 1 else "") + ": "
            + ", ".join(f"{o}: {w:.0f} s" for o, w in sorted(walls.items()))) if walls else ""
    header = (f"`benchmarks/verdict_stability.py --offsets {' '.join(map(str, args.offsets))}` on `{args.study}`, "
              f"commit `{short_commit()}`, dataset `{os.environ.get('CIFARLAB_DATASET', 'cifar10')}`; findings "
              f"{how}{wall}.")
    text = markdown(t, header)
    Path(args.table or out / "stability.md").write_text(text)
    (out / "stability.json").write_text(json.dumps({k: v for k, v in t.items() if k != "rows"}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
