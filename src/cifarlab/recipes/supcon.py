"""SupCon / SimCLR pretraining, then linear and kNN evaluation on the frozen encoder; ``supcon_ce`` is the
cross-entropy baseline at the same encoder, epochs and augmentation."""

from __future__ import annotations

from typing import Any

import torch

from cifarlab.config import SupConConfig
from cifarlab.data import ContrastiveViews
from cifarlab.engine import distributed
from cifarlab.engine.fit import FitResult, FitSpec, fit
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.engine.rundir import RunDir
from cifarlab.models import ProjectionHead, create_model
from cifarlab.objectives import Classification, Contrastive, ContrastiveModel, SupConLoss
from cifarlab.recipes.common import RECIPES, Recipe, finish_classifier, prepare, to_device
from cifarlab.recipes.probe import frozen_embeddings, knn_accuracy, linear_probe


class _SingleView:
    """The contrastive augmentation as a one-view preset, so the CE baseline sees the same augmentation."""

    def __init__(self, views: ContrastiveViews) -> None:
        self.views = views

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.views.one(x, gen)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return self.views.eval(x)


def run(cfg: SupConConfig, run_dir: RunDir) -> dict[str, Any]:
    p = prepare(cfg, run_dir)
    views = ContrastiveViews(p.mean, p.std, cfg.views, resolution=cfg.resolution or None)
    backbone = create_model(cfg.model, num_classes=0, weights="none")
    extra: dict[str, Any] = {"objective": cfg.recipe, "temperature": cfg.temperature, "views": cfg.views,
                             "started_from": "none", "resolution": cfg.resolution or p.data.image_size}
    if cfg.recipe == "supcon_ce":
        backbone.reset_classifier(p.data.num_classes)
        model, fwd = to_device(backbone, p, cfg)
        task = Classification(_SingleView(views), cfg.label_smoothing)
    else:
        model = ContrastiveModel(backbone, ProjectionHead(backbone.num_features, cfg.proj_hidden, cfg.proj_dim),
                                 p.data.num_classes if cfg.online_probe else 0)
        model, fwd = to_device(model, p, cfg)
        # under torchrun the loss sees every rank's projections (the global batch), with gradients
        gather = distributed.gather_with_grad if distributed.get().enabled else None
        task = Contrastive(views, SupConLoss(cfg.temperature, gather=gather), use_labels=cfg.recipe == "supcon")
    encoder = backbone  # what the evaluations embed with, in both cases
    probe = getattr(model, "probe", None)
    groups = param_groups(((n, q) for n, q in model.named_parameters() if not n.startswith("probe.")),
                          cfg.weight_decay)
    if probe is not None:
        groups += [{"params": list(probe.parameters()), "weight_decay": 0.0, "lr_scale": cfg.online_probe_lr}]
        extra["online_probe"] = "linear head on detached encoder features: the train_acc/val_acc columns"
    optimizer = make_optimizer(groups, cfg)
    if cfg.epochs:
        pretrain = fit(model, task, p.fit, optimizer, FitSpec.from_config(cfg), run_dir, p.device, forward_model=fwd)
    else:
        pretrain = FitResult()  # the control: evaluate the encoder as initialised
        extra["control"] = "random-init encoder, no pretraining"
    model.eval()
    if cfg.recipe == "supcon_ce":  # the baseline's own classifier, for reference
        with torch.no_grad():
            logits = torch.cat([backbone(views.eval(p.test_x[i:i + 1024])) for i in range(0, len(p.test_x), 1024)])
        extra["ce_test_acc"] = (logits.argmax(1) == p.test_y).float().mean().item()

    def embed_fn(x: torch.Tensor) -> torch.Tensor:
        return encoder.forward_features(views.eval(x))

    emb = frozen_embeddings(p, embed_fn, cfg)
    head, probe = linear_probe(p, emb, cfg, cfg.linear_epochs, cfg.linear_lr, run_dir)
    extra["knn_acc"] = knn_accuracy(p, emb, cfg.knn_k, cfg.knn_temperature)
    summary = finish_classifier(cfg, run_dir, p, embed_fn, head, pretrain, encoder.param_counts(),
                                test_features=emb.test)
    summary.update(extra, linear_acc=summary["test_acc"], pretrain_best_epoch=pretrain.best_epoch,
                   pretrain_best_val_loss=pretrain.best_value, linear_best_val_acc=probe.best_value,
                   best_val_acc=probe.best_value, selection="pretraining: lowest validation loss; linear head: best "
                   "validation accuracy; test evaluated once",
                   evaluation="linear head on standardised frozen encoder embeddings (train-row mean/std)")
    return summary


for _name, _doc in (("supcon", "SupCon pretraining (Khosla et al. 2020), then linear + kNN evaluation."),
                    ("simclr", "SimCLR (label-free SupCon: NT-Xent), then linear + kNN evaluation."),
                    ("supcon_ce", "Cross-entropy baseline with SupCon's augmentation and budget, same evaluations.")):
    RECIPES.register(_name)(Recipe(SupConConfig, run, _doc))
