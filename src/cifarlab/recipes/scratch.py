"""Scratch: a backbone from random weights, crop+flip, SGD+Nesterov with a one-cycle schedule, label smoothing."""

from __future__ import annotations

from typing import Any

from cifarlab.config import ScratchConfig
from cifarlab.data import Augment
from cifarlab.engine.fit import FitSpec, fit
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.engine.rundir import RunDir
from cifarlab.models import create_model
from cifarlab.objectives import Classification
from cifarlab.recipes.common import RECIPES, Recipe, finish_classifier, input_format, prepare, to_device


def run(cfg: ScratchConfig, run_dir: RunDir) -> dict[str, Any]:
    p = prepare(cfg, run_dir)
    model = create_model(cfg.model, num_classes=p.data.num_classes, weights="none")
    model, fwd = to_device(model, p, cfg)
    augment = Augment(cfg.augment, p.mean, p.std, cfg.crop_padding, resolution=cfg.resolution or None,
                      memory_format=input_format(p, cfg), cutout=cfg.cutout)
    optimizer = make_optimizer(param_groups(model.named_parameters(), cfg.weight_decay), cfg)
    result = fit(model, Classification(augment, cfg.label_smoothing), p.fit, optimizer, FitSpec.from_config(cfg),
                 run_dir, p.device,
                 forward_model=fwd)
    model.eval()
    return finish_classifier(cfg, run_dir, p, lambda x: fwd.forward_features(augment.eval(x)), model.forward_head,
                             result, model.param_counts()) | {"started_from": "none",
                                                              "resolution": cfg.resolution or p.data.image_size}


RECIPES.register("scratch")(Recipe(ScratchConfig, run, __doc__.splitlines()[0]))
