"""Supervised classification: augment on the device, forward, cross-entropy."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data.augment import Augment


class Classification:
    """Cross-entropy on augmented images (the scratch and transfer regimes)."""

    select = ("val_acc", "max")

    def __init__(self, augment: Augment, label_smoothing: float = 0.0) -> None:
        self.augment = augment
        self.label_smoothing = label_smoothing

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = model(self.augment.train(x, gen))  # (B, K)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, (logits.argmax(1) == y).sum(), len(y)

    def chance_loss(self, num_classes: int, batch_size: int) -> float:
        return math.log(num_classes)

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = model(self.augment.eval(x))
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        return loss, (logits.argmax(1) == y).sum(), len(y)


class FeatureClassification:
    """Cross-entropy of a head on precomputed (cached) features: ``x`` are feature vectors, not images."""

    select = ("val_acc", "max")

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, (logits.argmax(1) == y).sum(), len(y)

    def chance_loss(self, num_classes: int, batch_size: int) -> float:
        return math.log(num_classes)

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = model(x)
        return F.cross_entropy(logits.float(), y, reduction="sum"), (logits.argmax(1) == y).sum(), len(y)
