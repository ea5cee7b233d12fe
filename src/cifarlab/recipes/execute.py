"""The run lifecycle every recipe shares.

``execute(cfg)`` opens (and locks) the run directory, builds the run context once (data on the device, the model
the recipe builds, every ``auto`` resolved, ``config.json``), runs the recipe, and leaves ``summary.json`` with
status ``complete``, ``diverged``, ``failed`` or ``interrupted`` (Ctrl-C) and the message. Only the run
directory writes ``summary.json``, once per state change: ``running`` when the run starts, its end state with the
recipe's fields when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.config import RunConfig
from cifarlab.engine import distributed, provenance
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CifarlabError, ConfigError, TrainingDiverged
from cifarlab.models import Backbone
from cifarlab.recipes.context import RunClock, RunContext, decisions_line, load, log_stderr, resolve, write_config
from cifarlab.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """A regime: its config class, how it builds its model (after the data is loaded, so the seeded initialisation
    comes after the split), and how it runs from the context (returning summary fields)."""

    config_class: type[RunConfig]
    build: Callable[[RunConfig, int], Backbone]
    run: Callable[[RunContext, Backbone], dict[str, Any]]
    description: str


RECIPES: Registry[Recipe] = Registry("recipe")
INTERRUPTED = "interrupted (Ctrl-C); continue from its last checkpoint with --resume (Python: resume=True)"


@dataclass(frozen=True)
class RunResult:
    path: Path
    summary: dict[str, Any]


def run_name(cfg: RunConfig) -> str:
    if cfg.name:
        return cfg.name
    ds = cfg.dataset.split(":", 1)[-1].rstrip("/").split("/")[-1].replace(".tar.gz", "").replace(".tar", "")
    subset = f"-pc{cfg.per_class}" if cfg.per_class else f"-f{cfg.train_fraction:g}" if cfg.train_fraction < 1 else ""
    return f"{cfg.recipe}-{cfg.model.replace(':', '_')}-{ds}{subset}-s{cfg.seed}"


def _open(cfg: RunConfig) -> RunDir:
    name = run_name(cfg)
    if any(c in name for c in "/\\") or name in ("", ".", ".."):
        raise ConfigError(f"name={cfg.name!r}: a run name must not contain '/' or be '.'/'..'")
    return RunDir(Path(cfg.out) / name)


class RunExists(CifarlabError):
    """A run directory that already holds a run; the message names keys (Python) or flags (CLI)."""

    def __init__(self, path: Path, status: str) -> None:
        self.path, self.status = path, status
        super().__init__(f"run directory {path} already holds a run (status {status}); set resume=True to continue "
                         "it, overwrite=True to replace it, or another name=")

    @property
    def cli_message(self) -> str:
        return (f"run directory {self.path} already holds a run (status {self.status}); use --resume to continue "
                "it, --overwrite to replace it, or --name for a new one")


def _check_existing(cfg: RunConfig, run: RunDir, log: Callable[[str], None]) -> None:
    summary = run.read_summary()
    if not summary:
        return
    if cfg.overwrite:
        run.clear()
        return
    never_trained = summary.get("status") in ("failed", "interrupted") and not run.last_ckpt.is_file()
    if never_trained:  # a run that ended before its first checkpoint holds nothing to keep or resume
        log(f"replacing {run.path}: its last attempt ended before training ({summary.get('error')})")
        run.clear()
        return
    if cfg.resume:
        return
    raise RunExists(run.path, summary.get("status", "?"))


def execute(cfg: RunConfig, log: Callable[[str], None] = log_stderr) -> RunResult:
    """Run ``cfg.recipe`` into its run directory and return the final summary (raises on failure)."""
    clock = RunClock.start()
    distributed.setup()
    recipe: Recipe = RECIPES.get(cfg.recipe)
    if not isinstance(cfg, recipe.config_class):
        raise ConfigError(f"recipe {cfg.recipe!r} needs a {recipe.config_class.__name__}")
    with _open(cfg) as run:
        if run.writable:
            _check_existing(cfg, run, log)
        distributed.barrier()  # other ranks start once rank 0 has cleared or claimed the directory
        if cfg.resume and run.read_summary().get("status") == "complete":
            return RunResult(run.path, run.read_summary())
        run.update_summary(recipe=cfg.recipe, model=cfg.model, dataset=cfg.dataset, status="running",
                           started=provenance.now(), error=None, **({"study_series": cfg.series} if cfg.series else {}))
        try:
            loaded = load(cfg, log)
            prepared_at = time.perf_counter()  # start-up's "prepare" ends here; the model's build is the next part
            model = recipe.build(cfg, loaded.data.num_classes)
            resolved = resolve(cfg, loaded, model)
            write_config(cfg, run, loaded, resolved)
            if distributed.get().is_main:
                log(decisions_line(resolved))
            ctx = RunContext(cfg, run, loaded, resolved, clock, prepared_at, log)
            fields = recipe.run(ctx, model)
        except TrainingDiverged as exc:
            run.update_summary(status="diverged", error=str(exc))
            raise
        except CifarlabError as exc:
            run.fail(str(exc))
            raise
        except KeyboardInterrupt:  # not a failure: the run continues from its last checkpoint with resume
            run.update_summary(status="interrupted", error=INTERRUPTED)
            raise
        except Exception as exc:
            run.fail(f"{type(exc).__name__}: {exc}")
            raise
        summary = run.update_summary(**fields, started_from=resolved.started_from, status="complete",
                                     finished=provenance.now())
        return RunResult(run.path, summary)
