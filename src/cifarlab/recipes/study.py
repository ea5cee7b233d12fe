"""Studies: a TOML file lists runs (recipe + keys, seeds, sweeps); ``run_study`` runs them in order into one
folder, skips complete runs, resumes interrupted ones, and ends by writing the report.

Study file::

    [study]
    name = "quick"
    description = "..."
    note = "..."             # shown at the top of the report (e.g. the budget, what the numbers are not)

    [defaults]               # keys applied to every run (a run's own keys win)
    per_class = 100

    [[runs]]
    recipe = "rotation"
    name = "rot-s{seed}"     # optional; {seed}, {per_class} and any key of the run are filled in
    seeds = [0, 1]           # one run per seed
    epochs = 5

    [[runs]]
    recipe = "finetune"
    init = "@rot-s{seed}"    # '@NAME' = the run directory of another run of this study
    per_class = [20, 100]    # a list sweeps: one run per value
    series = "rotation + finetune"   # groups runs into a curve of accuracy vs per_class in the report
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab import config as config_mod
from cifarlab.config import make_config
from cifarlab.engine.checkpoint import write_json
from cifarlab.engine.rundir import read_json
from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.recipes.execute import execute, run_name

SWEEPABLE = ("per_class", "train_fraction", "model", "lr", "epochs")


@dataclass
class PlannedRun:
    name: str
    recipe: str
    keys: dict[str, Any]
    series: str | None


def load_study(path: str | Path, out: str | Path, adjust: Callable[[dict[str, Any]], dict[str, Any]] | None = None
               ) -> tuple[dict[str, Any], list[PlannedRun]]:
    """Parse and validate a study file into the runs it describes (every config is checked before any run).

    ``adjust`` maps each run's keys to the keys it runs with, after its name is fixed (a smoke test shrinks every
    run this way and keeps the study's names and ``@run`` references)."""
    doc = config_mod.load_toml(path)
    unknown = set(doc) - {"study", "defaults", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; allowed: study, defaults, runs")
    meta, defaults, entries = doc.get("study", {}), doc.get("defaults", {}), doc.get("runs", [])
    bad = sorted(set(meta) - {"name", "description", "note"})
    if bad:
        raise ConfigError(f"{path}: unknown key(s) {bad} in [study]; allowed: name, description, note")
    if not entries:
        raise ConfigError(f"{path}: no [[runs]] entries")
    planned = []
    for i, entry in enumerate(entries, 1):
        entry = {**defaults, **entry}
        if "recipe" not in entry:
            raise ConfigError(f"{path}: run {i} has no recipe")
        seeds = entry.pop("seeds", [entry.get("seed", 0)])
        series = entry.pop("series", None)
        template = entry.pop("name", None)
        sweeps = {k: v for k, v in entry.items() if k in SWEEPABLE and isinstance(v, list)}
        for seed, *values in itertools.product(seeds, *sweeps.values()):
            keys = {**entry, **dict(zip(sweeps, values)), "seed": seed, "out": str(out)}
            fill = {k: v for k, v in keys.items() if isinstance(v, (str, int, float))}
            if isinstance(keys.get("init"), str) and keys["init"].startswith("@"):
                keys["init"] = str(Path(out) / keys["init"][1:].format(**fill))
            if template:
                keys["name"] = template.format(**fill)
            if adjust is not None:
                keys = {**adjust(keys), "name": keys.get("name") or run_name(make_config(keys["recipe"],
                                                                                          overrides=keys))}
            try:
                cfg = make_config(keys["recipe"], overrides=keys)
            except ConfigError as exc:
                raise ConfigError(f"{path}: run {i} ({keys['recipe']}): {exc}") from None
            planned.append(PlannedRun(run_name(cfg), keys["recipe"], keys, series))
    names = [p.name for p in planned]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: several runs would share the run directory name(s) {dupes}; give them names")
    return meta, planned


def plan_lines(path: str | Path, out: str | Path) -> str:
    meta, planned = load_study(path, out)
    lines = [f"study {meta.get('name', Path(path).stem)}: {len(planned)} runs into {out}"]
    for i, run in enumerate(planned, 1):
        status = _status(Path(out), run.name) or "to run"
        init = f" init={Path(run.keys['init']).name}" if run.keys.get("init") else ""
        extra = "".join(f" {k}={run.keys[k]}" for k in ("model", "per_class", "seed", "epochs") if k in run.keys)
        lines.append(f"{i:>3}. [{status}] {run.name} ({run.recipe}{init}{extra})")
    return "\n".join(lines)


def run_study(path: str | Path, out: str | Path, report: bool = True, log=None, gpus: list[str] | None = None,
              adjust: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> tuple[list[str], Path | None]:
    """Run every planned run not yet complete; returns (failed run names, report path).

    Args:
        gpus: run independent runs concurrently, one process per entry (a CUDA device index, or ``cpu``);
            a run that starts from another run of the study (``init = "@name"``) waits for it.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    meta, planned = load_study(path, out, adjust)
    Path(out).mkdir(parents=True, exist_ok=True)
    study_name = meta.get("name", Path(path).stem)
    # what the report says about the study as a whole (its budget, what its numbers are and are not)
    write_json(Path(out) / "study.json", {"name": study_name, "file": str(path), **{
        k: meta[k] for k in ("description", "note") if k in meta}})
    if gpus:
        failed = _run_parallel(planned, Path(out), gpus, study_name, log)
    else:
        failed = _run_sequential(planned, Path(out), study_name, log)
    if failed:
        log(f"[study {study_name}] {len(failed)} of {len(planned)} runs did not complete:")
        for name in failed:
            s = read_json(Path(out) / name / "summary.json")
            status = s.get("status", "skipped")
            why = s.get("error") or "it starts from a run that did not complete"
            log(f"  {name} ({status}): {why.removeprefix(status + ': ')}")
    report_path = None
    if report:
        from cifarlab.analysis.report import build

        report_path = build(out, "html", Path(out) / "report.html")
        log(f"[study {study_name}] report: {report_path}")
    return failed, report_path


def _status(out: Path, name: str) -> str | None:
    return read_json(out / name / "summary.json").get("status")


def _tag_series(out: Path, run: PlannedRun) -> None:
    if run.series:
        summary = out / run.name / "summary.json"
        write_json(summary, {**read_json(summary), "study_series": run.series})


def _run_sequential(planned: list[PlannedRun], out: Path, study_name: str, log) -> list[str]:
    failed, durations = [], []
    names = {p.name for p in planned}
    for i, run in enumerate(planned, 1):
        run_dir = Path(out) / run.name
        status = read_json(run_dir / "summary.json").get("status")
        source = Path(str(run.keys.get("init", ""))).name
        if source in names and source in failed:
            log(f"[study {study_name}] run {i}/{len(planned)}: {run.name} skipped: it starts from {source}, which "
                "did not complete")
            failed.append(run.name)
            continue
        remaining = len(planned) - i + 1
        eta = f", ETA {sum(durations) / len(durations) * remaining / 60:.1f} min" if durations else ""
        if status == "complete":
            log(f"[study {study_name}] run {i}/{len(planned)}: {run.name} already complete, skipped")
            continue
        log(f"[study {study_name}] run {i}/{len(planned)}: {run.name} ({run.recipe}"
            f"{', resuming' if status else ''}){eta}")
        keys = {**run.keys, "resume": bool(status)}
        t0 = time.perf_counter()
        try:
            execute(make_config(run.recipe, overrides=keys))
            _tag_series(out, run)
        except CifarlabError as exc:
            log(f"[study {study_name}] run {run.name} did not complete: {exc}")
            failed.append(run.name)
        except Exception as exc:  # a bug in one run must not stop the others; its summary holds the error
            log(f"[study {study_name}] run {run.name} failed: {type(exc).__name__}: {exc}")
            failed.append(run.name)
        durations.append(time.perf_counter() - t0)
    return failed


def _command(run: PlannedRun, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "cifarlab.cli", "train", "--recipe", run.recipe]
    for k, v in {**run.keys, "resume": resume}.items():
        if k == "recipe":
            continue
        text = ",".join(str(x) for x in v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else v
        args += ["--set", f"{k}={text}"]
    return args


def _run_parallel(planned: list[PlannedRun], out: Path, gpus: list[str], study_name: str, log) -> list[str]:
    """One process per device slot; a run whose ``init`` is another planned run starts after that run."""
    import os
    import subprocess

    names = {p.name for p in planned}
    deps = {p.name: {Path(str(p.keys.get("init", ""))).name} & names for p in planned}
    done = {p.name for p in planned if _status(out, p.name) == "complete"}
    pending = [p for p in planned if p.name not in done]
    running: dict[str, tuple[subprocess.Popen, PlannedRun, object]] = {}
    failed: list[str] = []
    total = len(planned)
    while pending or running:
        for slot in gpus:
            if slot in running:
                continue
            ready = next((p for p in pending if deps[p.name] <= done), None)
            if ready is None:
                break
            pending.remove(ready)
            env = dict(os.environ)
            if slot != "cpu":
                env["CUDA_VISIBLE_DEVICES"] = slot
            logf = open(out / f"{ready.name}.log", "a")
            proc = subprocess.Popen(_command(ready, resume=_status(out, ready.name) is not None), env=env,
                                    stdout=logf, stderr=subprocess.STDOUT)
            running[slot] = (proc, ready, logf)
            log(f"[study {study_name}] {len(done) + len(running)}/{total} started {ready.name} on {slot}")
        for slot, (proc, run, logf) in list(running.items()):
            if proc.poll() is None:
                continue
            logf.close()
            del running[slot]
            if proc.returncode == 0 and _status(out, run.name) == "complete":
                _tag_series(out, run)
                done.add(run.name)
                log(f"[study {study_name}] {len(done)}/{total} complete: {run.name}")
            else:
                failed.append(run.name)
                log(f"[study {study_name}] run {run.name} failed (see {out / (run.name + '.log')})")
        blocked = [p for p in pending if deps[p.name] & set(failed)]
        for p in blocked:
            pending.remove(p)
            failed.append(p.name)
            log(f"[study {study_name}] run {p.name} skipped: it starts from a failed run")
        if running:
            time.sleep(0.5)
    return failed
