"""RotNet pretraining (Gidaris et al. 2018): predict the rotation (0/90/180/270) of unlabelled images.

Class labels are never read: the split is not stratified by class, and the task ignores them. The reported
rotation accuracy is on the test images at the epoch with the lowest validation loss of the rotation task (the
selection reads no class label). Fine-tune from the run with ``--recipe partial|finetune --init RUN_DIR``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarlab.config import RotationConfig
from cifarlab.data import stratified_sample
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import fit
from cifarlab.engine.loop import evaluate
from cifarlab.engine.optim import trunk_and_head_groups
from cifarlab.models import Backbone, create_model
from cifarlab.objectives import Rotation
from cifarlab.objectives.rotation import NUM_ROTATIONS
from cifarlab.progress import Line
from cifarlab.recipes.context import RunContext, fit_spec, run_optimizer
from cifarlab.recipes.evaluate import check_finite, fit_io, fit_summary, selection_text, to_device
from cifarlab.recipes.execute import RECIPES, Recipe
from cifarlab.recipes.scratch import augmentation


def build(cfg: RotationConfig, num_classes: int) -> Backbone:
    return create_model(cfg.model, num_classes=NUM_ROTATIONS, weights="none")


def run(ctx: RunContext, model: Backbone) -> dict[str, Any]:
    cfg, loaded = ctx.cfg, ctx.loaded
    model, fwd = to_device(model, ctx)
    augment = augmentation(ctx)
    task = Rotation(augment, cfg.label_smoothing, cfg.rotations)
    optimizer = run_optimizer(cfg, trunk_and_head_groups(model, cfg.weight_decay))
    result = fit(model, task, loaded.train, optimizer, fit_spec(cfg, ctx.resolved), fit_io(ctx), forward_model=fwd)
    model.eval()
    test = evaluate(fwd, task, loaded.test_x, loaded.test_y, cfg.eval_batch_size, ctx.resolved.amp, device=ctx.device)
    # embeddings of a test subset for the report's t-SNE (labels are read here, after training, for colouring)
    keep = stratified_sample(loaded.test_y.cpu(), cfg.embed_samples, seed=cfg.seed)
    feats = embed(lambda x: model.forward_features(augment.eval(x)), loaded.test_x[keep.to(loaded.test_x.device)],
                  cfg.eval_batch_size, ctx.device, ctx.resolved.amp,
                  progress=Line(ctx.resolved.progress, "test embeddings"))
    check_finite(feats, "test embeddings")
    ctx.run.save_npz("predictions.npz", labels=loaded.test_y.cpu().numpy(), classes=np.array(loaded.data.classes),
                     embed_idx=keep.numpy(), embeddings=feats.cpu().numpy().astype(np.float16))
    best = result.history[result.best_epoch - 1]
    return {"rotation_test_acc": test["acc"], "rotation_test_loss": test["loss"],
            "best_val_loss": best.get("val_loss"), "best_val_acc": best.get("val_acc"),
            "selection": selection_text(ctx, "lowest validation loss of the rotation task (no class labels)"),
            **fit_summary(result, ctx), **model.param_counts(), "resolution": ctx.resolved.resolution}


RECIPES.register("rotation")(Recipe(RotationConfig, build, run, __doc__.splitlines()[0]))
