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
from cifarlab.engine.device import synchronize
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import fit
from cifarlab.engine.health import batch_statistics
from cifarlab.engine.optim import param_groups
from cifarlab.engine.rundir import read_json
from cifarlab.errors import CheckpointError, ConfigError
from cifarlab.models import Backbone, create_model
from cifarlab.objectives import Classification
from cifarlab.progress import Line
from cifarlab.recipes.context import RunContext, fit_spec, run_optimizer
from cifarlab.recipes.evaluate import check_finite, finish_classifier, fit_io, input_format, to_device
from cifarlab.recipes.execute import RECIPES, Recipe
from cifarlab.recipes.linear_eval import (
    PROTOCOL,
    Embedded,
    LinearBudget,
    Standardized,
    embed_split,
    evaluation_budget,
    feature_scaler,
    fold_scaler,
    train_head,
)


def build(cfg: TransferConfig, num_classes: int) -> Backbone:
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
    """Head at ``lr``; trainable blocks at ``lr x backbone_lr_factor x layer_decay^(depth from the last)``, each
    group named after its block (the log and ``lr_groups`` list every rate)."""
    groups = param_groups(model.head.named_parameters(), cfg.weight_decay, 1.0, name="head")
    trainable = [b for b in model.block_names() if b not in model.frozen_blocks]
    for depth, block in enumerate(reversed(trainable)):
        scale = cfg.backbone_lr_factor * cfg.layer_decay ** depth
        groups += param_groups(model.block_parameters(block), cfg.weight_decay, scale, name=block)
    return groups


def _weights_id(cfg: TransferConfig) -> str:
    source = cfg.init or cfg.weights
    path = Path(source) / "checkpoints" / "best.pt" if Path(source).is_dir() else Path(source)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return source


def cached_features(model: Backbone, ctx: RunContext, augment: Augment) -> tuple[Embedded, dict[str, Any]]:
    """Frozen embeddings of the split's train and validation images and of the test images, computed once and kept
    on disk, keyed by backbone, weights, resolution, normalisation, dataset content and the images embedded (split
    and test subset). With the run's ``flip_features`` each row holds (image, mirrored image): (N, 2, D).

    Also returns how they were had: ``embedding_cache`` hit or miss, ``embed_time_s`` (the seconds the embedding
    took when it was computed: stored with the cache, so a hit reports the cost it saves, not 0),
    ``embed_train_val_s`` / ``embed_test_s`` (its parts) and ``embed_read_s`` (this run's seconds)."""
    cfg, loaded = ctx.cfg, ctx.loaded
    flip = bool(ctx.resolved.flip_features)
    t_start = time.perf_counter()
    used = torch.cat([loaded.split.train, loaded.split.val]).sort().values
    test_keep = loaded.test_keep.cpu()
    images = hashlib.sha256(used.numpy().tobytes() + b"|" + test_keep.numpy().tobytes()).hexdigest()[:16]
    key = "|".join([model.name, _weights_id(cfg), str(augment.resolution), str(augment.mean), str(augment.std),
                    loaded.data.digest, images, str(flip), "v3"])
    path = Path(cfg.data_root or default_root()) / "cache" / "embeddings" / (
        hashlib.sha256(key.encode()).hexdigest()[:24] + ".pt")
    if path.is_file():
        try:
            saved = checkpoint.load(path, map_location=ctx.device)
            if torch.equal(saved["used"].cpu(), used) and len(saved["test"]) == len(test_keep):
                seconds = {k: float(v) for k, v in saved["seconds"].items()}
                return Embedded(saved["used"], saved["train"], saved["test"]), {
                    "embedding_cache": "hit", "embed_time_s": round(seconds["train"] + seconds["test"], 3),
                    "embed_train_val_s": round(seconds["train"], 3), "embed_test_s": round(seconds["test"], 3),
                    "embed_read_s": round(time.perf_counter() - t_start, 3)}
        except (CheckpointError, KeyError):
            pass  # rebuilt below
    fmt = torch.channels_last if ctx.resolved.inference_format == "channels_last" else torch.contiguous_format
    model.eval().to(memory_format=fmt)

    def features(x: torch.Tensor) -> torch.Tensor:
        return model.forward_features(augment.eval(x).contiguous(memory_format=fmt))

    def both_flips(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([features(x), features(x.flip(3))], 1)  # (B, 2, D)

    fn = both_flips if flip else features
    used = used.to(ctx.device)
    t0 = time.perf_counter()
    show = ctx.resolved.progress
    train = embed(fn, loaded.train.x[used.to(loaded.train.x.device)], cfg.eval_batch_size, ctx.device,
                  ctx.resolved.amp, progress=Line(show, f"embedding train/val @{augment.resolution}px"))
    synchronize(ctx.device)
    t1 = time.perf_counter()
    emb = Embedded(used, train, embed(fn, loaded.test_x, cfg.eval_batch_size, ctx.device, ctx.resolved.amp,
                                      progress=Line(show, f"embedding test @{augment.resolution}px")))
    synchronize(ctx.device)
    seconds = {"train": t1 - t0, "test": time.perf_counter() - t1}
    checkpoint.save({"used": emb.used.cpu(), "train": emb.train.cpu(), "test": emb.test.cpu(), "seconds": seconds},
                    path)
    return emb, {"embedding_cache": "miss", "embed_time_s": round(seconds["train"] + seconds["test"], 3),
                 "embed_train_val_s": round(seconds["train"], 3), "embed_test_s": round(seconds["test"], 3),
                 "embed_read_s": round(time.perf_counter() - t_start, 3)}


def _run_cached_linear(ctx: RunContext, model: Backbone, augment: Augment) -> dict[str, Any]:
    """The ``linear`` recipe on cached embeddings: the one linear protocol with the recipe's own budget (epochs, lr
    and its batch rule, batch size, weight decay, label smoothing, optimizer, schedule)."""
    cfg = ctx.cfg
    emb, how = cached_features(model, ctx, augment)
    check_finite(emb.train, "train/validation embeddings")
    flip = bool(ctx.resolved.flip_features)
    budget = LinearBudget(cfg.epochs, cfg.lr, cfg.batch_size, cfg.weight_decay, cfg.label_smoothing, cfg.optimizer,
                          cfg.schedule, "metrics.csv")
    head, result = train_head(ctx, emb, budget, flip=flip, io=fit_io(ctx), head=model.head)
    checkpoint.save({"model": head.state_dict(), "epoch": result.best_epoch, "value": result.best_value,
                     "note": "the selected head, taking raw (unstandardised) embeddings"}, ctx.run.best_ckpt)
    test_f = emb.test.mean(1) if flip else emb.test
    summary = finish_classifier(ctx, lambda x: x, head, result, model.param_counts(), test_features=test_f)
    return {**summary, "flip_features": flip, **how, "evaluation": PROTOCOL}


def run(ctx: RunContext, model: Backbone) -> dict[str, Any]:
    cfg, r = ctx.cfg, ctx.resolved
    dc = model.data_config
    if not dc.cifar_stem and 0 < cfg.resolution < 64:
        # information, not advice: a resolution set this low is a choice (a course assignment's network at 32 px is
        # the point of its arm), so the note states what it costs and leaves the choice standing
        ctx.log(f"note: {cfg.model} has an ImageNet stem (it downsamples 32x), so at resolution={cfg.resolution} "
                "its last stages see 1x1 maps; the same network usually scores higher at 128 px or more (slower), "
                "and a CIFAR-stem model keeps 4x4 maps at 32 px. Running at the resolution the config sets")
    check_input_size(model, r.resolution)
    regime = cfg.recipe
    mean, std = tuple(r.normalisation["mean"]), tuple(r.normalisation["std"])
    augment = Augment(r.augment, mean, std, r.crop_padding, resolution=r.resolution,
                      memory_format=input_format(ctx), cutout=cfg.cutout)
    model.set_trainable({"linear": "none", "partial": model.partial_blocks(), "finetune": "all"}[regime])
    extra = {"regime": regime, "resolution": r.resolution, "weights": cfg.init or cfg.weights,
             "trainable_blocks": [b for b in model.block_names() if b not in model.frozen_blocks],
             "normalisation": r.normalisation, "augment": r.augment}
    if regime == "linear" and r.flip_features is not None:
        model.to(ctx.device)
        return {**_run_cached_linear(ctx, model, augment), **extra, "embeddings": "cached"}
    model, fwd = to_device(model, ctx)
    if regime != "linear":
        extra["norm_stats"] = r.norm_stats
        model.set_norm_statistics(r.norm_stats)
    if regime != "linear" and cfg.head_init == "linear" and not (cfg.resume and ctx.run.last_ckpt.is_file()):
        t0 = time.perf_counter()
        # the probe sees the features fine-tuning starts from: with frozen statistics, the running averages (e.g.
        # ImageNet's); otherwise trainable BatchNorm layers on batch statistics
        train_stats = r.norm_stats == "train"
        with (batch_statistics(model) if train_stats else contextlib.nullcontext()):
            emb = embed_split(ctx, lambda x: model.forward_features(augment.eval(x)), with_test=False,
                              pad=False if train_stats else None)
        head, _ = train_head(ctx, emb, evaluation_budget(ctx, cfg.head_init_epochs, cfg.head_init_lr,
                                                         cfg.label_smoothing, "head_init_metrics.csv"))
        with torch.no_grad():
            model.head.weight.copy_(head.weight)
            model.head.bias.copy_(head.bias)
        extra["head_init_s"] = round(time.perf_counter() - t0, 3)
    extra["head_init"] = cfg.head_init if regime != "linear" else "trained"
    optimizer = run_optimizer(cfg, optimizer_groups(model, cfg))
    trained, forward, scaler = model, fwd, None
    if regime == "linear":  # the one protocol re-running the frozen backbone: standardised features, then the head
        emb = embed_split(ctx, lambda x: model.forward_features(augment.eval(x)), with_test=False)
        scaler = feature_scaler(emb.train[emb.rows(ctx.loaded.train.train_idx)])
        trained = Standardized(model, *scaler)
        forward = trained if fwd is model else Standardized(fwd, *scaler)
        extra["evaluation"] = PROTOCOL
    result = fit(trained, Classification(augment, cfg.label_smoothing), ctx.loaded.train, optimizer,
                 fit_spec(cfg, r), fit_io(ctx), forward_model=forward)
    model.eval()
    if scaler is not None:  # the selected head, folded to take raw embeddings, is what best.pt keeps
        fold_scaler(model.head, *scaler)
        checkpoint.save({"model": model.state_dict(), "epoch": result.best_epoch, "value": result.best_value},
                        ctx.run.best_ckpt)
    return {**finish_classifier(ctx, lambda x: fwd.forward_features(augment.eval(x)), model.forward_head, result,
                                model.param_counts()), **extra, "embeddings": "recomputed each epoch"}


for _regime in ("linear", "partial", "finetune"):
    RECIPES.register(_regime)(Recipe(TransferConfig, build, run, {
        "linear": "Transfer: frozen pretrained backbone + linear head (cached embeddings without augmentation).",
        "partial": "Transfer: last block + head trainable, the rest frozen; BatchNorm statistics per norm_stats: "
                   "kept from pretrained weights, re-estimated from each batch (frozen blocks too) from random "
                   "weights or --init.",
        "finetune": "Transfer: everything trainable, discriminative learning rates (backbone = lr x factor).",
    }[_regime]))
