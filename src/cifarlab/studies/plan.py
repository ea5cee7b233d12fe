"""Studies: a TOML file lists runs (recipe + keys, seeds, sweeps); this module turns one into the runs it plans.

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

The runner (``studies/runner.py``) runs a plan through an executor: ``studies/local.py`` (one process after another,
K processes per device) or ``studies/slurm.py`` (one Slurm job per run).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab import config as config_mod
from cifarlab.config import make_config
from cifarlab.errors import ConfigError
from cifarlab.recipes.execute import run_name

SWEEPABLE = ("per_class", "train_fraction", "model", "lr", "epochs")


@dataclass
class PlannedRun:
    name: str
    recipe: str
    keys: dict[str, Any]
    series: str | None


# keys a study sets for each run itself, so ``--set`` may not
STUDY_MANAGED = {"out": "a study's runs go to --out", "name": "each run has its own name (set it in the study file)",
                 "resume": "a study resumes interrupted runs itself", "overwrite": "a study never deletes a run; see "
                 "--rerun-changed"}


def check_overrides(path: str | Path, overrides: dict[str, str], recipes: list[str]) -> None:
    """Each ``--set`` key must be a key of some run's recipe and not one the study manages (one line naming it)."""
    if not overrides:
        return
    try:
        have = {k for r in recipes for k in config_mod.keys(config_mod.config_class(r))}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for key in overrides:
        if key in STUDY_MANAGED:
            raise ConfigError(f"--set {key}=...: {STUDY_MANAGED[key]}")
        if key not in have:
            raise ConfigError(f"--set {key}: {path}: no run's recipe has this key: "
                              + config_mod.unknown_key_message(key, sorted(have), config_mod.RunConfig))


def init_cycle(planned: list[PlannedRun]) -> list[str] | None:
    """A chain of runs that start from each other in a circle (``[a, b, a]``), or None."""
    names = {p.name for p in planned}
    starts = {p.name: Path(str(p.keys.get("init", ""))).name for p in planned}
    starts = {a: b for a, b in starts.items() if b in names}
    for first in starts:
        chain = [first]
        while chain[-1] in starts:
            nxt = starts[chain[-1]]
            if nxt in chain:
                return chain[chain.index(nxt):] + [nxt]
            chain.append(nxt)
    return None


def load_study(path: str | Path, out: str | Path, adjust: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
               seed_offset: int = 0, overrides: dict[str, str] | None = None
               ) -> tuple[dict[str, Any], list[PlannedRun]]:
    """Parse and validate a study file into the runs it describes (every config is checked before any run).

    Args:
        adjust: maps each run's keys to the keys it runs with, after its name is fixed (a smoke test shrinks every
            run this way and keeps the study's names and ``@run`` references).
        seed_offset: added to every run's seeds; ``{seed}`` in names and ``@name`` references follow.
        overrides: ``--set`` keys (``{"epochs": "1"}``, values parsed as ``cifarlab train --set`` parses them): they
            win over ``[defaults]`` and the run tables, in every run whose recipe has the key; a sweep they replace
            is one value, and ``seed`` replaces a run's ``seeds``.
    """
    overrides = overrides or {}
    doc = config_mod.load_toml(path)
    unknown = set(doc) - {"study", "defaults", "runs", "slurm"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; allowed: study, defaults, runs, slurm")
    meta, defaults, entries = doc.get("study", {}), doc.get("defaults", {}), doc.get("runs", [])
    bad = sorted(set(meta) - {"name", "description", "note"})
    if bad:
        raise ConfigError(f"{path}: unknown key(s) {bad} in [study]; allowed: name, description, note")
    if not entries:
        raise ConfigError(f"{path}: no [[runs]] entries")
    recipes = [{**defaults, **e}.get("recipe") for e in entries]
    if None in recipes:
        raise ConfigError(f"{path}: run {recipes.index(None) + 1} has no recipe")
    check_overrides(path, overrides, [str(r) for r in recipes])
    planned = []
    for i, entry in enumerate(entries, 1):
        entry = {**defaults, **entry}
        if overrides:
            own = config_mod.keys(config_mod.config_class(str(entry["recipe"])))
            entry.update({k: v for k, v in overrides.items() if k in own})
        seeds = entry.pop("seeds", [entry.get("seed", 0)])
        if "seed" in overrides:  # one seed for every run, as `train --set seed=N` gives one run
            seeds = [config_mod.build(config_mod.config_class(str(entry["recipe"])), {"seed": overrides["seed"]}).seed]
        if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
            raise ConfigError(f"{path}: run {i}: seeds={seeds!r} must be a list of integers")
        series = entry.pop("series", None)
        template = entry.pop("name", None)
        sweeps = {k: v for k, v in entry.items() if k in SWEEPABLE and isinstance(v, list)}
        for seed, *values in itertools.product([s + seed_offset for s in seeds], *sweeps.values()):
            keys = {**entry, **dict(zip(sweeps, values)), "seed": seed, "out": str(out),
                    **({"series": series} if series else {})}  # the run records its curve when it starts
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
    cycle = init_cycle(planned)
    if cycle:
        raise ConfigError(f"{path}: init cycle: {' -> '.join(cycle)}; a run cannot start from a run that starts "
                          "from it (check the init = \"@...\" keys)")
    return meta, planned
