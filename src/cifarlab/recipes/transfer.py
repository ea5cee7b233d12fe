"""Transfer: a pretrained backbone as a frozen feature extractor (``linear``), with its last block unfrozen
(``partial``), or fully fine-tuned with discriminative learning rates (``finetune``).

The three regimes differ in three visible places only: which blocks are trainable (``Backbone.set_trainable``),
which parameters the optimizer sees and at what rate, and whether frozen blocks run in eval mode (always).
A linear probe without augmentation embeds the images once and trains the head on the cached embeddings.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch

from cifarlab.config import TransferConfig
from cifarlab.data import Augment
from cifarlab.data.sources import default_root
from cifarlab.engine import checkpoint
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import FitData, fit
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CheckpointError
from cifarlab.models import Backbone, create_model
from cifarlab.objectives import Classification, FeatureClassification
from cifarlab.recipes.common import RECIPES, Prepared, Recipe, finish_classifier, input_format, prepare, to_device, warn


def build_backbone(cfg: TransferConfig, num_classes: int) -> Backbone:
    """The backbone with ``cfg.weights``, or with ``cfg.init`` (a run directory / checkpoint, or ``random``)."""
    if cfg.init:
        model = create_model(cfg.model, num_classes=num_classes, weights="none")
        if cfg.init != "random":
            load_encoder(model, cfg.init)
        return model
    return create_model(cfg.model, num_classes=num_classes, weights=cfg.weights)


def load_encoder(model: Backbone, source: str) -> None:
    """Load the trunk weights of a cifarlab run (its ``best.pt``) or checkpoint into ``model``; the source's head
    (e.g. the rotation classifier) and projection are dropped. Every trunk key must be present."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    state = checkpoint.load(path)
    state = state.get("model", state)
    prefix = next((k[: k.index("trunk.") + 6] for k in state if "trunk." in k), None)
    if prefix is None:
        raise CheckpointError(f"{path}: no encoder ('trunk.') weights in it")
    trunk_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = model.trunk.state_dict()
    missing = [k for k in own if k not in trunk_state]
    shapes = [k for k in own if k in trunk_state and trunk_state[k].shape != own[k].shape]
    if missing or shapes:
        raise CheckpointError(f"{path}: encoder does not fit {model.name} (missing: {missing[:6]}; shape "
                              f"mismatches: {shapes[:6]})")
    model.trunk.load_state_dict({k: trunk_state[k] for k in own})


def optimizer_groups(model: Backbone, cfg: TransferConfig) -> list[dict]:
    """Head at ``lr``; trainable blocks at ``lr x backbone_lr_factor x layer_decay^(depth from the last)``."""
    groups = param_groups(model.head.named_parameters(), cfg.weight_decay, 1.0)
    trainable = [b for b in model.block_names() if b not in model.frozen_blocks]
    for depth, block in enumerate(reversed(trainable)):
        scale = cfg.backbone_lr_factor * cfg.layer_decay ** depth
        groups += param_groups(model.block_parameters(block), cfg.weight_decay, scale)
    return groups


def _weights_id(cfg: TransferConfig) -> str:
    source = cfg.init or cfg.weights
    path = Path(source) / "checkpoints" / "best.pt" if Path(source).is_dir() else Path(source)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return source


def cached_features(model: Backbone, p: Prepared, cfg: TransferConfig, augment: Augment) -> dict[str, torch.Tensor]:
    """Frozen embeddings of the used train images and the test images, computed once and kept on disk, keyed by
    backbone, weights, resolution, normalisation and dataset content."""
    key = "|".join([model.name, _weights_id(cfg), str(augment.resolution), str(augment.mean), str(augment.std),
                    p.data.digest, str(cfg.flip_features), "v1"])
    path = Path(cfg.data_root or default_root()) / "cache" / "embeddings" / (
        hashlib.sha256(key.encode()).hexdigest()[:24] + ".pt")
    if path.is_file():
        try:
            return checkpoint.load(path, map_location=p.device)
        except CheckpointError:
            pass  # rebuilt below
    used = torch.cat([p.split.train, p.split.val]).sort().values
    # inference only: channels_last also on the CPU, where it measured 1.8x faster for lite0 at 128 px (oneDNN)
    model.eval().to(memory_format=torch.channels_last)

    def features(x: torch.Tensor) -> torch.Tensor:
        return model.forward_features(augment.eval(x).contiguous(memory_format=torch.channels_last))

    def both_flips(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([features(x), features(x.flip(3))], 1)  # (B, 2, D)

    fn = both_flips if cfg.flip_features else features
    train_x = p.fit.x[used.to(p.device)]
    out = {"train_idx": used.to(p.device), "train": embed(fn, train_x, cfg.eval_batch_size, p.device, cfg.amp),
           "test": embed(fn, p.test_x, cfg.eval_batch_size, p.device, cfg.amp)}
    checkpoint.save({k: v.cpu() for k, v in out.items()}, path)
    return out


def _run_cached_linear(cfg: TransferConfig, run_dir: RunDir, p: Prepared, model: Backbone, augment: Augment
                       ) -> dict[str, Any]:
    t0 = time.perf_counter()
    feats = cached_features(model, p, cfg, augment)
    embed_time = time.perf_counter() - t0  # train, validation and test images (or a cache read)
    pos = torch.full((len(p.fit.y),), -1, dtype=torch.long, device=p.device)
    pos[feats["train_idx"]] = torch.arange(len(feats["train_idx"]), device=p.device)
    train_f, test_f = feats["train"], feats["test"]
    if cfg.flip_features:
        # train on both flips as separate examples; validate and test on the mean over flips (TTA)
        n = len(train_f)
        train_rows = torch.cat([pos[p.fit.train_idx], pos[p.fit.train_idx] + n])
        x = torch.cat([train_f[:, 0], train_f[:, 1], train_f.mean(1)])
        y_used = p.fit.y[feats["train_idx"]]
        y = torch.cat([y_used, y_used, y_used])
        data = FitData(x=x, y=y, train_idx=train_rows, val_idx=pos[p.fit.val_idx] + 2 * n)
        test_f = test_f.mean(1)
    else:
        data = FitData(x=train_f, y=p.fit.y[feats["train_idx"]], train_idx=pos[p.fit.train_idx],
                       val_idx=pos[p.fit.val_idx])
    head = model.head
    optimizer = make_optimizer(param_groups(head.named_parameters(), cfg.weight_decay), cfg)
    result = fit(head, FeatureClassification(cfg.label_smoothing), data, optimizer, cfg, run_dir, p.device)
    summary = finish_classifier(cfg, run_dir, p, lambda x: x, head, result, model.param_counts(),
                                test_features=test_f)
    return {**summary, "embed_time_s": round(embed_time, 3)}


def run(cfg: TransferConfig, run_dir: RunDir) -> dict[str, Any]:
    p = prepare(cfg, run_dir)
    model = build_backbone(cfg, p.data.num_classes)
    dc = model.data_config
    mean, std = (dc.mean, dc.std) if dc.mean else (p.mean, p.std)
    if not dc.cifar_stem and 0 < cfg.resolution < 64:
        warn(f"{cfg.model} has an ImageNet stem (it downsamples 32x); at resolution={cfg.resolution} its last "
             "stages see 1x1 maps. Use resolution>=128, or a CIFAR-stem model")
    resolution = cfg.resolution or (p.data.image_size if dc.cifar_stem else dc.input_size)
    augment = Augment(cfg.augment, mean, std, cfg.crop_padding, resolution=resolution,
                      memory_format=input_format(p, cfg))
    regime = cfg.recipe
    model.set_trainable({"linear": "none", "partial": model.partial_blocks(), "finetune": "all"}[regime])
    model, fwd = to_device(model, p, cfg)
    extra = {"regime": regime, "resolution": resolution, "weights": cfg.init or cfg.weights,
             "trainable_blocks": [b for b in model.block_names() if b not in model.frozen_blocks],
             "normalisation": {"mean": list(mean), "std": list(std)}}
    if regime == "linear" and cfg.augment == "none" and cfg.cache_embeddings:
        return {**_run_cached_linear(cfg, run_dir, p, model, augment), **extra, "embeddings": "cached"}
    optimizer = make_optimizer(optimizer_groups(model, cfg), cfg)
    result = fit(model, Classification(augment, cfg.label_smoothing), p.fit, optimizer, cfg, run_dir, p.device,
                 forward_model=fwd)
    model.eval()
    return {**finish_classifier(cfg, run_dir, p, lambda x: fwd.forward_features(augment.eval(x)), model.forward_head,
                                result, model.param_counts()), **extra, "embeddings": "recomputed each epoch"}


for _regime in ("linear", "partial", "finetune"):
    RECIPES.register(_regime)(Recipe(TransferConfig, run, {
        "linear": "Transfer: frozen pretrained backbone + linear head (cached embeddings without augmentation).",
        "partial": "Transfer: last block + head trainable, the rest frozen (BatchNorm included).",
        "finetune": "Transfer: everything trainable, discriminative learning rates (backbone = lr x factor).",
    }[_regime]))
