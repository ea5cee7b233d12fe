"""Checkpoint save and resume of a training run: weights, optimizer, weight average, RNG state and history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cifarlab.engine import checkpoint
from cifarlab.engine.averaging import WeightAverage
from cifarlab.engine.loop import Updater
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CheckpointError


@dataclass(frozen=True)
class TrainState:
    """Where a run stands after an epoch: what ``last.pt`` holds besides the tensors."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = float("nan")


def restore(run: RunDir | None, model: nn.Module, updater: Updater, ema: WeightAverage | None,
            device: torch.device) -> TrainState:
    """Load the last checkpoint of ``run`` (if any) into the model, optimizer (and fp16 loss scaler), weight average
    and RNG state; returns where the run stands (a fresh state when there is no checkpoint)."""
    optimizer = updater.optimizer
    if run is None or not run.last_ckpt.is_file():
        return TrainState()
    ckpt = checkpoint.load(run.last_ckpt, map_location=device)
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        if updater.scaler is not None and "scaler" in ckpt:  # a checkpoint of a bf16/fp32 run starts a fresh scale
            updater.scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{run.last_ckpt} does not match this run's model/optimizer ({exc})") from None
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in ckpt:
        torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), device)
    return TrainState(int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt["history"]), int(ckpt["best_epoch"]),
                      float(ckpt["best_value"]))


def save(run: RunDir, model: nn.Module, updater: Updater, ema: WeightAverage | None,
         state: TrainState, is_best: bool) -> None:
    """``best.pt`` (the averaged weights where there is an average) when this epoch is the best, then ``last.pt``
    and ``metrics.csv``; each written atomically."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    optimizer, scaler = updater.optimizer, updater.scaler
    if is_best:
        best = ema.module if ema is not None else model
        checkpoint.save({"model": best.state_dict(), "epoch": state.epoch, "value": state.best_value}, run.best_ckpt)
    checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": state.epoch,
                     **({"ema": ema.state_dict()} if ema is not None else {}),
                     **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                     "step": state.step, "torch_rng": torch.get_rng_state(),
                     **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                     "history": state.history, "best_epoch": state.best_epoch,
                     "best_value": state.best_value}, run.last_ckpt)
    run.write_metrics(state.history)
