"""What the recipes share after building their model: moving it to the device, the one test evaluation with the
weights chosen on validation, test-time augmentation, and the summary fields every trained run has."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarlab.data import stratified_sample
from cifarlab.data.augment import TTA_VIEWS, tta_view
from cifarlab.engine import distributed
from cifarlab.engine.device import compile_model, peak_memory_mb
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import FitIO, FitResult
from cifarlab.errors import TrainingDiverged
from cifarlab.progress import Line
from cifarlab.recipes.context import RunContext

MISCLASSIFIED_KEPT = 32  # test images saved in predictions.npz for the report's grid

Fn = Callable[[torch.Tensor], torch.Tensor]


def to_device(model: nn.Module, ctx: RunContext) -> tuple[nn.Module, nn.Module]:
    """Move ``model`` to the device in the resolved memory format and return (model, the module to call)."""
    if ctx.cfg.sync_bn and distributed.get().enabled:
        model = distributed.sync_batchnorm(model, ctx.device)
    model.to(ctx.device, memory_format=input_format(ctx))
    return model, compile_model(model, ctx.resolved.compile)


def input_format(ctx: RunContext) -> torch.memory_format:
    """The memory format of the trained model and of the batches handed to it."""
    return torch.channels_last if ctx.resolved.memory_format == "channels_last" else torch.contiguous_format


def fit_io(ctx: RunContext) -> FitIO:
    return FitIO(run=ctx.run, log=ctx.log)


def warn(msg: str) -> None:
    """A warning for the user, printed once (the CLI shows no Python warning machinery)."""
    print(f"warning: {msg}", file=sys.stderr)


def logits_of(head_fn: Fn, feats: torch.Tensor) -> torch.Tensor:
    return torch.cat([head_fn(feats[i:i + 4096]).float() for i in range(0, len(feats), 4096)])


@torch.no_grad()
def finish_classifier(ctx: RunContext, features_fn: Fn, head_fn: Fn, result: FitResult, params: dict[str, int],
                      test_features: torch.Tensor | None = None) -> dict[str, Any]:
    """Evaluate the selected weights on the test split once; write predictions.npz; return summary fields.

    Args:
        features_fn: uint8 images -> embeddings (penultimate features).
        head_fn: embeddings -> logits.
        test_features: precomputed test embeddings (cached linear probes) instead of ``features_fn``.
    """
    cfg, loaded = ctx.cfg, ctx.loaded
    feats = test_features if test_features is not None else embed(
        features_fn, loaded.test_x, cfg.eval_batch_size, ctx.device, ctx.resolved.amp,
        progress=Line(ctx.resolved.progress, "test evaluation"))
    check_finite(feats, "test embeddings")
    logits = logits_of(head_fn, feats)
    preds = logits.argmax(1)
    labels = loaded.test_y
    out: dict[str, Any] = {"test_acc": (preds == labels).float().mean().item()}
    if test_features is None and ctx.resolved.tta:
        tta_logits = test_time_augmented_logits(features_fn, head_fn, loaded.test_x, ctx)
        out["test_acc_tta"] = (tta_logits.argmax(1) == labels).float().mean().item()
        out["tta"] = (f"mean logits over {len(TTA_VIEWS)} views: identity and mirror, each also shifted by (2, 2) "
                      "and (-2, -2) pixels")
    out["test_loss"] = nn.functional.cross_entropy(logits, labels).item()
    save_predictions(ctx, labels, preds, logits, feats)
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    return {**out, "best_val_acc": best.get("val_acc"), "selection": selection_text(ctx, "best validation accuracy"),
            **fit_summary(result, ctx), **params}


def selection_text(ctx: RunContext, criterion: str) -> str:
    """How the tested epoch was chosen: ``criterion`` on validation, or the last epoch."""
    if ctx.cfg.selection == "last":
        return "last epoch (selection=last)"
    return criterion if len(ctx.loaded.split.val) else "last epoch (no validation split)"


def save_predictions(ctx: RunContext, labels: torch.Tensor, preds: torch.Tensor, logits: torch.Tensor,
                     feats: torch.Tensor) -> None:
    """predictions.npz: test labels, predictions, logits, embeddings of a stratified subset, the most confident
    mistakes (with their images, for the report's grid)."""
    keep = stratified_sample(labels.cpu(), ctx.cfg.embed_samples, seed=ctx.cfg.seed)
    conf = logits.softmax(1).max(1).values
    wrong = torch.nonzero(preds != labels).flatten()
    mis = wrong[conf[wrong].argsort(descending=True)[:MISCLASSIFIED_KEPT]]  # the most confident mistakes
    ctx.run.save_npz("predictions.npz", labels=labels.cpu().numpy(), preds=preds.cpu().numpy(),
                     logits=logits.cpu().numpy().astype(np.float32), classes=np.array(ctx.loaded.data.classes),
                     embed_idx=keep.numpy(), embeddings=feats[keep.to(feats.device)].cpu().numpy().astype(np.float16),
                     mis_idx=mis.cpu().numpy(), mis_conf=conf[mis].cpu().numpy(),
                     mis_images=ctx.loaded.test_x[mis.to(ctx.loaded.test_x.device)].permute(0, 2, 3, 1).cpu().numpy())


@torch.no_grad()
def test_time_augmented_logits(features_fn: Fn, head_fn: Fn, x: torch.Tensor, ctx: RunContext) -> torch.Tensor:
    """Mean logits over the TTA views of ``x`` (uint8 on the device): (M, K)."""
    total = None
    for view in TTA_VIEWS:
        feats = embed(features_fn, tta_view(x, view), ctx.cfg.eval_batch_size, ctx.device, ctx.resolved.amp,
                      progress=Line(ctx.resolved.progress, f"test-time augmentation {view}"))
        logits = logits_of(head_fn, feats)
        total = logits if total is None else total + logits
    return total / len(TTA_VIEWS)


def fit_summary(result: FitResult, ctx: RunContext) -> dict[str, Any]:
    """The summary fields every trained run has: budget, learning rates, model selection, speed, start-up, memory."""
    loaded, clock = ctx.loaded, ctx.clock
    out = {"epochs": len(result.history), "best_epoch": result.best_epoch,
           "train_time_s": round(result.train_time_s, 3), "epochs_wall_s": round(result.epochs_wall_s, 3),
           "images_per_s": round(result.images_per_s, 1), "num_train": len(loaded.split.train),
           "num_val": len(loaded.split.val), "num_test": len(loaded.test_y), "classes": loaded.data.classes,
           "peak_memory_mb": peak_memory_mb(ctx.device), "data_load_s": round(loaded.data_load_s, 3),
           "compile": ctx.resolved.compile, "memory_format": ctx.resolved.memory_format, **result.timing()}
    if result.plan is not None:
        out.update(peak_lr=result.plan.peak_lr, lr_rule=result.plan.lr_rule, batch_size=result.plan.batch_size,
                   warmup_steps=result.plan.warmup, lr_groups=result.lr_groups)
    if result.first_step_at is not None:  # process (or run) start to the first optimizer step, data loading excluded
        out["startup_s"] = round(result.first_step_at - clock.started_at - loaded.data_load_s, 3)
        # where it went: interpreter + imports, then device set-up + data to the device + run directory (decode
        # excluded), then model, optimizer and the first step (CUDA kernels' first launches, compilation)
        out["startup_parts_s"] = {"imports": round(clock.entered_at - clock.started_at, 3),
                                  "prepare": round(ctx.prepared_at - clock.entered_at - loaded.data_load_s, 3),
                                  "model_to_first_step": round(result.first_step_at - ctx.prepared_at, 3)}
    if result.first_epoch_marks:
        out["first_epoch_steps_s"] = result.first_epoch_marks
    if result.bn_lag_epochs:
        out["bn_lag_epochs"] = result.bn_lag_epochs
    if any("amp_skipped_steps" in r for r in result.history):  # fp16: steps the loss scaler skipped (inf gradients)
        out["amp_skipped_steps"] = sum(r.get("amp_skipped_steps", 0) for r in result.history)
    return out


def check_finite(x: torch.Tensor, what: str) -> None:
    """Non-finite embeddings mean the encoder diverged: stop before they reach the evaluation or the report."""
    bad = int((~torch.isfinite(x)).any(dim=tuple(range(1, x.dim()))).sum()) if x.dim() > 1 else \
        int((~torch.isfinite(x)).sum())
    if bad:
        raise TrainingDiverged(f"diverged: {bad} of {len(x)} {what} are not finite; the encoder's weights blew up "
                               "(lower the learning rate)")
