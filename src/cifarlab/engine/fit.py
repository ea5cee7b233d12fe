"""The one training loop every regime shares.

A regime plugs in a *task* (what turns a uint8 batch into a loss; see ``cifarlab.objectives``), a model whose
frozen blocks are already set, and the optimizer's parameter groups. :func:`fit` strings together the pieces of
this package: the epoch and evaluation passes (``engine.loop``), the weight average (``engine.averaging``), the
health checks (``engine.health``) and checkpoint save/resume (``engine.resume``). It reads a :class:`FitSpec`,
built once from the run's config by the recipes layer (``recipes.context.fit_spec``): its fields carry the config
keys' names and no defaults of their own, so every default is said once, in ``cifarlab.config``.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from cifarlab.engine import checkpoint, distributed, resume
from cifarlab.engine.averaging import weight_average
from cifarlab.engine.device import grad_scaler
from cifarlab.engine.health import HealthRule, check_health
from cifarlab.engine.loop import FitData, StepPlan, Task, Updater, evaluate, train_one_epoch
from cifarlab.engine.optim import group_rates
from cifarlab.engine.rundir import RunDir


@dataclass(frozen=True)
class FitSpec:
    """Everything the loop reads: the budget, the learning rate and its schedule, evaluation and run options. Field
    names are config keys (``amp`` and ``progress`` resolved: ``bf16``/``fp16``/``off`` and ``on``/``off``)."""

    epochs: int
    batch_size: int
    lr: float  # peak rate at ``batch_size``, or 0: carried from ``base_lr`` at ``ref_batch`` by ``lr_scaling``
    base_lr: float
    ref_batch: int
    lr_scaling: str
    schedule: str
    warmup_epochs: float
    warmup_min_steps: int
    warmup_max_fraction: float
    milestones: list[float]
    gamma: float
    seed: int
    amp: str
    eval_batch_size: int
    max_steps_per_epoch: int
    divergence_factor: float
    divergence_acc_factor: float
    ema: float
    ema_warmup: float
    resume: bool
    progress: str
    selection: str


@dataclass(frozen=True)
class FitIO:
    """Where a fit writes: the run directory (checkpoints, metrics; None writes nothing), the log, and a callback
    after each epoch's checkpoint is on disk (tests interrupt there)."""

    run: RunDir | None = None
    log: Callable[[str], None] | None = None
    on_epoch_end: Callable[[int], None] | None = None


@dataclass(frozen=True)
class FitResult:
    """What a fit returns: the per-epoch history, the selected epoch, timings and the step plan it ran."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = float("nan")
    plan: StepPlan | None = None
    lr_groups: dict[str, float] = field(default_factory=dict)
    first_step_at: float | None = None  # time.perf_counter() when this process's first optimizer step had finished
    # seconds from the start of this process's first epoch to the end of steps 1, 2, 5, 10, 20, 50, 100 (device
    # synchronised there only): where a slow first epoch loses its time (first launches vs the whole epoch)
    first_epoch_marks: dict[str, float] = field(default_factory=dict)
    bn_lag_epochs: list[int] = field(default_factory=list)

    @property
    def train_time_s(self) -> float:  # training steps only
        return sum(r["train_time_s"] for r in self.history)

    @property
    def epochs_wall_s(self) -> float:  # training steps + the validation pass of every epoch
        return sum(r["wall_time_s"] for r in self.history)

    @property
    def images_per_s(self) -> float:
        images = sum(r["images_per_s"] * r["train_time_s"] for r in self.history)
        return images / max(self.train_time_s, 1e-9)

    def timing(self) -> dict[str, float]:
        """The first epoch's wall time against the median of the others (compilation, autotuning, warm-up)."""
        walls = [r["wall_time_s"] for r in self.history]
        if len(walls) < 2:
            return {}
        median = statistics.median(walls[1:])
        return {"first_epoch_s": round(walls[0], 3), "median_epoch_s": round(median, 3),
                "first_epoch_excess_s": round(walls[0] - median, 3),
                "first_epoch_ratio": round(walls[0] / max(median, 1e-9), 3)}


def fit(model: nn.Module, task: Task, data: FitData, optimizer: torch.optim.Optimizer, spec: FitSpec,
        io: FitIO | None = None, forward_model: nn.Module | None = None) -> FitResult:
    """Train ``model`` for ``spec.epochs`` and leave the selected weights loaded in it (the best validation epoch,
    or the last with ``selection=last`` or without a validation split).

    Args:
        model: the module whose ``state_dict`` is checkpointed.
        forward_model: what the task calls in training (e.g. a ``torch.compile``-d ``model``); default ``model``.
    """
    io = io or FitIO()
    run, log = io.run, io.log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    device = data.device
    fwd = forward_model if forward_model is not None else model
    d = distributed.get()
    plan = StepPlan.of(spec, len(data.train_idx), d.world if d.enabled else 1)
    num_classes = int(data.y.max().item()) + 1 if len(data.y) else 1
    rule = HealthRule(task.chance_loss(num_classes, min(spec.eval_batch_size, max(len(data.val_idx), 1))),
                      spec.divergence_factor, spec.divergence_acc_factor, plan.peak_lr, plan.batch_size)
    train_fwd = fwd
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_fwd = DistributedDataParallel(fwd, device_ids=[device.index] if device.type == "cuda" else None)
    ema = weight_average(model, optimizer, spec.ema, spec.ema_warmup)
    eval_model = ema.module if ema is not None else model  # what is validated, selected, saved as best and tested
    updater = Updater(optimizer, grad_scaler(device, spec.amp))
    state = resume.restore(run, model, updater, ema, device) if spec.resume else resume.TrainState()
    if state.epoch:
        log(f"resuming {run.path} after epoch {state.epoch}/{spec.epochs}")
    rates = group_rates(optimizer.param_groups, plan.peak_lr)
    if state.epoch < spec.epochs:
        groups = "; groups: " + ", ".join(f"{k} {v:.4g}" for k, v in rates.items()) if len(rates) > 1 else ""
        log(f"lr {plan.peak_lr:.4g} ({plan.lr_rule}){groups}; {plan.steps_per_epoch} steps per epoch, warm-up "
            f"{plan.warmup} steps{plan.warmup_note()}")
    selects_on_val = len(data.val_idx) > 0 and spec.selection == "best_val"
    writer, best_state, marks, first_step_at, lag = None, None, {}, None, []
    model.train()
    for epoch in range(state.epoch + 1, spec.epochs + 1):
        t0 = time.perf_counter()
        first = first_step_at is None  # the first epoch this call trains: its step marks time the start-up
        out = train_one_epoch(train_fwd, task, data, updater, spec, plan, (epoch, state.step), mark_first=first)
        if first:
            marks, first_step_at = out.marks, out.first_step_at
        row = dict(out.row)
        timing = {k: row.pop(k) for k in ("train_time_s", "images_per_s")}  # metrics.csv: metrics, then timings
        if len(data.val_idx):  # the eager module: evaluation shapes never trigger a recompilation
            val = evaluate(eval_model, task, data.x[data.val_idx.to(data.x.device)], data.y[data.val_idx],
                           spec.eval_batch_size, spec.amp, device=device)
            row.update(val_loss=val["loss"], val_acc=val["acc"])
        row.update(timing, wall_time_s=round(time.perf_counter() - t0, 4))
        health = check_health(row, eval_model, task, data, rule, spec.eval_batch_size, spec.amp)
        if health:
            lag.append(epoch)
            row["val_loss_batch_stats"] = health["val_loss_batch_stats"]
            log(f"note: validation loss {row['val_loss']:.3g} after epoch {epoch} comes from BatchNorm running "
                f"statistics that lag the weights early in training (with batch statistics it is "
                f"{health['val_loss_batch_stats']:.3g}; chance {rule.chance:.3g}): not divergence")
        is_best, best_value = _select(row, task, state, selects_on_val, lagging=bool(health))
        state = replace(state, epoch=epoch, step=out.step, history=[*state.history, row],
                        best_epoch=epoch if is_best else state.best_epoch, best_value=best_value)
        if is_best:
            best_state = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
        if d.is_main:
            log(_epoch_line(row, spec.epochs, is_best and selects_on_val))
        writer = writer or _tensorboard(run)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, epoch)
        if run is not None and d.is_main:
            resume.save(run, model, updater, ema, state, is_best)
        distributed.barrier()  # no rank runs ahead of the checkpoint on disk
        if io.on_epoch_end is not None:
            io.on_epoch_end(epoch)
    if writer is not None:
        writer.close()
    if ema is not None:
        ema.remove_hook()
    if best_state is not None:
        model.load_state_dict(best_state)
    elif run is not None and run.best_ckpt.is_file():  # resumed after the last epoch finished
        model.load_state_dict(checkpoint.load(run.best_ckpt, map_location=device)["model"])
    elif ema is not None:  # no epoch trained here: the averaged weights of the last epoch
        model.load_state_dict(ema.module.state_dict())
    return FitResult(state.history, state.best_epoch, state.best_value, plan, rates, first_step_at, marks, lag)


def _select(row: dict[str, Any], task: Task, state: resume.TrainState, selects_on_val: bool, lagging: bool
            ) -> tuple[bool, float]:
    """(is this epoch the selected one so far, the selection metric's best value)."""
    metric, mode = task.select
    value = row.get(metric, float("nan"))
    better = value > state.best_value if mode == "max" else value < state.best_value
    if lagging and state.best_epoch:
        better = False  # an epoch whose eval-mode statistics lag is not a model to select over a sound one
    if not selects_on_val or state.best_epoch == 0 or better:
        return True, value
    return False, state.best_value


def _epoch_line(row: dict[str, Any], epochs: int, best: bool) -> str:
    parts = [f"epoch {row['epoch']:>3}/{epochs}", f"train loss {row['train_loss']:.4f}"]
    if math.isfinite(row.get("train_acc", float("nan"))):
        parts.append(f"acc {100 * row['train_acc']:.2f}%")
    if "val_loss" in row:
        parts.append(f"| val loss {row['val_loss']:.4f}")
        if math.isfinite(row.get("val_acc", float("nan"))):
            parts.append(f"acc {100 * row['val_acc']:.2f}%")
    parts.append(f"| lr {row['lr']:.4g} | {row['images_per_s']:.0f} img/s | {row['train_time_s']:.1f}s")
    if row.get("amp_skipped_steps"):
        parts.append(f"| {row['amp_skipped_steps']} fp16 step(s) skipped by the loss scaler (inf/nan gradients)")
    return " ".join(parts) + (" *" if best else "")


def _tensorboard(run: RunDir | None):
    if run is None or not distributed.get().is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run.path / "tb"))
