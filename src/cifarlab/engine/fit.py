"""The one training loop every regime shares.

A regime plugs in a *task* (what turns a uint8 batch into a loss; see ``cifarlab.objectives``), a model whose
frozen blocks are already set, and the optimizer's parameter groups. The loop owns the schedule, mixed precision,
validation and model selection, checkpoints, resume, divergence checks, the progress bar and the logs.
"""

from __future__ import annotations

import math
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
from cifarlab.engine.device import autocast, synchronize
from cifarlab.engine.optim import lr_factor, set_lr
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CheckpointError, CifarlabError, ConfigError, TrainingDiverged


class Task(Protocol):
    """What a regime plugs into the loop.

    ``train_step`` returns (mean loss, number correct, number of predictions) for one batch; ``eval_step`` the
    same with the loss summed, without augmentation. ``select`` names the validation metric for model selection
    and whether higher is better.
    """

    select: tuple[str, str]

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]: ...

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        ...


@dataclass
class FitData:
    """Images held on the compute device and the index sets of one split."""

    x: torch.Tensor  # (N, C, H, W) uint8, on the device
    y: torch.Tensor  # (N,) int64, on the device
    train_idx: torch.Tensor
    val_idx: torch.Tensor


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = float("nan")
    train_time_s: float = 0.0  # training steps only
    epochs_wall_s: float = 0.0  # training steps + the validation pass of every epoch
    images_per_s: float = 0.0




def progress_enabled(mode: str) -> bool:
    return mode == "on" or (mode == "auto" and sys.stderr.isatty())


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device: torch.device, amp: str) -> dict[str, float]:
    """Mean loss and accuracy of ``task.eval_step`` over ``x``/``y`` (already on the device)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    n = 0
    for sl in eval_batches(len(x), batch_size):
        with autocast(device, amp):
            ls, c, k = task.eval_step(model, x[sl], y[sl])
        loss_sum += ls.float()
        correct += c
        n += k
    model.train(was_training)
    return {"loss": (loss_sum / max(n, 1)).item(), "acc": (correct / max(n, 1)).item()}


def fit(model: nn.Module, task: Task, data: FitData, optimizer: torch.optim.Optimizer, cfg: RunConfig,
        run: RunDir | None, device: torch.device, *, forward_model: nn.Module | None = None,
        on_epoch_end: Callable[[int], None] | None = None, epochs: int | None = None,
        log: Callable[[str], None] | None = None) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` and leave the best-validation weights loaded in it.

    Args:
        model: the module whose ``state_dict`` is checkpointed.
        forward_model: what the task calls (e.g. a ``torch.compile``-d ``model``); default ``model``.
        run: the run directory for checkpoints and metrics; None trains without writing anything.
        on_epoch_end: called with the epoch number after its checkpoint is on disk (tests interrupt here).
        epochs: overrides ``cfg.epochs`` (a second stage of a recipe).
    """
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    fwd = forward_model or model
    epochs = epochs or cfg.epochs
    n_train = len(data.train_idx)
    if n_train == 0:
        raise ConfigError("no training images in the split")
    batch_size = min(cfg.batch_size, n_train)
    steps_per_epoch = num_batches(n_train, batch_size, drop_last=True)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = steps_per_epoch * epochs
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    d = distributed.get()
    if d.enabled and batch_size % d.world:
        raise ConfigError(f"batch_size={batch_size} must be divisible by the {d.world} processes")
    train_fwd = fwd
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_fwd = DistributedDataParallel(fwd, device_ids=[device.index] if device.type == "cuda" else None)
    shuffle_gen = torch.Generator(device=device)
    aug_gen = torch.Generator(device=device)
    metric, mode = task.select
    has_val = len(data.val_idx) > 0
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)

    result = FitResult()
    start_epoch, step, best_state = 0, 0, None
    if run is not None and cfg.resume and run.last_ckpt.is_file():
        ckpt = checkpoint.load(run.last_ckpt, map_location=device)
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{run.last_ckpt} does not match this run's model/optimizer ({exc})") from None
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if device.type == "cuda" and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), device)
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        result.history = list(ckpt["history"])
        result.best_epoch, result.best_value = int(ckpt["best_epoch"]), float(ckpt["best_value"])
        log(f"resuming {run.path} after epoch {start_epoch}/{epochs}")

    writer = _tensorboard(run)
    show = progress_enabled(cfg.progress)
    model.train()
    for epoch in range(start_epoch + 1, epochs + 1):
        # seeded from (seed, epoch[, rank]) alone: a resumed run (with any number of processes) replays the
        # same shuffles, and every rank draws the same permutation of the global batch
        shuffle_gen.manual_seed(cfg.seed * 1_000_003 + epoch)
        aug_gen.manual_seed((cfg.seed * 1_000_003 + epoch) * 4099 + d.rank)
        synchronize(device)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        first_bad = torch.full((), -1, device=device, dtype=torch.long)
        seen, preds = 0, 0
        lr = cfg.lr
        bar = tqdm(total=steps_per_epoch * batch_size, disable=not show, leave=False, unit="img", unit_scale=True,
                   desc=f"epoch {epoch}/{epochs}", file=sys.stderr, dynamic_ncols=True)
        for i, idx in enumerate(train_batches(data.train_idx, batch_size, shuffle_gen)):
            if i >= steps_per_epoch:
                break
            idx = idx[d.rank::d.world]  # this rank's shard of the global batch
            lr = set_lr(optimizer, cfg.lr, lr_factor(step, total_steps, warmup, cfg.schedule, cfg.milestones,
                                                     cfg.gamma))
            try:
                with autocast(device, cfg.amp):
                    loss, c, k = task.train_step(train_fwd, data.x[idx], data.y[idx], aug_gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):
                    raise _out_of_memory(batch_size, device, step) from None
                raise
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
            raise TrainingDiverged(f"loss became non-finite at step {bad} (epoch {epoch}); stopped. The last good "
                                   f"checkpoint (epoch {epoch - 1}) is kept; try a lower lr (now {cfg.lr})")
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": (loss_sum / max(seen, 1)).item(),
                               "train_acc": (correct / max(preds, 1)).item() if preds else float("nan")}
        if has_val:
            val = evaluate(fwd, task, data.x[data.val_idx], data.y[data.val_idx], cfg.eval_batch_size, device,
                           cfg.amp)
            row.update(val_loss=val["loss"], val_acc=val["acc"])
            if not math.isfinite(val["loss"]):
                raise TrainingDiverged(f"validation loss became non-finite after epoch {epoch}; stopped. The last "
                                       f"good checkpoint (epoch {epoch - 1}) is kept")
        row.update(train_time_s=round(train_time, 4), images_per_s=round(seen / max(train_time, 1e-9), 1),
                   wall_time_s=round(time.perf_counter() - t0, 4))
        result.history.append(row)
        value = row.get(metric, float("nan"))
        is_best = not has_val or result.best_epoch == 0 or better(value, result.best_value)
        if is_best:
            result.best_epoch, result.best_value = epoch, value
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if d.is_main:
            log(_epoch_line(row, epochs, is_best and has_val))
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, epoch)
        if run is not None and d.is_main:
            if is_best:
                checkpoint.save({"model": model.state_dict(), "epoch": epoch, "value": value}, run.best_ckpt)
            checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                             "step": step, "torch_rng": torch.get_rng_state(),
                             **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                             "history": result.history, "best_epoch": result.best_epoch,
                             "best_value": result.best_value}, run.last_ckpt)
            run.write_metrics(result.history)
        distributed.barrier()  # no rank runs ahead of the checkpoint on disk
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if writer is not None:
        writer.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    elif run is not None and run.best_ckpt.is_file():  # resumed after the last epoch finished
        model.load_state_dict(checkpoint.load(run.best_ckpt, map_location=device)["model"])
    result.train_time_s = sum(r["train_time_s"] for r in result.history)
    result.epochs_wall_s = sum(r["wall_time_s"] for r in result.history)
    images = sum(r["images_per_s"] * r["train_time_s"] for r in result.history)
    result.images_per_s = images / max(result.train_time_s, 1e-9)
    return result


def _out_of_memory(batch_size: int, device: torch.device, step: int) -> CifarlabError:
    where = f"{device}"
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
        torch.cuda.empty_cache()
    return CifarlabError(f"batch_size={batch_size} does not fit in {where} memory (at step {step}); try "
                         f"--batch-size {max(1, batch_size // 2)} (and scale --lr with it)")


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
