"""Which of a study's runs its folder already holds, and whether each is still the same run.

A run directory is reused only while its recorded fingerprint (:mod:`cifarlab.engine.fingerprint`) matches the run
the study file now plans: its config (``--set`` included), its dataset, subset and split, its ``init`` run and the
package version. The config parts are compared from the plan; the data parts by loading each dataset once and
drawing the splits (index arrays, no images move). A run that starts from a changed run is changed too. All of it
happens before any run trains; ``--rerun-changed`` moves each changed directory aside (``<name>.replaced-N``,
nothing deleted) so the executors train it as new.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifarlab.config import make_config
from cifarlab.engine import fingerprint
from cifarlab.engine.rundir import REPLACED_MARK, read_json
from cifarlab.errors import CifarlabError
from cifarlab.studies.plan import PlannedRun


@dataclass(frozen=True)
class RunState:
    """A planned run against its folder: ``complete`` (the same run, done), ``resumes`` (the same run, unfinished),
    ``changed`` (a different run is there: ``changes`` says how) or ``new`` (nothing there yet)."""

    name: str
    state: str
    changes: tuple[str, ...] = ()

    def label(self) -> str:
        return f"changed: {'; '.join(self.changes)}" if self.changes else self.state


class StudyChanged(CifarlabError):
    """Runs of a study whose directories hold different runs; nothing was trained."""


def assess(planned: list[PlannedRun], out: Path) -> dict[str, RunState]:
    """Each planned run's state in ``out``, in plan order."""
    by_name = {p.name: p for p in planned}
    states: dict[str, RunState] = {}
    datasets: dict = {}  # each dataset loaded once for all the runs that read it

    def visit(run: PlannedRun) -> RunState:
        if run.name not in states:
            init = Path(str(run.keys.get("init", ""))).name
            dep = visit(by_name[init]) if init in by_name else None  # plan.load_study refuses init cycles
            states[run.name] = _state(run, out, dep, datasets)
        return states[run.name]

    for run in planned:
        visit(run)
    return {p.name: states[p.name] for p in planned}


def _state(run: PlannedRun, out: Path, dep: RunState | None, datasets: dict) -> RunState:
    from cifarlab.recipes.context import data_fingerprint

    path = out / run.name
    summary = read_json(path / "summary.json")
    old = fingerprint.recorded(path)
    if not summary or old is None:  # never started, or stopped before its config was written: nothing to compare
        return RunState(run.name, "new" if not summary else "resumes")
    cfg = make_config(run.recipe, overrides=run.keys)
    now = fingerprint.static(cfg)
    changes = []
    if dep is not None and dep.state in ("changed", "new"):
        changes.append(f"its init run {dep.name} {'changed' if dep.state == 'changed' else 'is not there'}")
        now.pop("init")  # named above; its hash would only repeat it
    changes += fingerprint.differences(old, now)
    if not changes and any(k in old for k in fingerprint.DATA_PARTS):
        changes += fingerprint.differences({k: old[k] for k in fingerprint.DATA_PARTS if k in old},
                                           data_fingerprint(cfg, datasets))
    if changes:
        return RunState(run.name, "changed", tuple(changes))
    return RunState(run.name, "complete" if summary.get("status") == "complete" else "resumes")


def changed_message(study: str, out: Path, states: dict[str, RunState]) -> str:
    """The refusal: every changed run with what changed, and the two ways on."""
    changed = [s for s in states.values() if s.state == "changed"]
    lines = [f"study {study}: {len(changed)} run(s) in {out} differ from what the study file now describes; nothing "
             "was trained:"]
    lines += [f"  run {s.name}: {'; '.join(s.changes)}" for s in changed]
    lines.append(f"re-run them with --rerun-changed (each old run is kept as <name>{REPLACED_MARK}N and left out of "
                 "the report), or give another --out")
    return "\n".join(lines)


def move_aside(out: Path, name: str) -> Path:
    """Move run directory ``out/name`` (and its executor log) to the first free ``out/name.replaced-N``."""
    n = 1
    while (out / f"{name}{REPLACED_MARK}{n}").exists():
        n += 1
    target = out / f"{name}{REPLACED_MARK}{n}"
    (out / name).rename(target)
    log = out / f"{name}.log"
    if log.is_file():
        log.rename(out / f"{target.name}.log")
    return target
