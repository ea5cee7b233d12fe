"""Evaluations on frozen embeddings shared by the pretraining recipes: a linear head and weighted kNN."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cifarlab.config import RunConfig
from cifarlab.engine.embed import embed, knn_predict
from cifarlab.engine.fit import FitData, FitResult, FitSpec, fit
from cifarlab.engine.optim import param_groups
from cifarlab.engine.rundir import RunDir
from cifarlab.objectives import FeatureClassification
from cifarlab.recipes.common import Prepared, check_finite


@dataclass
class Embedded:
    """Frozen embeddings of the images a run uses: ``train`` rows follow ``used`` (sorted train-split indices)."""

    used: torch.Tensor  # (U,) indices into the dataset's train split
    train: torch.Tensor  # (U, D)
    test: torch.Tensor | None  # (M, D); None where only the split's images were embedded

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Row numbers in ``train`` of dataset indices ``idx`` (every one must have been embedded)."""
        rows = torch.searchsorted(self.used, idx).clamp_(max=len(self.used) - 1)
        if not torch.equal(self.used[rows], idx):
            raise ValueError("embeddings requested for images that were not embedded")
        return rows


def frozen_embeddings(p: Prepared, fn: Callable[[torch.Tensor], torch.Tensor], cfg: RunConfig) -> Embedded:
    """Embeddings of the train and validation images of the split (not the whole train split) and the test set."""
    used = torch.cat([p.fit.train_idx, p.fit.val_idx]).sort().values
    emb = Embedded(used, embed(fn, p.fit.x[used], cfg.eval_batch_size, p.device, cfg.amp),
                   embed(fn, p.test_x, cfg.eval_batch_size, p.device, cfg.amp))
    check_finite(emb.train, "train/validation embeddings")
    check_finite(emb.test, "test embeddings")
    return emb


def linear_probe(p: Prepared, emb: Embedded, cfg: RunConfig, epochs: int, lr: float,
                 run_dir: RunDir, metrics_file: str = "linear_metrics.csv", label_smoothing: float = 0.0
                 ) -> tuple[nn.Module, FitResult]:
    """A linear head trained on cached frozen embeddings (selected on the validation split); its per-epoch
    metrics go to ``linear_metrics.csv``.

    The head trains on standardised embeddings (mean and std of the training rows, like a BatchNorm without
    affine parameters in front of it), so one learning rate suits encoders whose features differ in scale by orders
    of magnitude (a random-init encoder against a trained one); the standardisation is then folded into the
    returned head, which takes raw embeddings."""
    mean, std = feature_scaler(emb.train[emb.rows(p.fit.train_idx)])
    head = nn.Linear(emb.train.shape[1], p.data.num_classes).to(p.device)
    # a linear head on standardised features is a convex problem: only a non-finite loss counts as divergence
    spec = FitSpec(epochs=epochs, batch_size=min(256, cfg.batch_size), lr=lr, schedule="cosine", seed=cfg.seed,
                   amp=cfg.amp, eval_batch_size=cfg.eval_batch_size, divergence_factor=float("inf"))
    data = FitData(x=(emb.train - mean) / std, y=p.fit.y[emb.used], train_idx=emb.rows(p.fit.train_idx),
                   val_idx=emb.rows(p.fit.val_idx))
    opt = torch.optim.SGD(param_groups(head.named_parameters(), 0.0), lr=lr, momentum=cfg.momentum,
                          nesterov=cfg.nesterov and cfg.momentum > 0)
    result = fit(head, FeatureClassification(label_smoothing), data, opt, spec, None, p.device, log=lambda m: None)
    _write_rows(run_dir, metrics_file, result.history)
    fold_scaler(head, mean, std)
    return head, result


def feature_scaler(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std of ``x`` (N, D); constant features get std 1 (they carry nothing to scale)."""
    mean, std = x.mean(0), x.std(0)
    return mean, torch.where(std > 1e-6 * std.max().clamp_min(1e-30), std, torch.ones_like(std))


@torch.no_grad()
def fold_scaler(head: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Rewrite ``head`` in place so that ``head(x)`` equals the old ``head((x - mean) / std)``."""
    head.weight.div_(std)
    head.bias.sub_(head.weight @ mean)


def knn_accuracy(p: Prepared, emb: Embedded, k: int, temperature: float) -> float:
    """Weighted kNN accuracy on the test set with the training images (not validation) as the memory bank."""
    rows = emb.rows(p.fit.train_idx)
    scores = knn_predict(emb.train[rows], p.fit.y[p.fit.train_idx], emb.test, p.data.num_classes, k, temperature)
    return (scores.argmax(1) == p.test_y).float().mean().item()


def _write_rows(run_dir: RunDir, name: str, rows: list[dict[str, Any]]) -> None:
    run_dir.write_metrics(rows, name)


def probe_head(p: Prepared, fn: Callable[[torch.Tensor], torch.Tensor], cfg: RunConfig, epochs: int, lr: float,
               run_dir: RunDir, pad: bool | None = None) -> nn.Linear:
    """A linear head fitted on frozen embeddings of the split's train images (selected on validation; the test
    images are not touched): the starting head of LP-FT fine-tuning. It trains with the run's label smoothing,
    which bounds its logits: a head that fits its few training images with near-infinite confidence sends large
    gradients into the backbone on the first augmented batches and undoes the probe. ``pad``: as in
    ``engine.embed.embed``; ``False`` where ``fn`` normalises by batch statistics."""
    used = torch.cat([p.fit.train_idx, p.fit.val_idx]).sort().values
    emb = Embedded(used, embed(fn, p.fit.x[used], cfg.eval_batch_size, p.device, cfg.amp, pad=pad), None)
    check_finite(emb.train, "train/validation embeddings")
    head, _ = linear_probe(p, emb, cfg, epochs, lr, run_dir, metrics_file="head_init_metrics.csv",
                           label_smoothing=getattr(cfg, "label_smoothing", 0.0))
    return head
