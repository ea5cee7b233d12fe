"""Transfer: a pretrained backbone as a frozen feature extractor (``linear``), with its last block unfrozen
(``partial``), or fully fine-tuned with discriminative learning rates (``finetune``).

The three regimes differ in three visible places only: which blocks are trainable (``Backbone.set_trainable``),
which parameters the optimizer sees and at what rate, and whether frozen blocks run in eval mode (always).
A linear probe without augmentation embeds the images once and trains the head on the cached embeddings.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path
from typing import Any

import torch

from cifarlab.config import TransferConfig
from cifarlab.data import Augment
from cifarlab.data.sources import default_root
from cifarlab.engine import checkpoint
from cifarlab.engine.device import format_name, inference_format, synchronize
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import FitData, FitSpec, batch_statistics, fit
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.engine.rundir import RunDir, read_json
from cifarlab.errors import CheckpointError, ConfigError
from cifarlab.models import Backbone, create_model
from cifarlab.objectives import Classification, FeatureClassification
from cifarlab.recipes.common import (
    RECIPES,
    Prepared,
    Recipe,
    check_finite,
    finish_classifier,
    input_format,
    prepare,
    to_device,
    warn,
)
from cifarlab.recipes.probe import Embedded, probe_head

# LP-FT's first stage: a linear head on standardised frozen embeddings, as the SupCon evaluation trains it
HEAD_INIT_EPOCHS = 20
HEAD_INIT_LR = 0.1


def build_backbone(cfg: TransferConfig, num_classes: int) -> Backbone:
    """The backbone with ``cfg.weights``, or with ``cfg.init`` (a run directory / checkpoint, or ``random``)."""
    if cfg.init:
        model = create_model(cfg.model, num_classes=num_classes, weights="none")
        if cfg.init != "random":
            load_encoder(model, cfg.init)
            model.weights_source = f"init:{cfg.init}"
        return model
    return create_model(cfg.model, num_classes=num_classes, weights=cfg.weights)


def load_encoder(model: Backbone, source: str) -> None:
    """Load the trunk weights of a cifarlab run (its ``best.pt``) or checkpoint into ``model``; the source's head
    (e.g. the rotation classifier) and projection are dropped. Every trunk key must be present."""
    path = Path(source)
    if path.is_dir():
        status = read_json(path / "summary.json").get("status")
        if status != "complete":
            raise CheckpointError(f"init={source}: that run's status is {status or 'unknown (no summary.json)'}, not "
                                  "complete; start from a complete run, or init=random for the control")
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


@torch.no_grad()
def check_input_size(model: Backbone, resolution: int) -> None:
    """One image through the backbone before any training: a resolution its stem shrinks to nothing (AlexNet below
    63 px) is a config error naming the key, not a traceback from the middle of the first epoch."""
    was = model.training
    model.eval()
    try:
        model.forward_features(torch.zeros(1, 3, resolution, resolution))
    except RuntimeError as exc:
        raise ConfigError(f"resolution={resolution} is too small for {model.name} ({str(exc).splitlines()[0]}); "
                          f"use a larger resolution ({model.data_config.input_size} is its native size)") from None
    finally:
        model.train(was)


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


def flip_features(cfg: TransferConfig, p: Prepared) -> bool:
    return cfg.flip_features == "on" or (cfg.flip_features == "auto" and p.device.type == "cuda")


def cached_features(model: Backbone, p: Prepared, cfg: TransferConfig, augment: Augment, flip: bool
                    ) -> tuple[Embedded, dict[str, float]]:
    """Frozen embeddings of the split's train and validation images and of the test images, computed once and kept
    on disk, keyed by backbone, weights, resolution, normalisation, dataset content and the images embedded (split
    and test subset). With ``flip`` (the run's ``flip_features``) each row holds (image, mirrored image): (N, 2, D).
    Also returns the seconds spent on the train/validation and on the test images (0 on a cache hit)."""
    used = torch.cat([p.split.train, p.split.val]).sort().values
    test_keep = p.test_keep.cpu()
    images = hashlib.sha256(used.numpy().tobytes() + b"|" + test_keep.numpy().tobytes()).hexdigest()[:16]
    key = "|".join([model.name, _weights_id(cfg), str(augment.resolution), str(augment.mean), str(augment.std),
                    p.data.digest, images, str(flip), "v2"])
    path = Path(cfg.data_root or default_root()) / "cache" / "embeddings" / (
        hashlib.sha256(key.encode()).hexdigest()[:24] + ".pt")
    if path.is_file():
        try:
            saved = checkpoint.load(path, map_location=p.device)
            if torch.equal(saved["used"].cpu(), used) and len(saved["test"]) == len(test_keep):
                return Embedded(saved["used"], saved["train"], saved["test"]), {"train": 0.0, "test": 0.0}
        except (CheckpointError, KeyError):
            pass  # rebuilt below
    fmt = inference_format(p.device, cfg.channels_last)
    model.eval().to(memory_format=fmt)
    p.memory_format = format_name(fmt)

    def features(x: torch.Tensor) -> torch.Tensor:
        return model.forward_features(augment.eval(x).contiguous(memory_format=fmt))

    def both_flips(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([features(x), features(x.flip(3))], 1)  # (B, 2, D)

    fn = both_flips if flip else features
    used = used.to(p.device)
    t0 = time.perf_counter()
    train = embed(fn, p.fit.x[used], cfg.eval_batch_size, p.device, cfg.amp)
    synchronize(p.device)
    t1 = time.perf_counter()
    emb = Embedded(used, train, embed(fn, p.test_x, cfg.eval_batch_size, p.device, cfg.amp))
    synchronize(p.device)
    seconds = {"train": t1 - t0, "test": time.perf_counter() - t1}
    checkpoint.save({"used": emb.used.cpu(), "train": emb.train.cpu(), "test": emb.test.cpu()}, path)
    return emb, seconds




def _run_cached_linear(cfg: TransferConfig, run_dir: RunDir, p: Prepared, model: Backbone, augment: Augment
                       ) -> dict[str, Any]:
    t0 = time.perf_counter()
    flip = flip_features(cfg, p)
    emb, seconds = cached_features(model, p, cfg, augment, flip)
    check_finite(emb.train, "train/validation embeddings")
    embed_time = time.perf_counter() - t0  # train, validation and test images (or a cache read)
    train_rows, val_rows, y = emb.rows(p.fit.train_idx), emb.rows(p.fit.val_idx), p.fit.y[emb.used]
    if flip:
        # train on both flips as separate examples; validate and test on the mean over flips (TTA)
        n = len(emb.train)
        data = FitData(x=torch.cat([emb.train[:, 0], emb.train[:, 1], emb.train.mean(1)]), y=y.repeat(3),
                       train_idx=torch.cat([train_rows, train_rows + n]), val_idx=val_rows + 2 * n)
        test_f = emb.test.mean(1)
    else:
        data, test_f = FitData(x=emb.train, y=y, train_idx=train_rows, val_idx=val_rows), emb.test
    head = model.head
    optimizer = make_optimizer(param_groups(head.named_parameters(), cfg.weight_decay), cfg)
    result = fit(head, FeatureClassification(cfg.label_smoothing), data, optimizer, FitSpec.from_config(cfg), run_dir,
                 p.device)
    summary = finish_classifier(cfg, run_dir, p, lambda x: x, head, result, model.param_counts(),
                                test_features=test_f)
    return {**summary, "flip_features": flip, "embed_time_s": round(embed_time, 3),
            "embed_train_val_s": round(seconds["train"], 3), "embed_test_s": round(seconds["test"], 3)}


def run(cfg: TransferConfig, run_dir: RunDir) -> dict[str, Any]:
    p = prepare(cfg, run_dir)
    model = build_backbone(cfg, p.data.num_classes)
    dc = model.data_config
    mean, std = (dc.mean, dc.std) if dc.mean else (p.mean, p.std)
    if not dc.cifar_stem and 0 < cfg.resolution < 64:
        warn(f"{cfg.model} has an ImageNet stem (it downsamples 32x); at resolution={cfg.resolution} its last "
             "stages see 1x1 maps. Use resolution>=128, or a CIFAR-stem model")
    resolution = cfg.resolution or (p.data.image_size if dc.cifar_stem else dc.input_size)
    check_input_size(model, resolution)
    regime = cfg.recipe
    preset = cfg.augment if cfg.augment != "auto" else ("none" if regime == "linear" else "cropflip")
    augment = Augment(preset, mean, std, cfg.crop_padding, resolution=resolution,
                      memory_format=input_format(p, cfg), cutout=cfg.cutout)
    model.set_trainable({"linear": "none", "partial": model.partial_blocks(), "finetune": "all"}[regime])
    model, fwd = to_device(model, p, cfg)
    extra = {"regime": regime, "resolution": resolution, "weights": cfg.init or cfg.weights,
             "started_from": model.weights_source,
             "trainable_blocks": [b for b in model.block_names() if b not in model.frozen_blocks],
             "normalisation": {"mean": list(mean), "std": list(std)}}
    extra["augment"] = preset
    if regime == "linear" and preset == "none" and cfg.cache_embeddings:
        return {**_run_cached_linear(cfg, run_dir, p, model, augment), **extra, "embeddings": "cached"}
    # auto follows the weights actually loaded: ImageNet (or other given) weights keep their statistics; random init
    # (also `weights=default` of a model that has no pretrained weights) and a cifarlab run's encoder (e.g. a
    # rotation run's, whose statistics come from another task's inputs) re-estimate them
    norm_stats = cfg.norm_stats if cfg.norm_stats != "auto" else (
        "frozen" if model.weights_source.startswith(("imagenet:", "file:")) else "train")
    if regime != "linear":
        extra["norm_stats"] = norm_stats
        model.set_norm_statistics(norm_stats)
    if regime != "linear" and cfg.head_init == "probe" and not (cfg.resume and run_dir.last_ckpt.is_file()):
        t0 = time.perf_counter()
        # the probe sees the features fine-tuning starts from: with frozen statistics, the running averages (e.g.
        # ImageNet's); otherwise trainable BatchNorm layers on batch statistics
        with (batch_statistics(model) if norm_stats == "train" else contextlib.nullcontext()):
            head = probe_head(p, lambda x: model.forward_features(augment.eval(x)), cfg, HEAD_INIT_EPOCHS,
                              HEAD_INIT_LR, run_dir, pad=False if norm_stats == "train" else None)
        with torch.no_grad():
            model.head.weight.copy_(head.weight)
            model.head.bias.copy_(head.bias)
        extra["head_init_s"] = round(time.perf_counter() - t0, 3)
    extra["head_init"] = cfg.head_init if regime != "linear" else "trained"
    optimizer = make_optimizer(optimizer_groups(model, cfg), cfg)
    result = fit(model, Classification(augment, cfg.label_smoothing), p.fit, optimizer, FitSpec.from_config(cfg),
                 run_dir, p.device, forward_model=fwd)
    model.eval()
    return {**finish_classifier(cfg, run_dir, p, lambda x: fwd.forward_features(augment.eval(x)), model.forward_head,
                                result, model.param_counts()), **extra, "embeddings": "recomputed each epoch"}


for _regime in ("linear", "partial", "finetune"):
    RECIPES.register(_regime)(Recipe(TransferConfig, run, {
        "linear": "Transfer: frozen pretrained backbone + linear head (cached embeddings without augmentation).",
        "partial": "Transfer: last block + head trainable, the rest frozen (BatchNorm included).",
        "finetune": "Transfer: everything trainable, discriminative learning rates (backbone = lr x factor).",
    }[_regime]))
