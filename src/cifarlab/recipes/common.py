"""What every recipe shares: the run lifecycle, data on the device, the final test evaluation.

``execute(cfg)`` opens (and locks) the run directory, runs the recipe, and leaves ``summary.json`` with status
``complete``, ``diverged`` or ``failed`` and the message. The test split is evaluated once, at the end, with the
weights chosen on the validation split.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarlab.config import RunConfig, to_dict
from cifarlab.data import ImageData, Split, load_dataset, make_split, stratified_sample
from cifarlab.data.augment import TTA_VIEWS, tta_view
from cifarlab.engine import distributed, provenance
from cifarlab.engine.device import (
    compile_model,
    device_name,
    format_name,
    free_memory_bytes,
    memory_format,
    peak_memory_mb,
    resolve_device,
    seed_everything,
    set_threads,
    start_warm_up,
)
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import FitData, FitResult
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CifarlabError, ConfigError, TrainingDiverged
from cifarlab.registry import Registry


@dataclass
class Recipe:
    config_class: type[RunConfig]
    run: Callable[[RunConfig, RunDir], dict[str, Any]]
    description: str


RECIPES: Registry[Recipe] = Registry("recipe")
MISCLASSIFIED_KEPT = 32  # test images saved in predictions.npz for the report's grid


@dataclass
class RunResult:
    path: Path
    summary: dict[str, Any]


@dataclass
class Prepared:
    """A run's data, split and device, with the images already on the device."""

    data: ImageData
    split: Split
    device: torch.device
    fit: FitData
    data_load_s: float  # decoding or reading the dataset (excluded from start-up)
    started_at: float  # time.perf_counter() of the run's start (the process's start for its first run)
    test_x: torch.Tensor  # (M, C, H, W) uint8 on the device
    test_y: torch.Tensor
    mean: tuple[float, ...]  # the train split's per-channel statistics, [0, 1] units
    std: tuple[float, ...]
    test_keep: torch.Tensor  # (M,) indices of test_x / test_y in the dataset's test split (CPU)
    compile: str = "off"  # how the training forward runs (``compile`` with ``auto`` resolved)
    memory_format: str = "nchw"  # the model's and its inputs' layout (``engine.device.memory_format``)
    entered_at: float = 0.0  # time.perf_counter() when ``execute`` began (after the process's imports)
    prepared_at: float = 0.0  # ... when the images were on the device and the run directory written


def run_name(cfg: RunConfig) -> str:
    if cfg.name:
        return cfg.name
    ds = cfg.dataset.split(":", 1)[-1].rstrip("/").split("/")[-1].replace(".tar.gz", "").replace(".tar", "")
    subset = f"-pc{cfg.per_class}" if cfg.per_class else f"-f{cfg.train_fraction:g}" if cfg.train_fraction < 1 else ""
    return f"{cfg.recipe}-{cfg.model.replace(':', '_')}-{ds}{subset}-s{cfg.seed}"


def _open(cfg: RunConfig) -> RunDir:
    path = Path(cfg.out) / run_name(cfg)
    if any(c in run_name(cfg) for c in "/\\") or run_name(cfg) in ("", ".", ".."):
        raise ConfigError(f"name={cfg.name!r}: a run name must not contain '/' or be '.'/'..'")
    return RunDir(path)


def _check_existing(cfg: RunConfig, run: RunDir) -> None:
    summary = run.read_summary()
    if not summary:
        return
    if cfg.overwrite:
        run.clear()
        return
    if cfg.resume:
        return
    raise CifarlabError(f"run directory {run.path} already holds a run (status {summary.get('status', '?')}); "
                        "use --resume to continue it, --overwrite to replace it, or --name for a new one")


@dataclass
class _RunClock:
    """When the current run started (the process's start, for its first run: the interpreter's start and the
    imports count as its start-up) and when ``execute`` began, as ``time.perf_counter()`` values."""

    started_at: float = 0.0
    entered_at: float = 0.0
    first_run: bool = True

    def start(self) -> None:
        self.entered_at = time.perf_counter()
        self.started_at = self.entered_at - (provenance.process_age_s() if self.first_run else 0.0)
        self.first_run = False


_CLOCK = _RunClock()


def execute(cfg: RunConfig) -> RunResult:
    """Run ``cfg.recipe`` into its run directory and return the final summary (raises on failure)."""
    _CLOCK.start()
    distributed.setup()
    recipe: Recipe = RECIPES.get(cfg.recipe)
    if not isinstance(cfg, recipe.config_class):
        raise ConfigError(f"recipe {cfg.recipe!r} needs a {recipe.config_class.__name__}")
    with _open(cfg) as run:
        if run.writable:
            _check_existing(cfg, run)
        distributed.barrier()  # other ranks start once rank 0 has cleared or claimed the directory
        if cfg.resume and run.read_summary().get("status") == "complete":
            return RunResult(run.path, run.read_summary())
        run.update_summary(recipe=cfg.recipe, model=cfg.model, dataset=cfg.dataset, status="running",
                           started=provenance.now(), error=None, **({"study_series": cfg.series} if cfg.series else {}))
        try:
            summary = recipe.run(cfg, run)
        except TrainingDiverged as exc:
            run.update_summary(status="diverged", error=str(exc))
            raise
        except CifarlabError as exc:
            run.fail(str(exc))
            raise
        except KeyboardInterrupt:
            run.fail("interrupted; continue with --resume")
            raise
        except Exception as exc:
            run.fail(f"{type(exc).__name__}: {exc}")
            raise
        summary = run.update_summary(**summary, status="complete", finished=provenance.now())
        return RunResult(run.path, summary)


def prepare(cfg: RunConfig, run: RunDir) -> Prepared:
    """Threads, seed, device, data, split; writes config.json and split.npz; moves the images to the device."""
    set_threads(cfg.num_threads)
    seed_everything(cfg.seed, cfg.deterministic, cfg.cudnn_benchmark)
    device = resolve_device(cfg.device)
    warm_up = start_warm_up(device)  # the CUDA start overlaps the dataset's loading
    t0 = time.perf_counter()
    data = load_dataset(cfg.dataset, cfg.data_root or None, cfg.image_size)
    data_load_s = time.perf_counter() - t0
    # label-free recipes split without looking at labels (all images one stratum), so labels cannot leak in; their
    # per_class still means what it says for the others: per_class x classes images (drawn without labels)
    label_free = getattr(cfg, "label_free", False)
    strata = torch.zeros_like(data.train_y) if label_free else data.train_y
    per_class = cfg.per_class * (data.num_classes if label_free else 1)
    split = make_split(strata, per_class=per_class, train_fraction=cfg.train_fraction,
                       val_fraction=cfg.val_fraction, seed=cfg.seed)
    test_keep = torch.arange(len(data.test_y))
    if cfg.test_per_class or cfg.test_fraction < 1.0:
        test_keep = make_split(data.test_y, per_class=cfg.test_per_class, train_fraction=cfg.test_fraction,
                               val_fraction=0.0, seed=cfg.seed).train
    if warm_up is not None:
        warm_up.join()
    _check_fits(data, device)
    train_x = data.train_x.to(device)
    mean, std = data.channel_stats(split.train, train_x)
    run.save_npz("split.npz", train=split.train.numpy(), val=split.val.numpy(), test=test_keep.numpy())
    run.write_config({
        "config": to_dict(cfg), "versions": provenance.versions(), "git_commit": provenance.git_commit(),
        "command": sys.argv, "host": platform.node(), "machine": provenance.machine(),
        "device": device_name(device), "threads": torch.get_num_threads(), "started": provenance.now(),
        "dataset": {"spec": cfg.dataset, "name": data.name, "digest": data.digest, "classes": data.classes,
                    "num_train_total": len(data.train_y), "num_test": len(data.test_y),
                    "image_size": data.image_size},
        "split": {"digest": split.digest(), "seed": cfg.seed, "num_train": len(split.train),
                  "num_val": len(split.val), "per_class": cfg.per_class, "train_fraction": cfg.train_fraction,
                  "val_fraction": cfg.val_fraction, "indices": "split.npz"},
        "normalisation_data": {"mean": mean, "std": std},
        "protocol": "model selection on the validation split carved from train; test evaluated once at the end",
    })
    fit = FitData(x=train_x, y=data.train_y.to(device), train_idx=split.train.to(device),
                  val_idx=split.val.to(device))
    test_x, test_y = data.test_x[test_keep].to(device), data.test_y[test_keep].to(device)
    return Prepared(data, split, device, fit, data_load_s, _CLOCK.started_at, test_x, test_y, mean, std, test_keep,
                    entered_at=_CLOCK.entered_at, prepared_at=time.perf_counter())


def _check_fits(data: ImageData, device: torch.device) -> None:
    """Fail before training when the dataset alone would not fit on the device."""
    need = data.train_x.nbytes + data.test_x.nbytes
    free = free_memory_bytes(device)
    if device.type == "cuda" and free is not None and need > 0.8 * free:
        raise CifarlabError(f"the dataset needs {need / 2**30:.1f} GiB on {device} but only {free / 2**30:.1f} GiB "
                            "is free; use a smaller --image-size, --per-class/--train-fraction, or device=cpu")


def to_device(model: nn.Module, p: Prepared, cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """Move ``model`` to the device (channels_last on CUDA) and return (model, the module to call)."""
    if cfg.sync_bn and distributed.get().enabled:
        model = distributed.sync_batchnorm(model, p.device)
    fmt = memory_format(p.device, cfg.channels_last)
    model.to(p.device, memory_format=fmt)
    p.memory_format = format_name(fmt)
    p.compile = compile_mode(cfg, p)
    return model, compile_model(model, p.compile)


# training images (epochs x train split) from which compiling with CUDA graphs pays back its compilation: on an
# H100 it took 12.9 s and saved 4.5 us per image against eager (ResNet18, batch 1024): 2.9M images, rounded up;
# plain compile saved less (2.8 us) for more (20 s). See docs/results.md, "torch.compile and CUDA graphs".
COMPILE_MIN_IMAGES = 3_000_000


def compile_mode(cfg: RunConfig, p: Prepared) -> str:
    """``cfg.compile`` with ``auto`` resolved: CUDA graphs on a single CUDA device when the run trains on enough
    images to win back the compilation; eager otherwise (on the CPU compiling never paid back)."""
    if cfg.compile != "auto":
        return cfg.compile
    work = cfg.epochs * len(p.split.train)
    single_cuda = p.device.type == "cuda" and not distributed.get().enabled
    return "cudagraphs" if single_cuda and work >= COMPILE_MIN_IMAGES else "off"


def input_format(p: Prepared, cfg: RunConfig) -> torch.memory_format:
    """The memory format batches are handed to the model in (channels_last on CUDA unless switched off)."""
    return memory_format(p.device, cfg.channels_last)


def warn(msg: str) -> None:
    """A warning for the user, printed once (the CLI shows no Python warning machinery)."""
    print(f"warning: {msg}", file=sys.stderr)


@torch.no_grad()
def finish_classifier(cfg: RunConfig, run: RunDir, p: Prepared, features_fn: Callable[[torch.Tensor], torch.Tensor],
                      head_fn: Callable[[torch.Tensor], torch.Tensor], result: FitResult,
                      params: dict[str, int], test_features: torch.Tensor | None = None) -> dict[str, Any]:
    """Evaluate the selected weights on the test split once; write predictions.npz; return summary fields.

    Args:
        features_fn: uint8 images -> embeddings (penultimate features).
        head_fn: embeddings -> logits.
        test_features: precomputed test embeddings (cached linear probes) instead of ``features_fn``.
    """
    feats = test_features if test_features is not None else embed(features_fn, p.test_x, cfg.eval_batch_size,
                                                                   p.device, cfg.amp)
    check_finite(feats, "test embeddings")
    logits = torch.cat([head_fn(feats[i:i + 4096]).float() for i in range(0, len(feats), 4096)])
    preds = logits.argmax(1)
    labels = p.test_y
    test_acc = (preds == labels).float().mean().item()
    tta = {}
    if test_features is None and (cfg.tta == "on" or (cfg.tta == "auto" and p.device.type == "cuda")):
        tta_logits = test_time_augmented_logits(features_fn, head_fn, p.test_x, cfg)
        tta = {"test_acc_tta": (tta_logits.argmax(1) == labels).float().mean().item(),
               "tta": f"mean logits over {len(TTA_VIEWS)} views: identity and mirror, each also shifted by "
                      "(2, 2) and (-2, -2) pixels"}
    test_loss = nn.functional.cross_entropy(logits, labels).item()
    keep = stratified_sample(labels.cpu(), cfg.embed_samples, seed=cfg.seed)
    conf = logits.softmax(1).max(1).values
    wrong = torch.nonzero(preds != labels).flatten()
    mis = wrong[conf[wrong].argsort(descending=True)[:MISCLASSIFIED_KEPT]]  # the most confident mistakes
    run.save_npz("predictions.npz", labels=labels.cpu().numpy(), preds=preds.cpu().numpy(),
             logits=logits.cpu().numpy().astype(np.float32), classes=np.array(p.data.classes),
             embed_idx=keep.numpy(), embeddings=feats[keep.to(feats.device)].cpu().numpy().astype(np.float16),
             mis_idx=mis.cpu().numpy(), mis_conf=conf[mis].cpu().numpy(),
             mis_images=p.test_x[mis].permute(0, 2, 3, 1).cpu().numpy())
    best = result.history[result.best_epoch - 1] if result.best_epoch else {}
    return {
        "test_acc": test_acc, "test_loss": test_loss, "best_val_acc": best.get("val_acc"),
        "selection": "best validation accuracy" if len(p.split.val) else "last epoch (no validation split)",
        **tta, **fit_summary(result, p), **params,
    }


@torch.no_grad()
def test_time_augmented_logits(features_fn: Callable[[torch.Tensor], torch.Tensor],
                               head_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                               cfg: RunConfig) -> torch.Tensor:
    """Mean logits over the TTA views of ``x`` (uint8 on the device): (M, K)."""
    total = None
    for view in TTA_VIEWS:
        feats = embed(features_fn, tta_view(x, view), cfg.eval_batch_size, x.device, cfg.amp)
        logits = torch.cat([head_fn(feats[i:i + 4096]).float() for i in range(0, len(feats), 4096)])
        total = logits if total is None else total + logits
    return total / len(TTA_VIEWS)


def fit_summary(result: FitResult, p: Prepared) -> dict[str, Any]:
    """The summary fields every trained run has: budget, model selection, speed, start-up and memory."""
    out = {"epochs": len(result.history), "best_epoch": result.best_epoch,
           "train_time_s": round(result.train_time_s, 3), "epochs_wall_s": round(result.epochs_wall_s, 3),
           "images_per_s": round(result.images_per_s, 1), "num_train": len(p.split.train),
           "num_val": len(p.split.val), "num_test": len(p.test_y), "classes": p.data.classes,
           "peak_memory_mb": peak_memory_mb(p.device), "data_load_s": round(p.data_load_s, 3), "compile": p.compile,
           "memory_format": p.memory_format,
           **result.timing()}
    if result.first_step_at is not None:  # process (or run) start to the first optimizer step, data loading excluded
        out["startup_s"] = round(result.first_step_at - p.started_at - p.data_load_s, 3)
        # where it went: interpreter + imports, then device set-up + data to the device + run directory (decode
        # excluded), then model, optimizer and the first step (CUDA kernels' first launches, compilation)
        out["startup_parts_s"] = {"imports": round(p.entered_at - p.started_at, 3),
                                  "prepare": round(p.prepared_at - p.entered_at - p.data_load_s, 3),
                                  "model_to_first_step": round(result.first_step_at - p.prepared_at, 3)}
    if result.first_epoch_marks:
        out["first_epoch_steps_s"] = result.first_epoch_marks
    if result.bn_lag_epochs:
        out["bn_lag_epochs"] = result.bn_lag_epochs
    return out


def check_finite(x: torch.Tensor, what: str) -> None:
    """Non-finite embeddings mean the encoder diverged: stop before they reach the evaluation or the report."""
    bad = int((~torch.isfinite(x)).any(dim=tuple(range(1, x.dim()))).sum()) if x.dim() > 1 else \
        int((~torch.isfinite(x)).sum())
    if bad:
        raise TrainingDiverged(f"diverged: {bad} of {len(x)} {what} are not finite; the encoder's weights blew up "
                               "(lower the learning rate)")
