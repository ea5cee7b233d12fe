"""Evaluations on frozen embeddings shared by the pretraining recipes: a linear head and weighted kNN."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from cifarlab.config import RunConfig
from cifarlab.engine.embed import embed, knn_predict
from cifarlab.engine.fit import FitData, FitResult, fit
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.engine.rundir import RunDir
from cifarlab.objectives import FeatureClassification
from cifarlab.recipes.common import Prepared


def frozen_embeddings(p: Prepared, fn: Callable[[torch.Tensor], torch.Tensor], cfg: RunConfig
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of every train-split image (indexable like ``p.fit.x``) and of the test images."""
    return (embed(fn, p.fit.x, cfg.eval_batch_size, p.device, cfg.amp),
            embed(fn, p.test_x, cfg.eval_batch_size, p.device, cfg.amp))


def linear_probe(p: Prepared, train_f: torch.Tensor, cfg: RunConfig, epochs: int, lr: float,
                 run_dir: RunDir) -> tuple[nn.Module, FitResult]:
    """A linear head trained on cached frozen embeddings (selected on the validation split); its per-epoch
    metrics go to ``linear_metrics.csv``."""
    head = nn.Linear(train_f.shape[1], p.data.num_classes).to(p.device)
    probe_cfg = replace(cfg, lr=lr, epochs=epochs, batch_size=min(256, cfg.batch_size), schedule="cosine",
                        warmup_epochs=0.0, weight_decay=0.0, label_smoothing=0.0, optimizer="sgd",
                        max_steps_per_epoch=0, resume=False)
    data = FitData(x=train_f, y=p.fit.y, train_idx=p.fit.train_idx, val_idx=p.fit.val_idx)
    opt = make_optimizer(param_groups(head.named_parameters(), 0.0), probe_cfg)
    result = fit(head, FeatureClassification(), data, opt, probe_cfg, None, p.device, log=lambda m: None)
    _write_rows(run_dir, "linear_metrics.csv", result.history)
    return head, result


def knn_accuracy(p: Prepared, train_f: torch.Tensor, test_f: torch.Tensor, k: int, temperature: float) -> float:
    """Weighted kNN accuracy on the test set with the training images (not validation) as the memory bank."""
    scores = knn_predict(train_f[p.fit.train_idx], p.fit.y[p.fit.train_idx], test_f, p.data.num_classes, k,
                         temperature)
    return (scores.argmax(1) == p.test_y).float().mean().item()


def _write_rows(run_dir: RunDir, name: str, rows: list[dict[str, Any]]) -> None:
    import csv

    if not rows:
        return
    with open(run_dir.path / name, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
