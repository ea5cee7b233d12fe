"""RotNet pretraining (Gidaris et al. 2018): predict the rotation (0/90/180/270) of unlabelled images.

Class labels are never read: the split is not stratified by class, and the task ignores them. The reported
rotation accuracy is on the test images at the epoch with the lowest validation loss. Fine-tune from the run with
``--recipe partial|finetune --init RUN_DIR``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarlab.config import RotationConfig
from cifarlab.data import Augment, stratified_sample
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import FitSpec, evaluate, fit
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.engine.rundir import RunDir
from cifarlab.models import create_model
from cifarlab.objectives import Rotation
from cifarlab.objectives.rotation import NUM_ROTATIONS
from cifarlab.recipes.common import RECIPES, Recipe, check_finite, fit_summary, input_format, prepare, to_device


def run(cfg: RotationConfig, run_dir: RunDir) -> dict[str, Any]:
    p = prepare(cfg, run_dir)
    model = create_model(cfg.model, num_classes=NUM_ROTATIONS, weights="none")
    model, fwd = to_device(model, p, cfg)
    augment = Augment(cfg.augment, p.mean, p.std, cfg.crop_padding, resolution=cfg.resolution or None,
                      memory_format=input_format(p, cfg), cutout=cfg.cutout)
    task = Rotation(augment, cfg.label_smoothing)
    optimizer = make_optimizer(param_groups(model.named_parameters(), cfg.weight_decay), cfg)
    result = fit(model, task, p.fit, optimizer, FitSpec.from_config(cfg), run_dir, p.device, forward_model=fwd)
    model.eval()
    test = evaluate(fwd, task, p.test_x, p.test_y, cfg.eval_batch_size, p.device, cfg.amp)
    # embeddings of a test subset for the report's t-SNE (labels are read here, after training, for colouring)
    keep = stratified_sample(p.test_y.cpu(), cfg.embed_samples, seed=cfg.seed)
    feats = embed(lambda x: model.forward_features(augment.eval(x)), p.test_x[keep.to(p.device)],
                  cfg.eval_batch_size, p.device, cfg.amp)
    check_finite(feats, "test embeddings")
    run_dir.save_npz("predictions.npz", labels=p.test_y.cpu().numpy(), classes=np.array(p.data.classes),
             embed_idx=keep.numpy(), embeddings=feats.cpu().numpy().astype(np.float16))
    best = result.history[result.best_epoch - 1]
    return {"rotation_test_acc": test["acc"], "rotation_test_loss": test["loss"], "best_val_loss": best.get("val_loss"),
            "best_val_acc": best.get("val_acc"), "selection": "lowest validation loss (rotation task)",
            **fit_summary(result, p), **model.param_counts(), "started_from": "none",
            "resolution": cfg.resolution or p.data.image_size}


RECIPES.register("rotation")(Recipe(RotationConfig, run, __doc__.splitlines()[0]))
