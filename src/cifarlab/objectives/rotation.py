"""Rotation prediction (Gidaris, Singh and Komodakis, ICLR 2018): a label-free pretext task.

In training, every image of a batch appears in all four rotations in the same batch (``rotations="all"``: B images ->
4B inputs, Gidaris et al.'s choice), or once, turned by one angle drawn per image and step (``rotations="random"``:
B images -> B inputs, as the RotNet course assignment rotates them). Evaluation always scores all four rotations of
every image, the deterministic expectation of a random angle. The target is the rotation index k for a rotation by
k x 90 degrees counter-clockwise as displayed (``torch.rot90(x, k, dims=(2, 3))``, the same convention as
``numpy.rot90``). Class labels are never read.
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


def rotate_random(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> (B, C, H, W) inputs and (B,) targets: image i turned by k_i x 90 degrees counter-clockwise,
    k_i drawn uniformly from {0, 1, 2, 3} by ``gen`` (on ``gen``'s device), as ``torch.rot90(x[i], k_i, (1, 2))``.
    Square images only (a quarter turn of a non-square batch changes its shape)."""
    targets = torch.randint(0, NUM_ROTATIONS, (x.shape[0],), generator=gen, device=gen.device).to(x.device)
    every = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)])  # (4, B, C, H, W)
    return every[targets, torch.arange(x.shape[0], device=x.device)], targets


ROTATIONS = {"all": lambda x, gen: rotate_all(x), "random": rotate_random}  # config.RotationConfig.rotations


class Rotation:
    """The rotation task: crop+flip first, then the rotations (``rotations``: all four, or one random angle per
    image); ``y`` (class labels) is ignored."""

    select = ("val_loss", "min")  # the lowest validation loss of the rotation task (the assignment: the test loss)

    def __init__(self, augment: Augment, label_smoothing: float = 0.0, rotations: str = "all") -> None:
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.rotate = ROTATIONS[rotations]

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
        inputs, targets = self.rotate(self.augment.train(x, gen), gen)
        logits = model(inputs)  # (4B, 4) for all rotations, (B, 4) for one random rotation per image
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        return loss, (logits.argmax(1) == targets).sum(), len(targets)

    def chance_loss(self, num_classes: int, batch_size: int) -> float:
        return math.log(NUM_ROTATIONS)

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        inputs, targets = rotate_all(self.augment.eval(x))
        logits = model(inputs)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), (logits.argmax(1) == targets).sum(), \
            len(targets)
