"""Supervised contrastive loss (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020), and SimCLR's
NT-Xent (Chen et al., 2020) as its label-free case.

For N = B x V projections z (L2-normalised), anchors i, positives P(i) = {p != i : y_p = y_i} and the contrast
set A(i) = {a != i}, the paper's recommended L_out (its Eq. 2) is

    L = mean over anchors i with |P(i)| > 0 of  -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) /
                                                                              sum_{a in A(i)} exp(z_i.z_a / t) )

Without labels each image is its own class, so the only positives are its other views (NT-Xent). Anchors without
any positive (possible with one view, or a singleton class and V = 1) are left out of the mean, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data.augment import ContrastiveViews


class SupConLoss(nn.Module):
    """``forward(features (B, V, D), labels (B,) | None) -> scalar``.

    Args:
        temperature: t in the equation.
        gather: optional function applied to features and labels before the loss (e.g. an all-gather with
            gradients across ranks, so the loss sees the global batch); identity by default.
    """

    def __init__(self, temperature: float = 0.1, gather: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> None:
        super().__init__()
        self.temperature = temperature
        self.gather = gather

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if features.ndim != 3:
            raise ValueError(f"features must be (batch, views, dim), got {tuple(features.shape)}")
        b, v, _ = features.shape
        ids = labels if labels is not None else torch.arange(b, device=features.device)
        if self.gather is not None:
            if labels is None:  # make image ids unique across ranks before gathering
                ids = ids + b * _rank()
            features, ids = self.gather(features), self.gather(ids)
            b = features.shape[0]
        # similarities in float32 under bf16 or fp16 autocast: exp(1/t) at a small temperature overflows fp16 (max
        # 65504 = exp(11.1)) and loses bf16's 8-bit mantissa
        z = F.normalize(features.float(), dim=-1).transpose(0, 1).reshape(v * b, -1)  # (V*B, D), view-major
        ids = ids.repeat(v)  # (V*B,)
        n = z.shape[0]
        with torch.autocast(device_type=z.device.type, enabled=False):
            sim = z @ z.T / self.temperature  # (N, N)
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(self_mask, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)  # log softmax over A(i)
        pos = (ids[:, None] == ids[None, :]) & ~self_mask
        n_pos = pos.sum(1)
        mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp(min=1)
        valid = n_pos > 0
        if not bool(valid.any()):
            return features.sum() * 0.0  # no anchor has a positive: zero loss, zero (finite) gradient
        return -(mean_log_prob_pos[valid]).mean()


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class ContrastiveModel(nn.Module):
    """Encoder (a registry backbone) + projection head, and optionally an online linear probe.

    ``forward`` gives (projections, probe logits or None). The probe is a linear classifier on the *detached*
    encoder features (solo-learn's online linear evaluation): it trains alongside pretraining without sending any
    gradient into the encoder, so the linear accuracy per epoch comes with the run. The encoder's own
    ``forward_features`` gives the features used for the final evaluation."""

    def __init__(self, backbone: nn.Module, projection: nn.Module, num_classes: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection
        self.probe = nn.Linear(backbone.num_features, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.backbone.forward_features(x)
        logits = self.probe(features.detach()) if self.probe is not None else None
        return self.projection(features), logits


class Contrastive:
    """The SupCon / SimCLR task: ``views`` augmented views per image, projections, :class:`SupConLoss`; with an
    online probe, plus the probe's cross-entropy (on detached features) in training, and its accuracy as the task's
    accuracy (train: on the augmented views; validation: on the un-augmented images). The validation loss, which
    selects the pretraining epoch, is the contrastive loss alone: SimCLR's selection reads no label."""

    select = ("val_loss", "min")

    def __init__(self, views: ContrastiveViews, loss: SupConLoss, use_labels: bool = True) -> None:
        self.views, self.loss, self.use_labels = views, loss, use_labels

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        v = self.views(x, gen)  # (B, V, C, H, W)
        b, nv = v.shape[:2]
        z, logits = model(v.flatten(0, 1))  # image-major: row i * V + j is view j of image i
        return self.loss(z.view(b, nv, -1), y if self.use_labels else None), logits

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
        loss, logits = self._loss(model, x, y, gen)
        if logits is None:
            return loss, torch.zeros((), device=x.device), 0
        yv = y.repeat_interleave(len(logits) // len(y))
        ce = F.cross_entropy(logits.float(), yv)
        return loss + ce, (logits.argmax(1) == yv).sum(), len(yv)

    def chance_loss(self, num_classes: int, batch_size: int) -> float:
        """Uniform similarities: each anchor's positives get 1/(V*B - 1) of its softmax mass."""
        return math.log(max(self.views.num_views * batch_size - 1, 2))

    def eval_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        gen = torch.Generator(device=x.device).manual_seed(0)  # the same views every epoch: comparable losses
        loss, logits = self._loss(model, x, y, gen)
        if logits is None:
            return loss * len(x), torch.full((), float("nan"), device=x.device), len(x)
        _, logits = model(self.views.eval(x))  # the probe on the plain images: its accuracy only
        return loss * len(x), (logits.argmax(1) == y).sum(), len(x)
