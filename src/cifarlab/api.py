"""The Python API behind every CLI action, for notebooks and scripts.

Example::

    from cifarlab import api
    cfg = api.make_config("scratch", overrides={"dataset": "synthetic", "epochs": 2})
    result = api.train(cfg)
    print(result.summary["test_acc"])
"""

from __future__ import annotations

from typing import Any

from cifarlab import config as config_mod
from cifarlab.config import RunConfig, make_config
from cifarlab.recipes import RECIPES, RunResult, execute
from cifarlab.studies.budget import Budget, stand_in_weights

__all__ = ["make_config", "train", "report", "seeds", "study", "study_plan", "bench", "keys_help", "recipes_help",
           "recipe_names", "model_names", "models_help", "config_class", "load_run", "load_study", "Budget",
           "stand_in_weights"]


def recipe_names() -> list[str]:
    return RECIPES.names()


def config_class(recipe: str) -> type[RunConfig]:
    return RECIPES.get(recipe).config_class


def model_names() -> list[str]:
    from cifarlab.models import MODELS

    return MODELS.names()


def train(cfg: RunConfig) -> RunResult:
    """Run one regime into ``cfg.out/<name>``; returns the run directory and its summary."""
    return execute(cfg)


def report(runs_dir: str, out: str = "report.html", fmt: str = "html", embedding: str = "tsne",
           progress: str = "auto", figures: str = "first-seed", equivalence_margin: float | None = None) -> str:
    """Write an HTML (self-contained), Markdown or PDF (``fmt="pdf"``, needs WeasyPrint: the ``pdf`` extra) report of
    every run under ``runs_dir``, and ``OUT.findings.json``
    (every comparison it states) beside it. ``progress``: auto (only on a terminal), on or off. ``figures``:
    first-seed (each arm's figures drawn for its lowest seed) or all (every run's). ``equivalence_margin``: points;
    where no difference is called, a TOST verdict within ± this."""
    from cifarlab.analysis.report import build

    return str(build(runs_dir, fmt, out, embedding, progress=progress, figures=figures,
                     equivalence_margin=equivalence_margin))


def seeds(runs_dir: str, detect_points: float) -> str:
    """A table: for each comparison the report of ``runs_dir`` makes, the seeds per arm Welch's t-test needs to
    detect ``detect_points`` with 80% power, at the standard deviations of the pilot runs already there."""
    from cifarlab.analysis.seeds import table

    return table(runs_dir, detect_points)


def load_run(path: str):
    """One run directory as a :class:`cifarlab.analysis.results.RunResults`: its summary and config, the report's
    figures of it (``curves()``, ``confusion()``, ``per_class()``, ``mistakes()``, ``embedding()``) and the arrays
    behind them (``history()``, ``confusion_matrix()``, ``per_class_accuracy()``, ``misclassified()``,
    ``projection()``)."""
    from cifarlab.analysis.results import load_run as load

    return load(path)


def load_study(path: str):
    """Every run directory under ``path`` as a :class:`cifarlab.analysis.results.StudyResults`: its runs, the
    report's findings (``findings``, ``findings_table()``) and arms side by side (``compare()``)."""
    from cifarlab.analysis.results import load_study as load

    return load(path)


def study(study_file: str, out: str, report: bool = True, gpus: list[str] | None = None, **options: Any
          ) -> tuple[list[str], str | None]:
    """Run a study file into ``out`` (skipping complete runs, resuming interrupted ones), then report.

    Args:
        gpus: run independent runs concurrently, one per listed CUDA device (or ``cpu`` slot).
        options: fields of :class:`cifarlab.studies.runner.StudyOptions`: ``executor`` (``local``, or ``slurm``:
            one Slurm job per run, through submitit), ``jobs_per_device`` (runs at once per listed device, or on the
            one device, as separate processes), ``seed_offset`` (added to every run's seeds; ``{seed}`` in names and
            ``@name`` references follow), ``slurm`` (job settings over the study file's ``[slurm]`` table:
            partition, time, gpus_per_job, cpus_per_job, mem, account, qos, sbatch, setup, signal_delay_s),
            ``wait`` (Slurm: follow the jobs to their end, then report; False: return once submitted),
            ``equivalence_margin`` (points: the report's TOST margin where no difference is called),
            ``overrides`` (``--set`` keys over the file's), ``rerun_changed`` (re-run runs whose directories hold a
            different run, keeping the old ones as ``NAME.replaced-N``; without it such a study stops first), ``arms``
            (run only the runs of these arms, e.g. ``("course recipe",)``), and ``adjust`` (each run's keys -> the
            keys it runs with, e.g. a :class:`Budget` for a laptop).
    """
    from cifarlab.studies.runner import run_study

    failed, path = run_study(study_file, out, report=report, gpus=gpus, **options)
    return failed, str(path) if path else None


def study_plan(study_file: str, out: str, seed_offset: int = 0, executor: str = "local",
               slurm: dict[str, Any] | None = None, overrides: dict[str, str] | None = None) -> str:
    """The runs a study file describes, one line each: state in ``out`` (complete, resumes, new, or changed with
    the keys that differ), name, recipe, init (validated, not run); ``overrides``: ``--set`` keys; for
    ``executor="slurm"`` also each job's options and what would be submitted after what."""
    from cifarlab.studies.runner import plan_lines

    return plan_lines(study_file, out, seed_offset, executor, slurm, overrides)


def bench(options: Any = None, log=None) -> str:
    """Each regime's hot loop as the product runs it (and the notebook pipeline): steady-state images/s, TFLOP/s,
    MFU, and the warm-up/compile seconds apart. ``options``: an :class:`cifarlab.bench.BenchOptions`."""
    import os

    from cifarlab import bench as b
    from cifarlab.data import load_dataset
    from cifarlab.engine.device import resolve_device

    o = options or b.BenchOptions()
    dev = resolve_device(o.device)
    data = load_dataset(o.dataset or os.environ.get("CIFARLAB_DATASET") or "cifar10", o.data_root or None)
    grid = b.LoopGrid.of(o)
    rows = b.bench_loops(data.train_x, data.train_y, grid, dev, log=log)
    if o.notebook and "scratch" in grid.loops:
        rows += [b.bench_notebook(data.train_x, data.train_y, o.model, bs, o.steps, o.repeats, dev, o.workers)
                 for bs in grid.batch_sizes]
    return (f"device: {dev}; FLOPs from torch.utils.flop_counter (1 multiply-add = 2 FLOPs, training = 3x "
            f"forward); MFU against the dense bf16 peak (CUDA only); warm-up = the first call (allocation, "
            f"autotuning, compilation), images/s = median of {o.repeats} calls of {o.steps} steps after it\n"
            + b.format_rows(rows))


def models_help() -> str:
    """One line per registered model: its pretrained weights (or none) and what ``partial`` unfreezes."""
    from cifarlab.models import CARDS, MODELS

    lines = [f"  {'model':<20} {'pretrained weights':<62} last block (partial)"]
    for name in MODELS.names():
        card = CARDS.get(name)
        weights = card.weights if card and card.weights else "none (random init only)"
        lines.append(f"  {name:<20} {weights:<62} {card.last_block if card else '?'}")
    lines.append("  timm:ARCH            any timm architecture; pretrained weights from the Hugging Face hub "
                 "(HF_HUB_OFFLINE=1 when offline); partial: its last stage")
    return "\n".join(lines)


def keys_help(recipe: str) -> str:
    return config_mod.help_table(RECIPES.get(recipe).config_class)


def recipes_help() -> str:
    return "\n".join(f"  {name:<10} {RECIPES.get(name).description}" for name in RECIPES.names())
