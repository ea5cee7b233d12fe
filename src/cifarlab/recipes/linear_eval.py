"""The one linear-evaluation protocol, and kNN, on frozen embeddings.

Every linear classifier on a frozen encoder trains the same way: the ``linear`` recipe's head, the LP-FT starting
head of ``partial``/``finetune`` (``head_init=linear``), and the SupCon / SimCLR / ``supcon_ce`` / random-init
evaluations. The embeddings of the split's train and validation images are standardised with the mean and std of
the training rows (a BatchNorm without affine parameters in front of the head, so one learning rate suits encoders
whose features differ in scale by orders of magnitude), a linear head trains on them with the loop of
``engine.fit`` (selected on validation accuracy; the test images are never touched), and the standardisation is
then folded into the returned head, which takes raw embeddings. Only the budget (:class:`LinearBudget`) differs
between the callers, and each reads it from its own config keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cifarlab.engine.embed import embed, knn_predict
from cifarlab.engine.fit import FitIO, FitResult, fit
from cifarlab.engine.loop import FitData
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.objectives import FeatureClassification
from cifarlab.progress import Line
from cifarlab.recipes.context import RunContext, fit_spec
from cifarlab.recipes.evaluate import check_finite

PROTOCOL = ("linear probe: a linear head on frozen embeddings standardised with the training rows' mean and std, "
            "trained with the fit loop and selected on validation accuracy")


@dataclass(frozen=True)
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


class Standardized(nn.Module):
    """``head((backbone.forward_features(x) - mean) / std)``: the protocol's standardisation in front of a model's
    head, for a linear probe that re-runs the frozen backbone on every batch (``cache_embeddings=false``)."""

    def __init__(self, backbone: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head((self.backbone.forward_features(x) - self.mean) / self.std)


@dataclass(frozen=True)
class LinearBudget:
    """How long and how fast a linear head trains (the caller's config keys)."""

    epochs: int
    lr: float  # peak rate; 0 = the config's batch rule (the ``linear`` recipe)
    batch_size: int
    weight_decay: float
    label_smoothing: float
    optimizer: str = "sgd"
    schedule: str = "cosine"
    metrics_file: str = "linear_metrics.csv"


def embed_split(ctx: RunContext, fn: Callable[[torch.Tensor], torch.Tensor], with_test: bool = True,
                pad: bool | None = None) -> Embedded:
    """Embeddings of the split's train and validation images (not the whole train split) and, optionally, of the
    test images. ``pad``: as in ``engine.embed.embed`` (``False`` where ``fn`` normalises by batch statistics)."""
    loaded, cfg = ctx.loaded, ctx.cfg
    used = torch.cat([loaded.train.train_idx, loaded.train.val_idx]).sort().values
    show = ctx.resolved.progress
    train = embed(fn, loaded.train.x[used.to(loaded.train.x.device)], cfg.eval_batch_size, ctx.device,
                  ctx.resolved.amp, pad=pad, progress=Line(show, "embedding train/val"))
    check_finite(train, "train/validation embeddings")
    test = embed(fn, loaded.test_x, cfg.eval_batch_size, ctx.device, ctx.resolved.amp, pad=pad,
                 progress=Line(show, "embedding test")) if with_test else None
    if test is not None:
        check_finite(test, "test embeddings")
    return Embedded(used, train, test)


def train_head(ctx: RunContext, emb: Embedded, budget: LinearBudget, flip: bool = False, io: FitIO | None = None,
               head: nn.Linear | None = None) -> tuple[nn.Linear, FitResult]:
    """The protocol: a linear head on standardised embeddings, selected on validation accuracy, the scaler folded
    into the returned head. ``flip``: ``emb`` rows are (image, mirror) pairs (N, 2, D): the head trains on both as
    separate examples and validates on their mean. ``io``: where the head's fit writes (the ``linear`` recipe: its
    run directory, checkpoints and resume included); default: nothing but ``budget.metrics_file``. ``head``: the
    head to train (the model's own, so that the initialisation follows the seed as for any other run); default a new
    one."""
    loaded = ctx.loaded
    train_rows, val_rows, y = emb.rows(loaded.train.train_idx), emb.rows(loaded.train.val_idx), \
        loaded.train.y[emb.used]
    if flip:
        n = len(emb.train)
        x = torch.cat([emb.train[:, 0], emb.train[:, 1], emb.train.mean(1)])
        data = FitData(x=x, y=y.repeat(3), train_idx=torch.cat([train_rows, train_rows + n]),
                       val_idx=val_rows + 2 * n)
    else:
        data = FitData(x=emb.train, y=y, train_idx=train_rows, val_idx=val_rows)
    mean, std = feature_scaler(data.x[data.train_idx])
    data = FitData(x=(data.x - mean) / std, y=data.y, train_idx=data.train_idx, val_idx=data.val_idx)
    head = head if head is not None else nn.Linear(data.x.shape[1], loaded.data.num_classes).to(ctx.device)
    # a linear head on standardised features is a convex problem: only a non-finite loss counts as divergence
    spec = fit_spec(ctx.cfg, ctx.resolved, epochs=budget.epochs, batch_size=budget.batch_size, lr=budget.lr,
                    schedule=budget.schedule, warmup_epochs=0.0, ema=0.0, divergence_factor=float("inf"),
                    resume=io is not None and ctx.cfg.resume, selection="best_val", progress="off")
    optimizer = make_optimizer(param_groups(head.named_parameters(), budget.weight_decay, name="head"),
                               budget.optimizer, ctx.cfg.momentum, ctx.cfg.nesterov)
    result = fit(head, FeatureClassification(budget.label_smoothing), data, optimizer, spec,
                 io or FitIO(log=lambda m: None))
    if io is None:
        ctx.run.write_metrics(result.history, budget.metrics_file)
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


def knn_accuracy(ctx: RunContext, emb: Embedded, k: int, temperature: float) -> float:
    """Weighted kNN accuracy on the test set with the training images (not validation) as the memory bank."""
    loaded = ctx.loaded
    rows = emb.rows(loaded.train.train_idx)
    scores = knn_predict(emb.train[rows], loaded.train.y[loaded.train.train_idx], emb.test,
                         loaded.data.num_classes, k, temperature)
    return (scores.argmax(1) == loaded.test_y).float().mean().item()


def evaluation_budget(ctx: RunContext, epochs: int, lr: float, label_smoothing: float, metrics_file: str
                      ) -> LinearBudget:
    """The budget of an evaluation probe (LP-FT head, SupCon evaluation): the shared linear_* keys."""
    cfg = ctx.cfg
    return LinearBudget(epochs, lr, min(cfg.linear_batch_size, cfg.batch_size), cfg.linear_weight_decay,
                        label_smoothing, metrics_file=metrics_file)
