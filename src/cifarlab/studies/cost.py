"""What a study will cost before it runs: each planned run's time and the total on this machine.

Each run's work is counted as its recipe spends it (images x epochs x inputs per image, plus the validation, test
and embedding passes) and priced with seconds per input from :mod:`cifarlab.studies.calibration`: measured on this
device at the run's model, resolution and batch (a few steps, cached), or, with no measurement, from FLOPs and a
machine's throughput table. A study above about an hour asks before it starts (or says so when not interactive) and
names the ``--set`` overrides that would bring it under about ten minutes.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from cifarlab.config import RunConfig, make_config
from cifarlab.errors import ConfigError
from cifarlab.studies import calibration
from cifarlab.studies.plan import load_study

CONFIRM_ABOVE_S = 3600.0  # a study above this asks before it starts
TARGET_S = 600.0  # what the suggested overrides aim under
RUN_START_S = 1.0  # per run besides building the model: the run directory, the dataset read from its cache
ASSUMED = ("assumes: each run alone on this machine, the dataset already decoded, compile off, the report not "
           "included; per-image cost of each pass measured here in a few steps at the run's batch (or the largest "
           "that takes ~0.5 s a step), or FLOPs where marked")
# train, test, classes, side of the datasets a spec names (folder datasets are counted from their files)
KNOWN = {"cifar10": (50000, 10000, 10, 32), "cifar100": (50000, 10000, 100, 32), "stl10": (5000, 8000, 10, 96),
         "stl10+unlabeled": (105000, 8000, 10, 96), "imagenette": (9469, 3925, 10, 160),
         "imagenette:160px": (9469, 3925, 10, 160), "imagenette:320px": (9469, 3925, 10, 320),
         "imagenette:full": (9469, 3925, 10, 320)}
SUGGEST_EPOCHS = (1, 2, 3, 5, 10)
SUGGEST_PER_CLASS = (10, 20, 50, 100, 200, 500)
SUGGEST_TEST_PER_CLASS = (10, 50, 100)


@dataclass(frozen=True)
class Shape:
    """The images a dataset holds: train, test, classes and their side."""

    train: int
    test: int
    classes: int
    side: int


def dataset_shape(spec: str) -> Shape:
    """The train/test counts, classes and side of a dataset spec, without loading it."""
    if spec in KNOWN:
        return Shape(*KNOWN[spec])
    if spec == "synthetic" or spec.startswith("synthetic:"):
        nums = [int(v) for v in spec.split(":")[1:]]
        k, ntr, nte = (nums + [10, 100, 50][len(nums):])[:3]
        return Shape(k * ntr, k * nte, k, 32)
    if spec.startswith("folder:"):
        return _folder_shape(Path(spec.split(":", 1)[1]).expanduser())
    raise ConfigError(f"dataset={spec!r}: no size known to estimate its cost")


def _folder_shape(path: Path) -> Shape:
    """Counts from the file names (a directory's or an archive's), cached by path, size and time."""
    if not path.exists():
        raise ConfigError(f"dataset folder {str(path)!r} does not exist")
    stat = path.stat()
    key = f"folder|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = calibration.read_cache()
    if key not in cache:
        names = _member_names(path)
        counts = {"train": 0, "test": 0, "val": 0}
        classes = set()
        for parts in names:
            split = next((i for i, p in enumerate(parts) if p in counts), None)
            if split is not None and len(parts) > split + 2:
                counts[parts[split]] += 1
                classes.add(parts[split + 1])
        cache[key] = {"train": counts["train"], "test": counts["test"] or counts["val"],
                      "classes": max(len(classes), 1), "side": 32}
        calibration._write_cache(cache)
    c = cache[key]
    return Shape(c["train"], c["test"], c["classes"], c["side"])


def _member_names(path: Path) -> list[tuple[str, ...]]:
    if path.is_dir():
        return [Path(os.path.relpath(os.path.join(d, f), path)).parts for d, _, fs in os.walk(path) for f in fs]
    import tarfile

    with tarfile.open(path) as tar:
        return [Path(m.name).parts for m in tar if m.isfile()]


@dataclass(frozen=True)
class Work:
    """The passes one run makes, as (model, resolution, kind, batch, inputs)."""

    passes: list[tuple[str, int, str, int, float]] = field(default_factory=list)
    what: str = ""


def run_work(cfg: RunConfig, shape: Shape) -> Work:
    """Count a run's passes as its recipe spends them (``recipes/``): training steps at the run's batch (each
    source image becomes 4 rotated inputs for RotNet, or one with ``rotations=random``, and ``views`` views for
    SupCon/SimCLR), a validation pass per epoch, the test pass, and the embeddings of the linear evaluations."""
    recipe = cfg.recipe
    if cfg.per_class:
        used = min(cfg.per_class * shape.classes, shape.train)
    else:
        used = max(1, round(cfg.train_fraction * shape.train))
    n_val = round(used * cfg.val_fraction)
    n_train = used - n_val
    n_test = min(cfg.test_per_class * shape.classes, shape.test) if cfg.test_per_class else \
        round(cfg.test_fraction * shape.test)
    pretrained = recipe in ("linear", "partial", "finetune") and not getattr(cfg, "init", "") and \
        getattr(cfg, "weights", "none") != "none"
    res = cfg.resolution or (_native_size(cfg.model) if pretrained else shape.side)
    batch = min(cfg.batch_size, max(n_train, 1))
    steps = n_train // batch if n_train >= batch else 1
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    fwd_batch = cfg.eval_batch_size
    per_image, eval_per_image = 1, 1
    if recipe == "rotation":
        per_image = 4 if getattr(cfg, "rotations", "all") == "all" else 1
        eval_per_image = 4
    elif recipe in ("supcon", "simclr"):
        per_image = cfg.views
        eval_per_image = cfg.views + (1 if cfg.online_probe else 0)
    tta = 6 if cfg.tta == "on" else 0  # auto is off on the CPU; on a GPU its cost is small beside training
    p: list[tuple[str, int, str, int, float]] = []
    m, epochs = cfg.model, cfg.epochs
    if recipe == "linear" and (cfg.augment in ("auto", "none")) and cfg.cache_embeddings:
        flip = 2 if cfg.flip_features == "on" else 1
        p.append((m, res, "forward", fwd_batch, flip * (n_train + n_val + n_test)))
        what = f"embed {n_train + n_val} + {n_test} images once"
    else:
        kind = {"linear": "forward", "partial": "partial"}.get(recipe, "train")
        if recipe in ("partial", "finetune", "linear") and (recipe == "linear" or cfg.head_init == "linear"):
            p.append((m, res, "forward", fwd_batch, n_train + n_val))  # the LP-FT head's (or the scaler's) embedding
        if epochs:
            p.append((m, res, kind, batch * per_image, epochs * steps * batch * per_image))
            p.append((m, res, "forward", fwd_batch, epochs * n_val * eval_per_image))
        test = n_test * (4 if recipe == "rotation" else 1) + n_test * tta
        if recipe in ("supcon", "simclr", "supcon_ce"):
            test += n_train + n_val + (n_test if recipe == "supcon_ce" else 0)
        if recipe == "rotation":
            test += min(cfg.embed_samples, n_test)
        p.append((m, res, "forward", fwd_batch, test))
        what = (f"{epochs} ep x {n_train} img" + (f" x {per_image}" if per_image > 1 else "") if epochs else
                "no training") + f", val {n_val}, test {n_test}"
    return Work([q for q in p if q[4] > 0], f"{what} @{res}px")


def _native_size(model: str) -> int:
    from cifarlab.models import create_model

    return create_model(model, weights="none").data_config.input_size


@dataclass(frozen=True)
class RunEstimate:
    name: str
    recipe: str
    seconds: float
    sources: tuple[str, ...]
    what: str


@dataclass(frozen=True)
class StudyEstimate:
    runs: list[RunEstimate]
    where: str  # "this machine (<device>)" or the FLOP table's machine

    @property
    def total_s(self) -> float:
        return sum(r.seconds for r in self.runs)


def estimate_runs(runs: list[tuple[str, RunConfig]], device: torch.device | None, machine: str | None = None,
                  measure_missing: bool = True) -> StudyEstimate:
    """Each run's seconds (``runs``: name and resolved config): its passes priced by :func:`calibration.rate`
    (measured on ``device``, or the FLOP table of ``machine``), plus its start (building the model, reading the
    data)."""
    out, shapes = [], {}
    for name, cfg in runs:
        shape = shapes.get(cfg.dataset) or shapes.setdefault(cfg.dataset, dataset_shape(cfg.dataset))
        work = run_work(cfg, shape)
        seconds, sources, build = RUN_START_S, set(), 0.0
        for model, res, kind, batch, inputs in work.passes:
            r = calibration.rate(model, res, kind, batch, device, machine, measure_missing)
            seconds += r.seconds_per_input * inputs
            build = max(build, r.build_s)
            sources.add(r.source)
        out.append(RunEstimate(name, cfg.recipe, seconds + build, tuple(sorted(sources)), work.what))
    where = f"machine '{machine}' (FLOP table)" if machine else \
        f"this machine ({calibration.device_label(device)})" if device is not None else "unknown"
    return StudyEstimate(out, where)


def study_configs(path: str | Path, out: str | Path, overrides: dict[str, Any] | None = None, seed_offset: int = 0
                  ) -> list[tuple[str, RunConfig]]:
    """The planned runs of a study file with ``overrides`` (``--set``) over every run's keys, as resolved configs."""
    adjust = (lambda keys: {**keys, **overrides}) if overrides else None
    _, planned = load_study(path, out, adjust, seed_offset)
    return [(run.name, make_config(run.recipe, overrides=run.keys)) for run in planned]


def run_device(runs: list[tuple[str, RunConfig]]) -> torch.device:
    """The device the runs would take (their ``device`` key, ``auto`` resolved)."""
    from cifarlab.engine.device import resolve_device

    return resolve_device(runs[0][1].device)


def estimate_study(path: str | Path, out: str | Path, overrides: dict[str, Any] | None = None,
                   device: torch.device | None = None, machine: str | None = None, measure_missing: bool = True,
                   seed_offset: int = 0) -> StudyEstimate:
    """The estimate of a study file with ``overrides`` (``--set``) over every run's keys. ``device`` defaults to
    the one runs would take (``device=auto``); ``machine`` names a row of the FLOP table instead."""
    runs = study_configs(path, out, overrides, seed_offset)
    if device is None and machine is None:
        device = run_device(runs)
    return estimate_runs(runs, device, machine, measure_missing)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_lines(est: StudyEstimate) -> list[str]:
    """One line per run, the total, and what the figures assumed (one line)."""
    width = max((len(r.name) for r in est.runs), default=0)
    lines = [f"estimated time on {est.where} (an estimate, not a measurement):"]
    for r in est.runs:
        src = "; ".join(r.sources)
        lines.append(f"  {r.name:<{width}}  {duration(r.seconds):>8}  ({r.what}; {src})")
    lines.append(f"  total: {duration(est.total_s)} for {len(est.runs)} runs")
    lines.append(f"  {ASSUMED}")
    return lines


def suggest_overrides(runs: list[tuple[str, RunConfig]], device: torch.device | None, machine: str | None = None,
                      target_s: float = TARGET_S) -> tuple[dict[str, Any], float] | None:
    """The ``--set`` overrides (epochs, per_class, test_per_class) that keep the most work while the estimate of
    ``runs`` (:func:`study_configs`) stays under ``target_s``, with that estimate. Priced from the cached
    calibrations (nearest batch) or the FLOP table: no new measurement is made. None when no combination gets
    under it. Runs that draw a subset by fraction get ``train_fraction=1`` / ``test_fraction=1`` beside the counts
    (a config takes one or the other)."""
    by_fraction = any(cfg.train_fraction < 1.0 for _, cfg in runs)
    test_by_fraction = any(cfg.test_fraction < 1.0 for _, cfg in runs)
    best: tuple[dict[str, Any], float] | None = None
    for epochs, per_class, test_pc in itertools.product(SUGGEST_EPOCHS, SUGGEST_PER_CLASS, SUGGEST_TEST_PER_CLASS):
        sets: dict[str, Any] = {"epochs": epochs, "per_class": per_class, "test_per_class": test_pc,
                                **({"train_fraction": 1} if by_fraction else {}),
                                **({"test_fraction": 1} if test_by_fraction else {})}
        shrunk = [(name, dataclasses.replace(cfg, **sets)) for name, cfg in runs]
        total = estimate_runs(shrunk, device, machine, measure_missing=False).total_s
        if total < target_s and (best is None or total > best[1]):
            best = (sets, total)
    return best


def set_flags(sets: dict[str, Any]) -> str:
    return " ".join(f"--set {k}={v}" for k, v in sets.items())


def check_budget(est: StudyEstimate, suggestion: tuple[dict[str, int], float] | None, yes: bool,
                 stdin: TextIO | None = None, out: TextIO | None = None) -> bool:
    """Above :data:`CONFIRM_ABOVE_S`: on a terminal ask (True = go on), otherwise say so in one line and go on.
    ``yes`` (``--yes``) skips the question."""
    stdin, out = stdin or sys.stdin, out or sys.stderr
    if est.total_s <= CONFIRM_ABOVE_S:
        return True
    hint = (f"; {set_flags(suggestion[0])} brings it to about {duration(suggestion[1])}" if suggestion else
            "; no --set of epochs/per_class/test_per_class brings it under 10 min here")
    if yes:
        print(f"this study is estimated at {duration(est.total_s)} (--yes: not asking){hint}", file=out, flush=True)
        return True
    if not stdin.isatty():
        print(f"this study is estimated at {duration(est.total_s)}, going on (not a terminal; pass --yes to "
              f"silence){hint}", file=out, flush=True)
        return True
    print(f"this study is estimated at {duration(est.total_s)}{hint}.", file=out, flush=True)
    print("start it anyway? [y/N] ", end="", file=out, flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")


def announce(path: str | Path, out: str | Path, overrides: dict[str, Any] | None = None, seed_offset: int = 0,
             log: Callable[[str], None] | None = None, measure_missing: bool = True
             ) -> tuple[StudyEstimate, list[tuple[str, RunConfig]]]:
    """Print a study's estimate (measuring what the cache lacks); the CLI's first lines and ``--dry-run``. Returns
    it with the runs' configs (for :func:`suggest_overrides`)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    runs = study_configs(path, out, overrides, seed_offset)
    est = estimate_runs(runs, run_device(runs), measure_missing=measure_missing)
    for line in estimate_lines(est):
        log(line)
    return est, runs
