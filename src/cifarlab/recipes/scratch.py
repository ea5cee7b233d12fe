"""Scratch: a backbone from random weights, crop+flip, SGD+Nesterov with a one-cycle schedule, label smoothing."""

from __future__ import annotations

from typing import Any

from cifarlab.config import ScratchConfig
from cifarlab.data import Augment
from cifarlab.engine.fit import fit
from cifarlab.engine.optim import trunk_and_head_groups
from cifarlab.models import Backbone, create_model
from cifarlab.objectives import Classification
from cifarlab.recipes.context import RunContext, fit_spec, run_optimizer
from cifarlab.recipes.evaluate import finish_classifier, fit_io, input_format, to_device
from cifarlab.recipes.execute import RECIPES, Recipe


def build(cfg: ScratchConfig, num_classes: int) -> Backbone:
    return create_model(cfg.model, num_classes=num_classes, weights="none")


def augmentation(ctx: RunContext) -> Augment:
    """The resolved policy at the resolved resolution, normalised with the train split's statistics."""
    r, cfg = ctx.resolved, ctx.cfg
    return Augment(r.augment, tuple(r.normalisation["mean"]), tuple(r.normalisation["std"]), r.crop_padding,
                   resolution=r.resolution, memory_format=input_format(ctx), cutout=cfg.cutout)


def run(ctx: RunContext, model: Backbone) -> dict[str, Any]:
    cfg = ctx.cfg
    model, fwd = to_device(model, ctx)
    augment = augmentation(ctx)
    optimizer = run_optimizer(cfg, trunk_and_head_groups(model, cfg.weight_decay))
    result = fit(model, Classification(augment, cfg.label_smoothing), ctx.loaded.train, optimizer,
                 fit_spec(cfg, ctx.resolved), fit_io(ctx), forward_model=fwd)
    model.eval()
    return {**finish_classifier(ctx, lambda x: fwd.forward_features(augment.eval(x)), model.forward_head, result,
                                model.param_counts()), "resolution": ctx.resolved.resolution}


RECIPES.register("scratch")(Recipe(ScratchConfig, build, run, __doc__.splitlines()[0]))
