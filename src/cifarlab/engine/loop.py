"""The plain loop: one optimizer step, one epoch over the shuffled training indices, one evaluation pass.

As torchvision's references keep ``train_one_epoch`` and ``evaluate``: each takes what it uses and returns its
metrics; nothing here writes into a shared object. :func:`cifarlab.engine.fit.fit` strings them together.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from cifarlab.data.batches import eval_batches, gather, num_batches, train_batches
from cifarlab.engine import distributed
from cifarlab.engine import embed as embedding
from cifarlab.engine.device import autocast, synchronize
from cifarlab.engine.optim import lr_factor, peak_lr, set_lr
from cifarlab.errors import CifarlabError, ConfigError, TrainingDiverged
from cifarlab.progress import enabled as progress_enabled


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


@dataclass(frozen=True)
class FitData:
    """Images and the index sets of one split. The images are on the compute device, or in host memory when they do
    not fit there (``data.placement``): batches are then gathered on the host and copied over."""

    x: torch.Tensor  # (N, C, H, W) uint8, on the device (or the host)
    y: torch.Tensor  # (N,) int64, on the device
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    compute: torch.device | None = None  # where the model runs; None = where x is

    @property
    def device(self) -> torch.device:
        return self.compute if self.compute is not None else self.x.device

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of ``idx`` on the compute device."""
        return gather(self.x, idx, self.device), self.y[idx.to(self.y.device)]


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
    warmup_asked: int  # the warm-up warmup_epochs and warmup_min_steps ask for, before warmup_max_fraction

    @classmethod
    def of(cls, spec: Any, n_train: int, world: int = 1) -> StepPlan:
        """``spec``: a :class:`cifarlab.engine.fit.FitSpec`."""
        if n_train == 0:
            raise ConfigError("no training images in the split")
        batch_size = min(spec.batch_size, n_train)
        if world > 1 and batch_size % world:
            raise ConfigError(f"batch_size={batch_size} must be divisible by the {world} processes")
        steps_per_epoch = num_batches(n_train, batch_size, drop_last=True)
        if spec.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, spec.max_steps_per_epoch)
        lr, rule = peak_lr(spec, batch_size)
        return cls(batch_size, steps_per_epoch, steps_per_epoch * spec.epochs, warmup_steps(spec, steps_per_epoch),
                   lr, rule, asked_warmup_steps(spec, steps_per_epoch))

    def warmup_note(self) -> str:
        """'' when the warm-up is as asked and shorter than the run; else what happened, for the first log line."""
        if self.warmup < self.warmup_asked:
            return (f" (capped from {self.warmup_asked}: the run has {self.total_steps} steps; warmup_max_fraction "
                    "sets the cap, setting warmup_epochs keeps it as set)")
        if self.warmup >= self.total_steps > 0:
            return (f" (WARNING: longer than the run's {self.total_steps} steps: the rate never reaches its peak and "
                    "never decays; lower warmup_epochs/warmup_min_steps or train longer)")
        return ""


def asked_warmup_steps(spec: Any, steps_per_epoch: int) -> int:
    """``warmup_epochs`` in steps; for the derived rate (``lr`` 0) at least ``warmup_min_steps``, which is what a
    few steps at a large batch need (the full rate after 1-2 steps blows ResNet18 up). An explicit ``lr`` warms up
    for exactly ``warmup_epochs``."""
    if spec.warmup_epochs <= 0:
        return 0
    steps = round(spec.warmup_epochs * steps_per_epoch)
    return steps if spec.lr > 0 else max(steps, spec.warmup_min_steps)  # an explicit lr is used as given


def warmup_steps(spec: Any, steps_per_epoch: int) -> int:
    """The warm-up asked for, at most ``warmup_max_fraction`` of the run's steps: a run shorter than its warm-up
    would never reach its peak rate (nor decay from it) and end near chance."""
    asked = asked_warmup_steps(spec, steps_per_epoch)
    if spec.warmup_max_fraction >= 1.0:
        return asked
    return min(asked, math.floor(spec.warmup_max_fraction * steps_per_epoch * spec.epochs))


@dataclass(frozen=True)
class EpochOut:
    """What one epoch returns: its metrics row (epoch, lr, train loss/accuracy, timings), the next step number and,
    for the process's first epoch, the seconds to steps 1, 2, 5, ... and the time its first step had finished."""

    row: dict[str, Any]
    step: int
    marks: dict[str, float]
    first_step_at: float | None


FIRST_EPOCH_MARKS = (1, 2, 5, 10, 20, 50, 100)


def train_step(model: nn.Module, task: Task, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               gen: torch.Generator, amp: str, scaler: torch.amp.GradScaler | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One optimizer step on one batch (uint8 images on the device): task loss under autocast, backward, update.
    With ``scaler`` (fp16) the loss is scaled before backward, and the step is skipped where a gradient is inf/nan
    (the scaler then lowers its scale)."""
    with autocast(x.device, amp):
        loss, c, k = task.train_step(model, x, y, gen)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return loss, c, k
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, c, k


@dataclass(frozen=True)
class Updater:
    """The optimizer and, for fp16, its loss scaler: what takes a step from a loss."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None = None


def train_one_epoch(model: nn.Module, task: Task, data: FitData, updater: Updater, spec: Any,
                    plan: StepPlan, at: tuple[int, int], mark_first: bool = False) -> EpochOut:
    """One pass over the shuffled training indices (``spec``: a FitSpec; ``at``: the epoch number and the steps
    taken before it; ``mark_first``: this is the run's first epoch, whose step marks time the start-up)."""
    optimizer, scaler = updater.optimizer, updater.scaler
    epoch, step = at
    d = distributed.get()
    device = data.device
    # seeded from (seed, epoch[, rank]) alone: a resumed run (with any number of processes) replays the same
    # shuffles, and every rank draws the same permutation of the global batch
    shuffle_gen = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + epoch)
    aug_gen = torch.Generator(device=device).manual_seed((spec.seed * 1_000_003 + epoch) * 4099 + d.rank)
    synchronize(device)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    skipped = torch.zeros((), device=device, dtype=torch.long)
    batch_size, steps_per_epoch, peak = plan.batch_size, plan.steps_per_epoch, plan.peak_lr
    seen, preds, lr = 0, 0, peak
    marks: dict[str, float] = {}
    first_step_at = None
    bar = tqdm(total=steps_per_epoch * batch_size, disable=not progress_enabled(spec.progress), leave=False,
               unit="img", unit_scale=True, desc=f"epoch {epoch}/{spec.epochs}", file=sys.stderr,
               dynamic_ncols=True)
    for i, idx in enumerate(train_batches(data.train_idx.to(device), batch_size, shuffle_gen)):
        if i >= steps_per_epoch:
            break
        idx = idx[d.rank::d.world]  # this rank's shard of the global batch
        lr = set_lr(optimizer, peak, lr_factor(step, plan.total_steps, plan.warmup, spec.schedule, spec.milestones,
                                               spec.gamma))
        try:
            # the scale before the step, read without a host sync (GradScaler has no public tensor for it): the
            # scaler lowers it exactly when it skipped the step for an inf/nan gradient
            before = None
            if scaler is not None:  # before its first step the scaler holds its initial scale as a number
                before = (scaler._scale.clone() if scaler._scale is not None
                          else torch.tensor(scaler.get_scale(), device=device))
            loss, c, k = train_step(model, task, optimizer, *data.batch(idx), aug_gen, spec.amp, scaler)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):
                raise out_of_memory(batch_size, device, step) from None
            raise
        if mark_first and i + 1 in FIRST_EPOCH_MARKS:  # this process's first epoch (step 1 is a mark)
            synchronize(device)
            now = time.perf_counter()
            marks[str(i + 1)] = round(now - t0, 4)
            first_step_at = first_step_at or now
        detached = loss.detach().float()
        bad_step = ~torch.isfinite(detached)
        if scaler is not None:  # a step the scaler skipped changed no weight: counted, not divergence
            skip = scaler._scale < before
            skipped += skip.long()
            bad_step = bad_step & ~skip
            detached = torch.where(skip, torch.zeros_like(detached), detached)  # an inf loss would hide the mean
        # record the first non-finite step without a host sync; it is read at the end of the epoch
        first_bad = torch.where((first_bad < 0) & bad_step, step, first_bad)
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
                               f"last good checkpoint (epoch {epoch - 1}) is kept; {lr_advice(peak, batch_size)}")
    row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": (loss_sum / max(seen, 1)).item(),
                           "train_acc": (correct / max(preds, 1)).item() if preds else float("nan"),
                           **({"amp_skipped_steps": int(skipped.item())} if scaler is not None else {}),
                           "train_time_s": round(train_time, 4),
                           "images_per_s": round(seen / max(train_time, 1e-9), 1)}
    return EpochOut(row, step, marks, first_step_at)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, batch_size: int, amp: str,
             pad: bool | None = None, device: torch.device | None = None) -> dict[str, float]:
    """Mean loss and accuracy of ``task.eval_step`` over ``x``/``y`` (already on the device).

    cuDNN's autotuner is off here: evaluation shapes (the eval batch, the last partial batch) differ from the
    training batch, and tuning each of them cost more than the whole evaluation on a GPU. ``pad`` (default: on
    CUDA) pads every model call to a power-of-two batch (``engine.embed.Padded``), so the last partial batch of
    each split does not build new cuDNN plans; the model is in eval mode, so the padding changes no output.
    ``device``: where the model runs (default: where ``x`` is; host-held images are copied over per batch)."""
    device = device or x.device
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
                ls, c, k = task.eval_step(call, x[sl].to(device, non_blocking=True), y[sl].to(device))
            loss_sum += ls.float()
            correct += c
            n += k
    model.train(was_training)
    return {"loss": (loss_sum / max(n, 1)).item(), "acc": (correct / max(n, 1)).item()}


def lr_advice(lr: float, batch_size: int) -> str:
    return f"lr {lr:.3g} at batch {batch_size} is too high for this run; try --lr {lr / 10:.3g}"


def out_of_memory(batch_size: int, device: torch.device, step: int) -> CifarlabError:
    where = f"{device}"
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
        torch.cuda.empty_cache()
    return CifarlabError(f"batch_size={batch_size} does not fit in {where} memory (at step {step}); try "
                         f"--batch-size {max(1, batch_size // 2)} (the learning rate follows it unless --lr is set)")
