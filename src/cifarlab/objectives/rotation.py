"""Rotation prediction (Gidaris, Singh and Komodakis, ICLR 2018): a label-free pretext task.

Every image of a batch appears in all four rotations in the same batch (B images -> 4B inputs); the target is the
rotation index k for a rotation by k x 90 degrees counter-clockwise as displayed (``torch.rot90(x, k, dims=(2, 3))``,
the same convention as ``numpy.rot90``). Class labels are never read.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data.augment import Augment

NUM_ROTATIONS = 4


def rotate_all(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> (4B, C, H, W) inputs and (4B,) targets: block k holds every image rotated by k x 90
    degrees counter-clockwise as displayed (row 0 at the top): ``torch.rot90(x, k, dims=(2, 3))``."""
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)])
    targets = torch.arange(NUM_ROTATIONS, device=x.device).repeat_interleave(x.shape[0])
    return rotated, targets


class Rotation:
    """The rotation task: crop+flip first, then all four rotations; ``y`` (class labels) is ignored."""

    select = ("val_loss", "min")  # the assignment: report at the epoch with the lowest validation loss

    def __init__(self, augment: Augment, label_smoothing: float = 0.0) -> None:
        self.augment = augment
        self.label_smoothing = label_smoothing

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
        inputs, targets = rotate_all(self.augment.train(x, gen))
        logits = model(inputs)  # (4B, 4)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        return loss, (logits.argmax(1) == targets).sum(), len(targets)

    def chance_loss(self, num_classes: int, batch_size: int) -> float:
        return math.log(NUM_ROTATIONS)

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        inputs, targets = rotate_all(self.augment.eval(x))
        logits = model(inputs)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), (logits.argmax(1) == targets).sum(), \
            len(targets)
