"""Optimizers and learning-rate schedules.

Schedules are plain functions of the step (``lr_factor``), applied by the loop each step, so a checkpoint needs only
the step count to resume them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def scaled_lr(base_lr: float, ref_batch: int, batch_size: int, rule: str) -> float:
    """``base_lr`` (stated for ``ref_batch`` images per step) carried to ``batch_size`` by ``rule``: ``linear``
    (Goyal et al. 2017), ``sqrt`` (Hoffer et al. 2017), or ``capped``: linear below ``ref_batch`` and ``base_lr``
    above it (both rules blew ResNet18 up above 512 on an H100, while linear beat sqrt below it on the CPU:
    docs/results.md, "Learning rate against batch size")."""
    ratio = batch_size / ref_batch
    if rule == "capped":
        return base_lr * min(ratio, 1.0)
    return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))


def peak_lr(cfg: Any, batch_size: int) -> tuple[float, str]:
    """The run's peak learning rate at ``batch_size`` and how it was found (an explicit ``lr`` is used as given).
    ``cfg``: anything with ``lr``, ``base_lr``, ``ref_batch`` and ``lr_scaling`` (a FitSpec or a run config)."""
    if cfg.lr > 0:
        return cfg.lr, "set by lr"
    lr = scaled_lr(cfg.base_lr, cfg.ref_batch, batch_size, cfg.lr_scaling)
    return lr, f"base_lr {cfg.base_lr:g} per {cfg.ref_batch} images, {cfg.lr_scaling} to batch {batch_size}"


def param_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr_scale: float = 1.0,
                 name: str = "all") -> list[dict]:
    """Split trainable parameters into decayed (weights) and undecayed (norms and biases: ndim <= 1) groups, both
    named ``name`` (logs and summaries list every named group's rate)."""
    decay, no_decay = [], []
    for _, p in named:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "lr_scale": lr_scale, "name": name})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr_scale": lr_scale, "name": name})
    return groups


def trunk_and_head_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """A backbone's trunk and head as named groups (Muon keeps the group named ``head`` on SGD, as airbench does)."""
    return (param_groups(model.trunk.named_parameters(), weight_decay, name="trunk")
            + param_groups(model.head.named_parameters(), weight_decay, name="head"))


def group_rates(groups: list[dict], peak_lr: float) -> dict[str, float]:
    """The peak rate every named parameter group trains at: ``{"head": 0.001, "layer4": 0.0001}``; Muon's part of
    a group is listed as ``"<name> (muon)"`` beside its SGD part."""
    return {str(g.get("name", f"group{i}")) + (" (muon)" if g.get("muon") else ""): peak_lr * g.get("lr_scale", 1.0)
            for i, g in enumerate(groups)}


def make_optimizer(groups: list[dict], name: str, momentum: float, nesterov: bool, fused: bool = False,
                   muon_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam, AdamW or Muon (``name``) over ``groups``. The loop sets every
    group's rate each step (peak lr x ``lr_scale`` x schedule), so the rate given here is only a placeholder.

    ``fused`` updates all parameters in one kernel instead of torch's default multi-tensor (foreach) launches; it
    measured no faster for ResNet18, so it is off unless asked for. ``muon_lr_scale``
    multiplies the rate of the weights Muon updates (config key ``muon_lr_scale``)."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=1e-3, momentum=momentum, nesterov=nesterov and momentum > 0,
                               fused=fused or None)
    if name == "adam":  # torch.optim.Adam: weight decay as an L2 term in the gradient (the course's Adam)
        return torch.optim.Adam(groups, lr=1e-3, betas=(momentum, 0.999), fused=fused or None)
    if name == "muon":
        from cifarlab.engine.muon import make_muon

        return make_muon(groups, momentum, nesterov, muon_lr_scale)
    return torch.optim.AdamW(groups, lr=1e-3, betas=(momentum, 0.999), fused=fused or None)


def lr_factor(step: int, total: int, warmup: int, schedule: str, milestones: list[float] = (0.5, 0.75),
              gamma: float = 0.1) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total`` steps, after a linear warm-up of ``warmup``.

    onecycle: linear up over the warm-up, then linear down to 0 at the end (triangular, as in fast CIFAR recipes);
    cosine: half-cosine from 1 to 0 after the warm-up; multistep: x``gamma`` at each milestone fraction.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)  # 0 -> 1 after the warm-up
    if schedule == "onecycle":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "multistep":
        return gamma ** sum(step >= m * total for m in milestones)
    return 1.0


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_scale", 1.0) * factor
    return base_lr * factor
