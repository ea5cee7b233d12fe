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

    [slurm]                  # optional: each job's Slurm options for --executor slurm (studies/slurm.py)
    partition = "gpu"
    time = "2:00:00"
    gpus_per_job = 1

How runs are executed (one process after another, K processes per device, Slurm jobs): ``studies/local.py`` and
``studies/slurm.py``; the study file and its plan: ``studies/plan.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cifarlab import config as config_mod
from cifarlab.engine.checkpoint import write_json
from cifarlab.engine.rundir import read_json
from cifarlab.errors import ConfigError
from cifarlab.studies import local as executors
from cifarlab.studies import reuse
from cifarlab.studies.plan import load_study

EXECUTORS = ("local", "slurm")


def slurm_settings(path: str | Path, overrides: dict[str, Any] | None = None) -> Any:
    """The study file's ``[slurm]`` table with ``overrides`` (CLI flags) on top, as a
    :class:`cifarlab.studies.slurm.SlurmSettings`."""
    from cifarlab.studies import slurm

    return slurm.settings(config_mod.load_toml(path).get("slurm"), str(path), overrides)


def plan_lines(path: str | Path, out: str | Path, seed_offset: int = 0, executor: str = "local",
               slurm: dict[str, Any] | None = None, overrides: dict[str, str] | None = None) -> str:
    """The runs a study describes, one line each with its state in ``out`` (complete, resumes, new, or changed with
    what changed: :mod:`cifarlab.studies.reuse`); for Slurm, also what would be submitted and each job's options."""
    _check_executor(executor)
    meta, planned = load_study(path, out, seed_offset=seed_offset, overrides=overrides)
    states = reuse.assess(planned, Path(out))
    lines = [f"study {meta.get('name', Path(path).stem)}: {len(planned)} runs into {out}"
             + (f" (seed offset {seed_offset})" if seed_offset else "")
             + (f" (--set {' '.join(f'{k}={v}' for k, v in overrides.items())})" if overrides else "")]
    for i, run in enumerate(planned, 1):
        status = states[run.name].label()
        init = f" init={Path(run.keys['init']).name}" if run.keys.get("init") else ""
        extra = "".join(f" {k}={run.keys[k]}" for k in ("model", "per_class", "seed", "epochs") if k in run.keys)
        lines.append(f"{i:>3}. [{status}] {run.name} ({run.recipe}{init}{extra})")
    if executor == "slurm":
        from cifarlab.studies import slurm as slurm_mod

        lines += slurm_mod.plan_lines(planned, Path(out), slurm_settings(path, slurm))
    return "\n".join(lines)


def _record_overrides(run_dir: Path, study_file: str, overrides: dict[str, str]) -> None:
    config = read_json(run_dir / "config.json")
    if config and config.get("study") != {"file": study_file, "overrides": overrides}:
        write_json(run_dir / "config.json", {**config, "study": {"file": study_file, "overrides": overrides}})


def _check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r}: allowed: {', '.join(EXECUTORS)}")


@dataclass(frozen=True)
class StudyOptions:
    """How a study runs.

    Attributes:
        report: write OUT/report.html (and its findings.json) at the end.
        gpus: local executor: CUDA device indices (or ``cpu``) to run runs on concurrently, as separate processes.
        jobs_per_device: local executor: runs at once per listed device (or on the one device when none are
            listed); 1 with no ``gpus`` runs everything in this process. A run that starts from another run of the
            study (``init = "@name"``) waits for it.
        seed_offset: added to every run's seeds (recorded in study.json).
        executor: ``local`` (this machine) or ``slurm`` (one Slurm job per run, :mod:`cifarlab.studies.slurm`).
        slurm: Slurm settings over the study file's ``[slurm]`` table (keys of ``SlurmSettings``).
        wait: Slurm: follow the jobs to their end and build the report (False: return once submitted).
        submitit_executor: Slurm: a submitit executor to submit with instead of a ``SlurmExecutor`` (tests).
        equivalence_margin: the report's TOST margin in points where no difference is called (None: no TOST).
        overrides: ``--set`` keys over ``[defaults]`` and the run tables (recorded in study.json and in each run's
            config.json).
        rerun_changed: re-run the runs whose directories hold a different run (and the runs that start from them),
            moving the old directories aside; without it such a study stops before training anything.
        arms: run only the runs whose ``arm`` key is one of these (e.g. ``("course recipe",)``); empty = every run.
    """

    report: bool = True
    gpus: list[str] | None = None
    jobs_per_device: int = 1
    seed_offset: int = 0
    executor: str = "local"
    slurm: dict[str, Any] | None = None
    wait: bool = True
    submitit_executor: Any = None
    equivalence_margin: float | None = None
    overrides: dict[str, str] | None = None
    rerun_changed: bool = False
    arms: tuple[str, ...] = ()


def run_study(path: str | Path, out: str | Path, options: StudyOptions | None = None, log=None,
              adjust: Callable[[dict[str, Any]], dict[str, Any]] | None = None, **changes: Any
              ) -> tuple[list[str], Path | None]:
    """Run (or submit) every planned run not yet complete; returns (names of runs that did not complete, report).
    ``options`` (a :class:`StudyOptions`), with ``changes`` to its fields by name (``report=False``, ...)."""
    o = replace(options or StudyOptions(), **changes)
    report, gpus, jobs_per_device, seed_offset = o.report, o.gpus, o.jobs_per_device, o.seed_offset
    executor, slurm, wait, submitit_executor = o.executor, o.slurm, o.wait, o.submitit_executor
    _check_executor(executor)
    if executor == "slurm" and (gpus or jobs_per_device > 1):
        raise ConfigError("gpus / jobs_per_device place runs on this machine's devices (executor=local); with "
                          "executor=slurm each run is a job: set gpus_per_job in [slurm] or --gpus-per-job")
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    overrides = o.overrides or {}
    meta, planned = load_study(path, out, adjust, seed_offset, overrides)
    if o.arms:  # a laptop runs one arm of a course study; the others stay unplanned, not failed
        known = sorted({str(p.keys.get("arm", "")) for p in planned})
        if not set(o.arms) <= set(known):
            raise ConfigError(f"{path}: arms={list(o.arms)}; this study's arms: {', '.join(map(repr, known))}")
        planned = [p for p in planned if p.keys.get("arm", "") in o.arms]
    out = Path(out)
    study_name = meta.get("name", Path(path).stem)
    settings = slurm_settings(path, slurm) if executor == "slurm" else None
    states = reuse.assess(planned, out)  # before anything is written or trained
    changed = [s.name for s in states.values() if s.state == "changed"]
    if changed and not o.rerun_changed:
        raise reuse.StudyChanged(reuse.changed_message(study_name, out, states))
    out.mkdir(parents=True, exist_ok=True)
    say = executors.Reporter(study_name, len(planned), log)
    study_doc = read_json(out / "study.json")
    replaced = study_doc.get("replaced", {})
    for name in changed:
        moved = reuse.move_aside(out, name)
        replaced.setdefault(name, []).append(moved.name)
        say(f"{name} changed ({'; '.join(states[name].changes)}): the old run is kept as {moved.name}; re-running")
    names = {p.name for p in planned} - set(changed)
    earlier = study_doc.get("runs", {})  # job ids of an earlier submission are kept
    # what the report says about the study as a whole (its budget, what its numbers are and are not), and how it ran
    write_json(out / "study.json", {
        "name": study_name, "file": str(path), **{k: meta[k] for k in ("description", "note") if k in meta},
        "seed_offset": seed_offset, "overrides": overrides, "executor": executor, "jobs_per_device": jobs_per_device,
        **({"slurm": asdict(settings)} if settings else {}), **({"replaced": replaced} if replaced else {}),
        "runs": {n: v for n, v in earlier.items() if n in names}})
    if settings is not None:
        from cifarlab.studies.slurm import run_slurm

        failed = run_slurm(planned, out, settings, say, submitit_executor, wait)
        if not wait:
            say(f"submitted; follow with squeue, then: cifarlab report {out}")
            return failed, None
    elif gpus or jobs_per_device > 1:
        failed = executors.run_parallel(planned, out, executors.device_slots(gpus, jobs_per_device), say)
    else:
        failed = executors.run_sequential(planned, out, say)
    for run in planned:  # each run's config.json says which command-line keys the study set
        _record_overrides(out / run.name, str(path), overrides)
    if failed:
        say(f"{len(failed)} of {len(planned)} runs did not complete:")
        groups: dict[tuple[str, str], list[str]] = {}  # one line per distinct cause (a missing weight file: once)
        for name in failed:
            s = read_json(out / name / "summary.json")
            status = s.get("status", "skipped")
            why = s.get("error") or "it starts from a run that did not complete"
            groups.setdefault((status, executors.study_words(why.removeprefix(status + ": "))), []).append(name)
        for (status, why), group in groups.items():
            log(f"  {', '.join(group)} ({status}): {why}")
    report_path = None
    if report:
        from cifarlab.analysis.report import build

        report_path = build(out, "html", out / "report.html", equivalence_margin=o.equivalence_margin)
        say(f"report: {report_path}")
    return failed, report_path
