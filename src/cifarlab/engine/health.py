"""Run health: divergence, told apart from BatchNorm running statistics that lag the weights early in training."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cifarlab.engine.device import autocast
from cifarlab.engine.loop import FitData, Task, lr_advice
from cifarlab.errors import TrainingDiverged


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
                          amp: str, max_images: int = 2048) -> float:
    """Validation loss with the trainable BatchNorm layers normalising by each batch's own statistics (as in
    training) instead of their running averages; the running averages are left as they were.

    Early in training the running averages lag the weights (momentum 0.1 per step), so the validation loss in
    eval mode can be huge while the network itself is fine; with batch statistics it is not."""
    n = min(len(x), max_images)
    bs = min(batch_size, n)
    loss_sum, count = 0.0, 0
    with batch_statistics(model):
        for start in range(0, n - bs + 1, bs):  # full batches only: batch statistics of 1 image are undefined
            with autocast(x.device, amp):
                ls, _, k = task.eval_step(model, x[start:start + bs], y[start:start + bs])
            loss_sum += float(ls.float())
            count += k
    return loss_sum / max(count, 1)


@dataclass(frozen=True)
class HealthRule:
    """The divergence rule: ``factor`` x the chance-level loss, and the accuracy (``acc_factor`` x chance) above
    which a large validation loss is an overconfident model, not a diverged one."""

    chance: float  # the task's chance-level loss
    factor: float  # divergence_factor
    acc_factor: float  # divergence_acc_factor
    peak_lr: float  # for the advice in the message
    batch_size: int

    @property
    def limit(self) -> float:
        return self.factor * self.chance


def check_health(row: dict[str, Any], model: nn.Module, task: Task, data: FitData, rule: HealthRule,
                 eval_batch_size: int, amp: str) -> dict[str, Any]:
    """Stop a run whose loss exploded; tell BatchNorm's lagging running statistics apart and let those pass.
    Returns ``{}`` for a sound epoch, or ``{"val_loss_batch_stats": ..., "bn_lag": True}`` for a lagging one.

    Diverged: the training loss, or the validation loss both with running and with batch statistics, is over
    ``factor`` x chance (with an accuracy no better than ``acc_factor`` x chance: an overfitting model has a large
    validation loss too, and is not diverged). Lag: only the running statistics are off (with batch statistics the
    validation loss is under that limit, so the run may recover)."""
    epoch = row["epoch"]
    if not row["train_loss"] <= rule.limit:  # also catches NaN
        raise TrainingDiverged(f"diverged: training loss {row['train_loss']:.3g} after epoch {epoch} is over "
                               f"{rule.factor:g}x the chance level {rule.chance:.3g}; "
                               f"{lr_advice(rule.peak_lr, rule.batch_size)}")
    val_loss, val_acc = row.get("val_loss"), row.get("val_acc", float("nan"))
    if val_loss is None or val_loss <= rule.limit:
        return {}
    if math.isfinite(val_loss) and math.isfinite(val_acc) and val_acc > rule.acc_factor * math.exp(-rule.chance):
        return {}  # well above chance accuracy: an overconfident (overfitting) model, not a diverged one
    x, y = data.batch(data.val_idx[:2048])
    with_batch_stats = batch_statistics_loss(model, task, x, y, eval_batch_size, amp)
    # lag: the network itself (normalising by its own batch statistics) is not blown up; it may still recover
    if math.isfinite(val_loss) and with_batch_stats <= rule.limit:
        return {"val_loss_batch_stats": with_batch_stats, "bn_lag": True}
    raise TrainingDiverged(f"diverged: validation loss {val_loss:.3g} after epoch {epoch} ({with_batch_stats:.3g} "
                           f"with batch statistics) is over {rule.factor:g}x the chance level "
                           f"{rule.chance:.3g}; {lr_advice(rule.peak_lr, rule.batch_size)}")
