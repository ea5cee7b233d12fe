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
from cifarlab.engine import distributed, fingerprint, provenance
from cifarlab.engine.checkpoint import write_json
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CifarlabError, ConfigError, TrainingDiverged
from cifarlab.models import Backbone
from cifarlab.recipes.context import (
    RunClock,
    RunContext,
    data_fingerprint,
    decisions_line,
    load,
    log_stderr,
    resolve,
    write_config,
)
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
    """A run directory that already holds this same run (same fingerprint); the message names keys (Python) or
    flags (CLI)."""

    def __init__(self, path: Path, status: str) -> None:
        self.path, self.status = path, status
        super().__init__(self._text("resume=True", "overwrite=True", "another name="))

    def _text(self, resume: str, overwrite: str, name: str) -> str:
        head = f"run directory {self.path} already holds a run (status {self.status}) with the same config and data"
        if self.status == "complete":
            return f"{head}; with {resume} it returns its result (nothing is left to train); {overwrite} trains it " \
                   f"again; {name} starts another"
        return f"{head}; with {resume} it continues from its last checkpoint; {overwrite} replaces it; {name} starts " \
               "another"

    @property
    def cli_message(self) -> str:
        return self._text("--resume", "--overwrite", "--name NEW")


# why resume cannot honour a change of these keys (any other change is refused with the key named)
RESUME_CANNOT = {"epochs": "the learning-rate schedule spans every epoch, so the epochs already trained are not those "
                           "of a run of the new length"}


class RunChanged(CifarlabError):
    """A run directory that holds a different run: its fingerprint (:mod:`cifarlab.engine.fingerprint`) differs in
    ``changes`` (``epochs 1 -> 3``). Resume continues only the same run, so nothing is trained."""

    def __init__(self, path: Path, status: str, changes: list[str]) -> None:
        self.path, self.status, self.changes = path, status, changes
        super().__init__(self._text("resume=True", "set overwrite=True to replace it (deleting it)", "another name="))

    def _text(self, resume: str, overwrite: str, name: str) -> str:
        why = "".join(f" ({k}: {v})" for k, v in RESUME_CANNOT.items() if any(c.startswith(k + " ") for c in
                                                                                self.changes))
        return (f"run directory {self.path} holds a different run (status {self.status}): {'; '.join(self.changes)}; "
                f"{resume} continues only the same run{why}; {overwrite}, or {name} for the new one")

    @property
    def cli_message(self) -> str:
        return self._text("--resume", "use --overwrite to replace it (deleting it)", "--name NEW")


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
    old = fingerprint.recorded(run.path)
    changes = fingerprint.differences(old, fingerprint.static(cfg)) if old else []
    if changes:
        raise RunChanged(run.path, summary.get("status", "?"), changes)
    if cfg.resume:
        return
    raise RunExists(run.path, summary.get("status", "?"))


def _check_data(cfg: RunConfig, run: RunDir, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Refuse to continue a run whose data parts differ from those it recorded (before its first step)."""
    changes = fingerprint.differences({k: v for k, v in (old or {}).items() if k in fingerprint.DATA_PARTS}, new)
    if changes:
        raise RunChanged(run.path, run.read_summary().get("status", "?"), changes)


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
        old = fingerprint.recorded(run.path) if cfg.resume else None
        if cfg.resume and run.read_summary().get("status") == "complete":
            _check_data(cfg, run, old, data_fingerprint(cfg))
            return RunResult(run.path, run.read_summary())
        before = run.read_summary()
        run.update_summary(recipe=cfg.recipe, model=cfg.model, dataset=cfg.dataset, status="running",
                           started=provenance.now(), error=None, **({"study_series": cfg.series} if cfg.series else {}))
        try:
            loaded = load(cfg, log)
            _check_data(cfg, run, old, fingerprint.data_part(loaded.data.digest, loaded.split, loaded.test_keep))
            prepared_at = time.perf_counter()  # start-up's "prepare" ends here; the model's build is the next part
            model = recipe.build(cfg, loaded.data.num_classes)
            resolved = resolve(cfg, loaded, model)
            write_config(cfg, run, loaded, resolved)
            if distributed.get().is_main:
                log(decisions_line(resolved))
            ctx = RunContext(cfg, run, loaded, resolved, clock, prepared_at, log)
            fields = recipe.run(ctx, model)
        except RunChanged:  # nothing was trained: the directory keeps the summary it had
            if run.writable:
                write_json(run.path / "summary.json", before)
            raise
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
