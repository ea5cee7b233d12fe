"""SupCon / SimCLR pretraining, then linear and kNN evaluation on the frozen encoder; ``supcon_ce`` is the
cross-entropy baseline at the same encoder, epochs and augmentation.

Selection of the pretraining epoch: SupCon and SimCLR by the lowest validation loss of their own objective (SimCLR's
reads no label; the online probe's cross-entropy is never part of it); ``supcon_ce`` by the best validation
accuracy of its own classifier. Every encoder is then evaluated by the one linear protocol
(``recipes.linear_eval``) and kNN.
"""

from __future__ import annotations

from typing import Any

import torch

from cifarlab.config import SupConConfig
from cifarlab.data import ContrastiveViews
from cifarlab.engine import distributed
from cifarlab.engine.fit import FitResult, fit
from cifarlab.engine.optim import param_groups
from cifarlab.models import Backbone, ProjectionHead, create_model
from cifarlab.objectives import Classification, Contrastive, ContrastiveModel, SupConLoss
from cifarlab.recipes.context import RunContext, fit_spec, run_optimizer
from cifarlab.recipes.evaluate import finish_classifier, fit_io, to_device
from cifarlab.recipes.execute import RECIPES, Recipe
from cifarlab.recipes.linear_eval import PROTOCOL, embed_split, evaluation_budget, knn_accuracy, train_head


class _SingleView:
    """The contrastive augmentation as a one-view policy, so the CE baseline sees the same augmentation."""

    def __init__(self, views: ContrastiveViews) -> None:
        self.views = views

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.views.one(x, gen)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return self.views.eval(x)


def build(cfg: SupConConfig, num_classes: int) -> Backbone:
    """The encoder; ``supcon_ce`` gives it its own classifier head."""
    return create_model(cfg.model, num_classes=num_classes if cfg.recipe == "supcon_ce" else 0, weights="none")


def run(ctx: RunContext, backbone: Backbone) -> dict[str, Any]:
    cfg, loaded = ctx.cfg, ctx.loaded
    views = ContrastiveViews(tuple(ctx.resolved.normalisation["mean"]), tuple(ctx.resolved.normalisation["std"]),
                             cfg.views, resolution=ctx.resolved.resolution)
    extra: dict[str, Any] = {"objective": cfg.recipe, "temperature": cfg.temperature, "views": cfg.views,
                             "resolution": ctx.resolved.resolution}
    if cfg.recipe == "supcon_ce":
        model, fwd = to_device(backbone, ctx)
        task = Classification(_SingleView(views), cfg.label_smoothing)
    else:
        model = ContrastiveModel(backbone, ProjectionHead(backbone.num_features, cfg.proj_hidden, cfg.proj_dim),
                                 loaded.data.num_classes if cfg.online_probe else 0)
        model, fwd = to_device(model, ctx)
        # under torchrun the loss sees every rank's projections (the global batch), with gradients
        gather = distributed.gather_with_grad if distributed.get().enabled else None
        task = Contrastive(views, SupConLoss(cfg.temperature, gather=gather), use_labels=cfg.recipe == "supcon")
    encoder = backbone  # what the evaluations embed with, in both cases
    probe = getattr(model, "probe", None)
    groups = param_groups(((n, q) for n, q in model.named_parameters() if not n.startswith("probe.")),
                          cfg.weight_decay, name="encoder")
    if probe is not None:
        groups += [{"params": list(probe.parameters()), "weight_decay": 0.0, "lr_scale": cfg.online_probe_lr,
                    "name": "online_probe"}]
        extra["online_probe"] = ("linear head on detached encoder features (the train_acc/val_acc columns); its "
                                 "cross-entropy is not part of the validation loss that selects the epoch")
    optimizer = run_optimizer(cfg, groups)
    if cfg.epochs:
        pretrain = fit(model, task, loaded.train, optimizer, fit_spec(cfg, ctx.resolved), fit_io(ctx),
                       forward_model=fwd)
    else:
        pretrain = FitResult()  # the control: evaluate the encoder as initialised
        extra["control"] = "random-init encoder, no pretraining"
    model.eval()
    if cfg.recipe == "supcon_ce":  # the baseline's own classifier, for reference
        with torch.no_grad():
            logits = torch.cat([backbone(views.eval(loaded.test_x[i:i + 1024].to(ctx.device)))
                                for i in range(0, len(loaded.test_x), 1024)])
        extra["ce_test_acc"] = (logits.argmax(1) == loaded.test_y).float().mean().item()

    def embed_fn(x: torch.Tensor) -> torch.Tensor:
        return encoder.forward_features(views.eval(x))

    emb = embed_split(ctx, embed_fn)
    head, linear = train_head(ctx, emb, evaluation_budget(ctx, cfg.linear_epochs, cfg.linear_lr, 0.0,
                                                          "linear_metrics.csv"))
    extra["knn_acc"] = knn_accuracy(ctx, emb, cfg.knn_k, cfg.knn_temperature)
    summary = finish_classifier(ctx, embed_fn, head, pretrain, encoder.param_counts(), test_features=emb.test)
    metric = "val_acc" if cfg.recipe == "supcon_ce" else "val_loss"
    criterion = "highest validation accuracy of its classifier" if cfg.recipe == "supcon_ce" else \
        "lowest validation loss of the contrastive objective"
    summary.update(extra, linear_acc=summary["test_acc"], pretrain_best_epoch=pretrain.best_epoch,
                   pretrain_selected_by=metric, **{f"pretrain_best_{metric}": pretrain.best_value},
                   linear_best_val_acc=linear.best_value, best_val_acc=linear.best_value,
                   selection=f"pretraining: {criterion}" + ("" if cfg.epochs else " (no pretraining)")
                   + "; linear head: best validation accuracy; test evaluated once", evaluation=PROTOCOL)
    return summary


for _name, _doc in (("supcon", "SupCon pretraining (Khosla et al. 2020), then linear + kNN evaluation."),
                    ("simclr", "SimCLR (label-free SupCon: NT-Xent), then linear + kNN evaluation."),
                    ("supcon_ce", "Cross-entropy baseline with SupCon's augmentation and budget, same evaluations.")):
    RECIPES.register(_name)(Recipe(SupConConfig, build, run, _doc))
