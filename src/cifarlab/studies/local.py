"""How a study's runs are executed on this machine: one after another in this process, or as separate processes,
K at a time per device (``--jobs-per-device``). The Slurm executor is :mod:`cifarlab.studies.slurm`.

Every executor skips complete runs, resumes interrupted ones (a run directory with a summary), starts a run that
begins from another run of the study (``init = "@name"``) only once that run is complete, skips it when that run
did not complete, and prints each run's headline result as it ends (:func:`headline`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.engine.checkpoint import write_json
from cifarlab.engine.rundir import read_json
from cifarlab.errors import CifarlabError
from cifarlab.studies.plan import PlannedRun

Log = Callable[[str], None]
HEADLINE_METRICS = ("test_acc", "linear_acc", "rotation_test_acc")  # the first a run has is its result


def headline(summary: dict[str, Any]) -> str:
    """A run's result in one line: status, its headline accuracy and its training time, e.g.
    ``complete test_acc 52.10% (train 3.2s)``."""
    metric = next((f" {k} {100 * summary[k]:.2f}%" for k in HEADLINE_METRICS if isinstance(summary.get(k), float)),
                  "")
    train = summary.get("train_time_s")
    time_text = f" (train {train:.1f}s)" if isinstance(train, (int, float)) else ""
    return f"{summary.get('status', 'not started')}{metric}{time_text}"


def study_words(message: str) -> str:
    """A run's error as a study's user acts on it: ``cifarlab study`` takes keys through ``--set`` (``--set
    weights=FILE`` applies to every run whose recipe has ``weights``), not ``train``'s flags."""
    return message.replace("--weights ", "--set weights=")


def status(out: Path, name: str) -> str | None:
    """The status in ``out/name/summary.json`` (``None``: the run never started)."""
    return read_json(out / name / "summary.json").get("status")


def dependencies(planned: list[PlannedRun]) -> dict[str, set[str]]:
    """Each run's runs of the same study it starts from (its ``init`` names another planned run's directory)."""
    names = {p.name for p in planned}
    return {p.name: {Path(str(p.keys.get("init", ""))).name} & names for p in planned}


def record_run(out: Path, name: str, **fields: Any) -> None:
    """Merge ``fields`` into ``study.json``'s entry for run ``name`` (only the study's own process writes it)."""
    path = out / "study.json"
    doc = read_json(path)
    runs = doc.setdefault("runs", {})
    runs[name] = {**runs.get(name, {}), **fields}
    write_json(path, doc)


def run_command(run: PlannedRun, resume: bool, nproc: int = 1) -> list[str]:
    """The ``cifarlab train`` command line of a planned run (under ``torchrun`` when it takes several devices)."""
    if nproc > 1:  # one process per device, on this node; torchrun sets the ranks the engine reads
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", "cifarlab.cli"]
    else:
        args = [sys.executable, "-m", "cifarlab.cli"]
    args += ["train", "--recipe", run.recipe]
    for k, v in {**run.keys, "resume": resume}.items():
        if k == "recipe":
            continue
        text = ",".join(str(x) for x in v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else v
        args += ["--set", f"{k}={text}"]
    return args


@dataclass
class Reporter:
    """The study's console lines, all prefixed by its name, and its run counter."""

    study: str
    total: int
    log: Log

    def __call__(self, message: str) -> None:
        self.log(f"[study {self.study}] {message}")

    def ended(self, out: Path, name: str, where: str = "") -> str | None:
        """Print a run's headline result as it ends and record its state in study.json; returns its status."""
        summary = read_json(out / name / "summary.json")
        self(f"{name}: {headline(summary)}{where}")
        record_run(out, name, state=summary.get("status", "not started"))
        return summary.get("status")


def run_sequential(planned: list[PlannedRun], out: Path, say: Reporter) -> list[str]:
    """Every run in order, in this process (a study on one device pays the imports once)."""
    from cifarlab.config import make_config
    from cifarlab.recipes.execute import execute

    failed: list[str] = []
    durations: list[float] = []
    deps = dependencies(planned)
    seen: dict[str, str] = {}  # an error already printed -> the run that met it first (a missing weight: once)
    for i, run in enumerate(planned, 1):
        state = status(out, run.name)
        if deps[run.name] & set(failed):
            say(f"run {i}/{len(planned)}: {run.name} skipped: it starts from {', '.join(deps[run.name])}, which did "
                "not complete")
            failed.append(run.name)
            record_run(out, run.name, state="skipped")
            continue
        if state == "complete":
            say(f"run {i}/{len(planned)}: {run.name} already complete (same config and data), reused")
            record_run(out, run.name, state="complete")
            continue
        remaining = len(planned) - i + 1
        eta = f", ETA {sum(durations) / len(durations) * remaining / 60:.1f} min" if durations else ""
        say(f"run {i}/{len(planned)}: {run.name} ({run.recipe}{', resuming' if state else ''}){eta}")
        t0 = time.perf_counter()
        try:
            execute(make_config(run.recipe, overrides={**run.keys, "resume": bool(state)}))
        except KeyboardInterrupt:  # the study stops here; its run directory says interrupted, a re-run resumes it
            say.ended(out, run.name)
            raise
        except CifarlabError as exc:
            text = study_words(str(exc))
            say(f"run {run.name} did not complete: " + (f"the same error as run {seen[text]}" if text in seen else
                                                         text))
            seen.setdefault(text, run.name)
        except Exception as exc:  # a bug in one run must not stop the others; its summary holds the error
            say(f"run {run.name} failed: {type(exc).__name__}: {exc}")
        if say.ended(out, run.name) != "complete":
            failed.append(run.name)
        durations.append(time.perf_counter() - t0)
    return failed


def device_slots(gpus: list[str] | None, jobs_per_device: int) -> list[tuple[str | None, int]]:
    """(device, slot index) pairs: ``jobs_per_device`` per listed device (a CUDA index or ``cpu``), or that many on
    the one default device when no devices are listed."""
    if jobs_per_device < 1:
        raise CifarlabError(f"jobs_per_device={jobs_per_device}: must be 1 or more")
    return [(g, k) for g in (gpus or [None]) for k in range(jobs_per_device)]


def _env(device: str | None, cpu_slots: int) -> dict[str, str]:
    env = dict(os.environ)
    if device not in (None, "cpu"):
        env["CUDA_VISIBLE_DEVICES"] = device
    if cpu_slots > 1 and "OMP_NUM_THREADS" not in env:  # K CPU processes share the cores instead of each taking all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cpu_slots))
    return env


def run_parallel(planned: list[PlannedRun], out: Path, slots: list[tuple[str | None, int]], say: Reporter
                 ) -> list[str]:
    """One process per slot; a run whose ``init`` is another planned run starts once that run is complete."""
    deps = dependencies(planned)
    done = {p.name for p in planned if status(out, p.name) == "complete"}
    for name in done:
        record_run(out, name, state="complete")
    pending = [p for p in planned if p.name not in done]
    running: dict[tuple[str | None, int], tuple[subprocess.Popen, PlannedRun, Any]] = {}
    failed: list[str] = []
    cpu_slots = sum(1 for device, _ in slots if device in (None, "cpu"))
    while pending or running:
        for slot in slots:
            if slot in running:
                continue
            ready = next((p for p in pending if deps[p.name] <= done), None)
            if ready is None:
                break
            pending.remove(ready)
            logf = open(out / f"{ready.name}.log", "a")
            proc = subprocess.Popen(run_command(ready, resume=status(out, ready.name) is not None),
                                    env=_env(slot[0], cpu_slots), stdout=logf, stderr=subprocess.STDOUT)
            running[slot] = (proc, ready, logf)
            record_run(out, ready.name, state="running", pid=proc.pid)
            where = f" on device {slot[0]}" if slot[0] is not None else ""
            say(f"{len(done) + len(running)}/{say.total} started {ready.name}{where} (slot {slot[1]})")
        for slot, (proc, run, logf) in list(running.items()):
            if proc.poll() is None:
                continue
            logf.close()
            del running[slot]
            if say.ended(out, run.name) == "complete" and proc.returncode == 0:
                done.add(run.name)
            else:
                failed.append(run.name)
                say(f"run {run.name} did not complete (see {out / (run.name + '.log')})")
        for p in [p for p in pending if deps[p.name] & set(failed)]:
            pending.remove(p)
            failed.append(p.name)
            record_run(out, p.name, state="skipped")
            say(f"run {p.name} skipped: it starts from a run that did not complete")
        if running:
            time.sleep(0.2)
    return failed
