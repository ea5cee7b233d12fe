"""The one training loop every regime shares.

A regime plugs in a *task* (what turns a uint8 batch into a loss; see ``cifarlab.objectives``), a model whose
frozen blocks are already set, and the optimizer's parameter groups. The loop owns the schedule, mixed precision,
validation and model selection, checkpoints, resume, divergence checks, the progress bar and the logs. It reads a
small :class:`FitSpec`, built once from the run's config (``FitSpec.from_config``) or directly by a caller that
has no config (the linear evaluation of a frozen encoder).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from cifarlab.config import RunConfig
from cifarlab.data.batches import eval_batches, num_batches, train_batches
from cifarlab.engine import checkpoint, distributed
from cifarlab.engine import embed as embedding
from cifarlab.engine.device import autocast, synchronize
from cifarlab.engine.optim import group_rates, lr_factor, peak_lr, set_lr
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CheckpointError, CifarlabError, ConfigError, TrainingDiverged


class Task(Protocol):
    """What a regime plugs into the loop.

    ``train_step`` returns (mean loss, number correct, number of predictions) for one batch; ``eval_step`` the
    same with the loss summed, without augmentation. ``select`` names the validation metric for model selection
    and whether higher is better; ``chance_loss`` is the loss of a model that knows nothing (the yardstick of
    the divergence check).
    """

    select: tuple[str, str]

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]: ...

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        ...

    def chance_loss(self, num_classes: int, batch_size: int) -> float: ...


@dataclass
class FitSpec:
    """Everything the loop reads: the budget, the learning rate and its schedule, evaluation and run options."""

    epochs: int
    batch_size: int
    lr: float  # peak rate at ``batch_size``, or 0: carried from ``base_lr`` at ``ref_batch`` by ``lr_scaling``
    base_lr: float = 0.0
    ref_batch: int = 1
    lr_scaling: str = "linear"
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_min_steps: int = 0
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    seed: int = 0
    amp: str = "auto"
    eval_batch_size: int = 1024
    max_steps_per_epoch: int = 0
    divergence_factor: float = 10.0
    ema: float = 0.0
    resume: bool = False
    progress: str = "off"
    selection: str = "best_val"

    @classmethod
    def from_config(cls, cfg: RunConfig, **changes: Any) -> FitSpec:
        keys = {k: getattr(cfg, k) for k in cls.__dataclass_fields__}
        return cls(**{**keys, **changes})

    def peak_lr(self, batch_size: int) -> tuple[float, str]:
        return peak_lr(self, batch_size)  # type: ignore[arg-type]  (reads lr, base_lr, ref_batch, lr_scaling)


@dataclass
class FitData:
    """Images held on the compute device and the index sets of one split."""

    x: torch.Tensor  # (N, C, H, W) uint8, on the device
    y: torch.Tensor  # (N,) int64, on the device
    train_idx: torch.Tensor
    val_idx: torch.Tensor


@dataclass(frozen=True)
class StepPlan:
    """How a run lays out its optimizer steps: the batch, the steps per epoch and in all, the warm-up, the peak rate
    (and the rule that gave it)."""

    batch_size: int
    steps_per_epoch: int
    total_steps: int
    warmup: int
    peak_lr: float
    lr_rule: str

    @classmethod
    def of(cls, spec: FitSpec, n_train: int, world: int = 1) -> StepPlan:
        if n_train == 0:
            raise ConfigError("no training images in the split")
        batch_size = min(spec.batch_size, n_train)
        if world > 1 and batch_size % world:
            raise ConfigError(f"batch_size={batch_size} must be divisible by the {world} processes")
        steps_per_epoch = num_batches(n_train, batch_size, drop_last=True)
        if spec.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, spec.max_steps_per_epoch)
        lr, rule = spec.peak_lr(batch_size)
        return cls(batch_size, steps_per_epoch, steps_per_epoch * spec.epochs, warmup_steps(spec, steps_per_epoch),
                   lr, rule)


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = float("nan")
    train_time_s: float = 0.0  # training steps only
    epochs_wall_s: float = 0.0  # training steps + the validation pass of every epoch
    images_per_s: float = 0.0
    peak_lr: float = float("nan")
    lr_rule: str = ""
    batch_size: int = 0
    first_step_at: float | None = None  # time.perf_counter() when this process's first optimizer step had finished
    # seconds from the start of this process's first epoch to the end of steps 1, 2, 5, 10, 20, 50, 100 (device
    # synchronised there only): where a slow first epoch loses its time (first launches vs the whole epoch)
    first_epoch_marks: dict[str, float] = field(default_factory=dict)
    bn_lag_epochs: list[int] = field(default_factory=list)

    def timing(self) -> dict[str, float]:
        """The first epoch's wall time against the median of the others (compilation, autotuning, warm-up)."""
        walls = [r["wall_time_s"] for r in self.history]
        if len(walls) < 2:
            return {}
        median = statistics.median(walls[1:])
        return {"first_epoch_s": round(walls[0], 3), "median_epoch_s": round(median, 3),
                "first_epoch_excess_s": round(walls[0] - median, 3),
                "first_epoch_ratio": round(walls[0] / max(median, 1e-9), 3)}


def progress_enabled(mode: str) -> bool:
    return mode == "on" or (mode == "auto" and sys.stderr.isatty())


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device: torch.device, amp: str, pad: bool | None = None) -> dict[str, float]:
    """Mean loss and accuracy of ``task.eval_step`` over ``x``/``y`` (already on the device).

    cuDNN's autotuner is off here: evaluation shapes (the eval batch, the last partial batch) differ from the
    training batch, and tuning each of them cost more than the whole evaluation on a GPU. ``pad`` (default: on
    CUDA) pads every model call to a power-of-two batch (``engine.embed.Padded``), so the last partial batch of
    each split does not build new cuDNN plans; the model is in eval mode, so the padding changes no output."""
    was_training = model.training
    model.eval()
    call = embedding.Padded(model) if (pad if pad is not None else embedding.pads(device)) else model
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    n = 0
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False,
                                     deterministic=torch.backends.cudnn.deterministic):
        for sl in eval_batches(len(x), batch_size):
            with autocast(device, amp):
                ls, c, k = task.eval_step(call, x[sl], y[sl])
            loss_sum += ls.float()
            correct += c
            n += k
    model.train(was_training)
    return {"loss": (loss_sum / max(n, 1)).item(), "acc": (correct / max(n, 1)).item()}


@contextlib.contextmanager
def batch_statistics(model: nn.Module):
    """Inside: the trainable BatchNorm layers normalise by each batch's own statistics (training mode; frozen blocks
    stay in eval through ``Backbone.train``); on exit their running averages and the model's mode are restored."""
    was_training = model.training
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [{k: v.clone() for k, v in m.named_buffers()} for m in bns]
    try:
        yield model
    finally:
        with torch.no_grad():
            for m, buffers in zip(bns, saved):
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)
        model.train(was_training)


@torch.no_grad()
def batch_statistics_loss(model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                          device: torch.device, amp: str, max_images: int = 2048) -> float:
    """Validation loss with the trainable BatchNorm layers normalising by each batch's own statistics (as in
    training) instead of their running averages; the running averages are left as they were.

    Early in training the running averages lag the weights (momentum 0.1 per step), so the validation loss in
    eval mode can be huge while the network itself is fine; with batch statistics it is not."""
    n = min(len(x), max_images)
    bs = min(batch_size, n)
    loss_sum, count = 0.0, 0
    with batch_statistics(model):
        for start in range(0, n - bs + 1, bs):  # full batches only: batch statistics of 1 image are undefined
            with autocast(device, amp):
                ls, _, k = task.eval_step(model, x[start:start + bs], y[start:start + bs])
            loss_sum += float(ls.float())
            count += k
    return loss_sum / max(count, 1)


def fit(model: nn.Module, task: Task, data: FitData, optimizer: torch.optim.Optimizer, spec: FitSpec,
        run: RunDir | None, device: torch.device, *, forward_model: nn.Module | None = None,
        on_epoch_end: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None) -> FitResult:
    """Train ``model`` for ``spec.epochs`` and leave the best-validation weights loaded in it.

    Args:
        model: the module whose ``state_dict`` is checkpointed.
        forward_model: what the task calls in training (e.g. a ``torch.compile``-d ``model``); default ``model``.
        run: the run directory for checkpoints and metrics; None trains without writing anything.
        on_epoch_end: called with the epoch number after its checkpoint is on disk (tests interrupt here).
    """
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    fwd = forward_model if forward_model is not None else model
    d = distributed.get()
    plan = StepPlan.of(spec, len(data.train_idx), d.world if d.enabled else 1)
    num_classes = int(data.y.max().item()) + 1 if len(data.y) else 1
    chance = task.chance_loss(num_classes, min(spec.eval_batch_size, max(len(data.val_idx), 1)))
    train_fwd = fwd
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_fwd = DistributedDataParallel(fwd, device_ids=[device.index] if device.type == "cuda" else None)

    result = FitResult(peak_lr=plan.peak_lr, lr_rule=plan.lr_rule, batch_size=plan.batch_size)
    ema = _weight_average(model, optimizer, spec.ema)
    eval_model = ema.module if ema is not None else model  # what is validated, selected, saved as best and tested
    start_epoch, step = _restore(model, optimizer, spec, run, device, result, log, ema) if spec.resume else (0, 0)
    rates = group_rates(optimizer.param_groups, plan.peak_lr)
    if run is not None:
        run.update_summary(peak_lr=plan.peak_lr, lr_rule=plan.lr_rule, batch_size=plan.batch_size,
                           warmup_steps=plan.warmup, lr_groups=rates)
    if start_epoch < spec.epochs:
        groups = "; groups: " + ", ".join(f"{k} {v:.4g}" for k, v in rates.items()) if len(rates) > 1 else ""
        log(f"lr {plan.peak_lr:.4g} ({plan.lr_rule}){groups}; {plan.steps_per_epoch} steps per epoch, warm-up "
            f"{plan.warmup} steps")
    writer = None  # opened after the first epoch: importing TensorBoard is not worth delaying the first step for
    best_state = None
    model.train()
    for epoch in range(start_epoch + 1, spec.epochs + 1):
        t0 = time.perf_counter()
        row, times, step = train_one_epoch(train_fwd, task, data, optimizer, spec, plan, device, epoch, step, result)
        if len(data.val_idx):  # the eager module: evaluation shapes never trigger a recompilation
            val = evaluate(eval_model, task, data.x[data.val_idx], data.y[data.val_idx], spec.eval_batch_size,
                           device, spec.amp)
            row.update(val_loss=val["loss"], val_acc=val["acc"])
        row.update(times, wall_time_s=round(time.perf_counter() - t0, 4))
        _check_divergence(row, eval_model, task, data, spec, device, chance, result, log)
        result.history.append(row)
        is_best = _select(row, task, result, len(data.val_idx) > 0 and spec.selection == "best_val")
        if is_best:
            best_state = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
        if d.is_main:
            log(_epoch_line(row, spec.epochs, is_best and len(data.val_idx) > 0))
        writer = writer or _tensorboard(run)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, epoch)
        if run is not None and d.is_main:
            _save(run, model, optimizer, epoch, step, row, is_best, device, result, ema)
        distributed.barrier()  # no rank runs ahead of the checkpoint on disk
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if writer is not None:
        writer.close()

    if ema is not None:
        ema.remove_hook()
    if best_state is not None:
        model.load_state_dict(best_state)
    elif run is not None and run.best_ckpt.is_file():  # resumed after the last epoch finished
        model.load_state_dict(checkpoint.load(run.best_ckpt, map_location=device)["model"])
    elif ema is not None:  # no validation split: the averaged weights of the last epoch
        model.load_state_dict(ema.module.state_dict())
    result.train_time_s = sum(r["train_time_s"] for r in result.history)
    result.epochs_wall_s = sum(r["wall_time_s"] for r in result.history)
    images = sum(r["images_per_s"] * r["train_time_s"] for r in result.history)
    result.images_per_s = images / max(result.train_time_s, 1e-9)
    return result


def warmup_steps(spec: FitSpec, steps_per_epoch: int) -> int:
    """``warmup_epochs`` in steps; for the derived rate (``lr`` 0) at least ``warmup_min_steps``: a run shorter than
    that never reaches its peak rate, which is what a few steps at a large batch need (the full rate after 1-2 steps
    blows ResNet18 up). An explicit ``lr`` warms up for exactly ``warmup_epochs``."""
    if spec.warmup_epochs <= 0:
        return 0
    steps = round(spec.warmup_epochs * steps_per_epoch)
    return steps if spec.lr > 0 else max(steps, spec.warmup_min_steps)  # an explicit lr is used as given


FIRST_EPOCH_MARKS = (1, 2, 5, 10, 20, 50, 100)


def train_one_epoch(model: nn.Module, task: Task, data: FitData, optimizer: torch.optim.Optimizer, spec: FitSpec,
                    plan: StepPlan, device: torch.device, epoch: int, step: int, result: FitResult
                    ) -> tuple[dict[str, Any], dict[str, float], int]:
    """One pass over the shuffled training indices; returns the epoch's metrics, its timings and the next step."""
    d = distributed.get()
    # seeded from (seed, epoch[, rank]) alone: a resumed run (with any number of processes) replays the same
    # shuffles, and every rank draws the same permutation of the global batch
    shuffle_gen = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + epoch)
    aug_gen = torch.Generator(device=device).manual_seed((spec.seed * 1_000_003 + epoch) * 4099 + d.rank)
    synchronize(device)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    batch_size, steps_per_epoch, peak = plan.batch_size, plan.steps_per_epoch, plan.peak_lr
    seen, preds, lr = 0, 0, peak
    marks = result.first_epoch_marks if result.first_step_at is None else None
    bar = tqdm(total=steps_per_epoch * batch_size, disable=not progress_enabled(spec.progress), leave=False,
               unit="img", unit_scale=True, desc=f"epoch {epoch}/{spec.epochs}", file=sys.stderr,
               dynamic_ncols=True)
    for i, idx in enumerate(train_batches(data.train_idx, batch_size, shuffle_gen)):
        if i >= steps_per_epoch:
            break
        idx = idx[d.rank::d.world]  # this rank's shard of the global batch
        lr = set_lr(optimizer, peak, lr_factor(step, plan.total_steps, plan.warmup, spec.schedule, spec.milestones,
                                               spec.gamma))
        try:
            loss, c, k = train_step(model, task, optimizer, data.x[idx], data.y[idx], aug_gen, device, spec.amp)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):
                raise _out_of_memory(batch_size, device, step) from None
            raise
        if marks is not None and i + 1 in FIRST_EPOCH_MARKS:  # this process's first epoch (step 1 is a mark)
            synchronize(device)
            now = time.perf_counter()
            marks[str(i + 1)] = round(now - t0, 4)
            if result.first_step_at is None:
                result.first_step_at = now
        detached = loss.detach().float()
        # record the first non-finite step without a host sync; it is read at the end of the epoch
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(detached), step, first_bad)
        loss_sum += detached * len(idx)
        correct += c
        seen += len(idx)
        preds += k
        step += 1
        bar.update(len(idx))
    bar.close()
    if d.enabled:  # metrics over the global batch
        counts = distributed.all_reduce_sum(torch.stack([loss_sum, correct.float(),
                                                         torch.tensor(float(seen), device=device),
                                                         torch.tensor(float(preds), device=device)]))
        loss_sum, correct, seen, preds = counts[0], counts[1], int(counts[2].item()), int(counts[3].item())
        first_bad = distributed.all_reduce_max(first_bad)
    synchronize(device)
    train_time = time.perf_counter() - t0
    bad = int(first_bad.item())
    if bad >= 0:
        raise TrainingDiverged(f"diverged: the training loss became non-finite at step {bad} (epoch {epoch}); the "
                               f"last good checkpoint (epoch {epoch - 1}) is kept; {_lr_advice(peak, batch_size)}")
    row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": (loss_sum / max(seen, 1)).item(),
                           "train_acc": (correct / max(preds, 1)).item() if preds else float("nan")}
    return row, {"train_time_s": round(train_time, 4), "images_per_s": round(seen / max(train_time, 1e-9), 1)}, step


def train_step(model: nn.Module, task: Task, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               gen: torch.Generator, device: torch.device, amp: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One optimizer step on one batch (uint8 images on the device): task loss under autocast, backward, update."""
    with autocast(device, amp):
        loss, c, k = task.train_step(model, x, y, gen)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, c, k


def _lr_advice(lr: float, batch_size: int) -> str:
    return f"lr {lr:.3g} at batch {batch_size} is too high for this run; try --lr {lr / 10:.3g}"


def _check_divergence(row: dict[str, Any], model: nn.Module, task: Task, data: FitData, spec: FitSpec,
                      device: torch.device, chance: float, result: FitResult, log: Callable[[str], None]) -> None:
    """Stop a run whose loss exploded; tell BatchNorm's lagging running statistics apart and let those pass.

    Diverged: the training loss, or the validation loss both with running and with batch statistics, is over
    ``divergence_factor`` x chance (with an accuracy no better than twice chance: an overfitting model has a large
    validation loss too, and is not diverged). Lag: only the running statistics are off (with batch statistics the
    validation loss is under that limit, so the run may recover); the epoch is noted and not selected over a
    sound one."""
    limit = spec.divergence_factor * chance
    epoch = row["epoch"]
    if not row["train_loss"] <= limit:  # also catches NaN
        raise TrainingDiverged(f"diverged: training loss {row['train_loss']:.3g} after epoch {epoch} is over "
                               f"{spec.divergence_factor:g}x the chance level {chance:.3g}; "
                               f"{_lr_advice(result.peak_lr, result.batch_size)}")
    val_loss, val_acc = row.get("val_loss"), row.get("val_acc", float("nan"))
    if val_loss is None or val_loss <= limit:
        return
    if math.isfinite(val_loss) and math.isfinite(val_acc) and val_acc > 2 * math.exp(-chance):
        return  # well above chance accuracy: an overconfident (overfitting) model, not a diverged one
    x, y = data.x[data.val_idx], data.y[data.val_idx]
    with_batch_stats = batch_statistics_loss(model, task, x, y, spec.eval_batch_size, device, spec.amp)
    row["val_loss_batch_stats"] = with_batch_stats
    # lag: the network itself (normalising by its own batch statistics) is not blown up; it may still recover
    if math.isfinite(val_loss) and with_batch_stats <= limit:
        result.bn_lag_epochs.append(epoch)
        log(f"note: validation loss {val_loss:.3g} after epoch {epoch} comes from BatchNorm running statistics "
            f"that lag the weights early in training (with batch statistics it is {with_batch_stats:.3g}; chance "
            f"{chance:.3g}): not divergence")
        return
    raise TrainingDiverged(f"diverged: validation loss {val_loss:.3g} after epoch {epoch} ({with_batch_stats:.3g} "
                           f"with batch statistics) is over {spec.divergence_factor:g}x the chance level "
                           f"{chance:.3g}; {_lr_advice(result.peak_lr, result.batch_size)}")


def _select(row: dict[str, Any], task: Task, result: FitResult, has_val: bool) -> bool:
    metric, mode = task.select
    value = row.get(metric, float("nan"))
    better = value > result.best_value if mode == "max" else value < result.best_value
    if row["epoch"] in result.bn_lag_epochs and result.best_epoch:
        better = False  # an epoch whose eval-mode statistics lag is not a model to select over a sound one
    if not has_val or result.best_epoch == 0 or better:
        result.best_epoch, result.best_value = row["epoch"], value
        return True
    return False


class WeightAverage(torch.optim.swa_utils.AveragedModel):
    """torch's ``AveragedModel`` with an EMA of parameters and buffers, updated by a hook after every optimizer step
    (so the loop's step stays one line, whatever runs it). The first update copies the weights; update t (t >= 2)
    does ``avg = d_t * avg + (1 - d_t) * weights`` with ``d_t = min(decay, t / (t + 9))``.

    The warm-up of the decay (as in TensorFlow's and timm's EMA) keeps the average to about the last tenth of the
    steps taken so far until ``decay`` is reached. Without it, a decay whose horizon is close to the run's length
    keeps the first steps' near-random weights in the average: ``ema=0.998`` over 1,320 steps kept 7% of them and
    ended at 76.9% against 90.8% without EMA (H200, docs/results.md)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, decay: float) -> None:
        super().__init__(model, use_buffers=True)
        self.decay = decay
        self.updates = 0  # on the host: counting on the device (n_averaged) would mean reading it every step
        self.module.requires_grad_(False)
        # the (average, source) tensor lists, built once: the optimizer and load_state_dict update the source's
        # tensors in place, so these views stay the model's weights for the whole run
        avg = [*self.module.parameters(), *self.module.buffers()]
        cur = [t.detach() for t in (*model.parameters(), *model.buffers())]
        self._all = (avg, cur)
        self._floats = tuple(list(z) for z in zip(*[(a, c) for a, c in zip(avg, cur) if a.is_floating_point()]))
        self._ints = [(a, c) for a, c in zip(avg, cur) if not a.is_floating_point()]
        self._source_id = id(model)
        self._hook = optimizer.register_step_post_hook(lambda *_: self.update_parameters(model))

    def decay_at(self, t: int) -> float:
        """The decay used by update ``t`` (1-based; update 1 copies)."""
        return min(self.decay, t / (t + 9))

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One EMA update of parameters and floating-point buffers (integer buffers, e.g. BatchNorm's batch count,
        are copied), without reading the device: torch's ``update_parameters`` compares ``n_averaged`` on the host
        2-3 times per step, which stalls the queue of CUDA launches (the fast preset's ResNet18 epoch took 1.45 s
        against 1.05 s without EMA, H100, 2026-11-26). ``model`` is the module given at construction."""
        if id(model) != self._source_id:
            raise ValueError("WeightAverage averages the module it was built with; build one for another module")
        self.updates += 1
        if self.updates == 1:
            torch._foreach_copy_(*self._all)
        else:
            if self._floats:
                torch._foreach_lerp_(*self._floats, 1.0 - self.decay_at(self.updates))
            for a, c in self._ints:
                a.copy_(c)
        self.n_averaged += 1  # kept for torch's state_dict layout (checkpoints)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.updates = int(self.n_averaged)  # a resumed run continues the decay's warm-up where it was
        return out

    def remove_hook(self) -> None:
        self._hook.remove()


def _weight_average(model: nn.Module, optimizer: torch.optim.Optimizer, decay: float) -> WeightAverage | None:
    return WeightAverage(model, optimizer, decay) if decay > 0 else None


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, spec: FitSpec, run: RunDir | None,
             device: torch.device, result: FitResult, log: Callable[[str], None],
             ema: WeightAverage | None = None) -> tuple[int, int]:
    """Load the last checkpoint of ``run`` (if any) into the model, optimizer, RNG state and ``result``;
    returns (epochs done, steps done)."""
    if run is None or not run.last_ckpt.is_file():
        return 0, 0
    ckpt = checkpoint.load(run.last_ckpt, map_location=device)
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{run.last_ckpt} does not match this run's model/optimizer ({exc})") from None
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in ckpt:
        torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), device)
    result.history = list(ckpt["history"])
    result.best_epoch, result.best_value = int(ckpt["best_epoch"]), float(ckpt["best_value"])
    log(f"resuming {run.path} after epoch {int(ckpt['epoch'])}/{spec.epochs}")
    return int(ckpt["epoch"]), int(ckpt["step"])


def _save(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int,
          row: dict[str, Any], is_best: bool, device: torch.device, result: FitResult,
          ema: WeightAverage | None = None) -> None:
    if is_best:
        best = ema.module if ema is not None else model
        checkpoint.save({"model": best.state_dict(), "epoch": epoch, "value": result.best_value}, run.best_ckpt)
    checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     **({"ema": ema.state_dict()} if ema is not None else {}),
                     "step": step, "torch_rng": torch.get_rng_state(),
                     **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                     "history": result.history, "best_epoch": result.best_epoch,
                     "best_value": result.best_value}, run.last_ckpt)
    run.write_metrics(result.history)


def _out_of_memory(batch_size: int, device: torch.device, step: int) -> CifarlabError:
    where = f"{device}"
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
        torch.cuda.empty_cache()
    return CifarlabError(f"batch_size={batch_size} does not fit in {where} memory (at step {step}); try "
                         f"--batch-size {max(1, batch_size // 2)} (the learning rate follows it unless --lr is set)")


def _epoch_line(row: dict[str, Any], epochs: int, best: bool) -> str:
    parts = [f"epoch {row['epoch']:>3}/{epochs}", f"train loss {row['train_loss']:.4f}"]
    if math.isfinite(row.get("train_acc", float("nan"))):
        parts.append(f"acc {100 * row['train_acc']:.2f}%")
    if "val_loss" in row:
        parts.append(f"| val loss {row['val_loss']:.4f}")
        if math.isfinite(row.get("val_acc", float("nan"))):
            parts.append(f"acc {100 * row['val_acc']:.2f}%")
    parts.append(f"| lr {row['lr']:.4g} | {row['images_per_s']:.0f} img/s | {row['train_time_s']:.1f}s")
    return " ".join(parts) + (" *" if best else "")


def _tensorboard(run: RunDir | None):
    if run is None or not distributed.get().is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run.path / "tb"))
