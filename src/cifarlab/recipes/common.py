"""What every recipe shares: the run lifecycle, data on the device, the final test evaluation.

``execute(cfg)`` opens (and locks) the run directory, runs the recipe, and leaves ``summary.json`` with status
``complete`` or ``failed`` and the message. The test split is evaluated once, at the end, with the weights chosen
on the validation split.
"""

from __future__ import annotations

import datetime as _dt
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarlab import __version__
from cifarlab.config import RunConfig, to_dict
from cifarlab.data import ImageData, Split, load_dataset, make_split, stratified_sample
from cifarlab.engine import distributed
from cifarlab.engine.device import memory_format, resolve_device, seed_everything, set_threads
from cifarlab.engine.embed import embed
from cifarlab.engine.fit import FitData, FitResult
from cifarlab.engine.rundir import RunDir
from cifarlab.errors import CifarlabError, ConfigError
from cifarlab.registry import Registry


@dataclass
class Recipe:
    config_class: type[RunConfig]
    run: Callable[[RunConfig, RunDir], dict[str, Any]]
    description: str


RECIPES: Registry = Registry("recipe")
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
    test_x: torch.Tensor  # (M, C, H, W) uint8 on the device
    test_y: torch.Tensor
    mean: tuple[float, ...]  # the train split's per-channel statistics, [0, 1] units
    std: tuple[float, ...]
    test_keep: torch.Tensor  # (M,) indices of test_x / test_y in the dataset's test split (CPU)


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


def execute(cfg: RunConfig) -> RunResult:
    """Run ``cfg.recipe`` into its run directory and return the final summary (raises on failure)."""
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
                           started=_now(), error=None)
        try:
            summary = recipe.run(cfg, run)
        except CifarlabError as exc:
            run.fail(str(exc))
            raise
        except KeyboardInterrupt:
            run.fail("interrupted; continue with --resume")
            raise
        except Exception as exc:
            run.fail(f"{type(exc).__name__}: {exc}")
            raise
        summary = run.update_summary(**summary, status="complete", finished=_now())
        return RunResult(run.path, summary)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    import torchvision

    out = {"python": platform.python_version(), "cifarlab": __version__, "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": np.__version__}
    try:
        import timm

        out["timm"] = timm.__version__
    except ImportError:
        pass
    return out


def prepare(cfg: RunConfig, run: RunDir) -> Prepared:
    """Threads, seed, device, data, split; writes config.json and split.npz; moves the images to the device."""
    set_threads(cfg.num_threads)
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.data_root or None, cfg.image_size)
    # label-free recipes split without looking at labels (all images one stratum), so labels cannot leak in
    strata = torch.zeros_like(data.train_y) if getattr(cfg, "label_free", False) else data.train_y
    split = make_split(strata, per_class=cfg.per_class, train_fraction=cfg.train_fraction,
                       val_fraction=cfg.val_fraction, seed=cfg.seed)
    test_keep = torch.arange(len(data.test_y))
    if cfg.test_per_class:
        test_keep = make_split(data.test_y, per_class=cfg.test_per_class, val_fraction=0.0, seed=cfg.seed).train
    x_used = data.train_x[split.train].double().div_(255)
    mean = tuple(round(v, 4) for v in x_used.mean(dim=(0, 2, 3)).tolist())
    std = tuple(round(v, 4) for v in x_used.std(dim=(0, 2, 3)).tolist())
    del x_used
    run.save_npz("split.npz", train=split.train.numpy(), val=split.val.numpy(), test=test_keep.numpy())
    run.write_config({
        "config": to_dict(cfg), "versions": versions(), "git_commit": _git_commit(), "command": sys.argv,
        "host": platform.node(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": _device_name(device), "threads": torch.get_num_threads(), "started": _now(),
        "dataset": {"spec": cfg.dataset, "name": data.name, "digest": data.digest, "classes": data.classes,
                    "num_train_total": len(data.train_y), "num_test": len(data.test_y),
                    "image_size": data.image_size},
        "split": {"digest": split.digest(), "seed": cfg.seed, "num_train": len(split.train),
                  "num_val": len(split.val), "per_class": cfg.per_class, "train_fraction": cfg.train_fraction,
                  "val_fraction": cfg.val_fraction, "indices": "split.npz"},
        "normalisation_data": {"mean": mean, "std": std},
        "protocol": "model selection on the validation split carved from train; test evaluated once at the end",
    })
    _check_fits(data, device)
    fit = FitData(x=data.train_x.to(device), y=data.train_y.to(device), train_idx=split.train.to(device),
                  val_idx=split.val.to(device))
    return Prepared(data, split, device, fit, data.test_x[test_keep].to(device), data.test_y[test_keep].to(device),
                    mean, std, test_keep)


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of the device (CUDA) or available RAM (Linux CPU); None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_fits(data: ImageData, device: torch.device) -> None:
    """Fail before training when the dataset alone would not fit on the device."""
    need = data.train_x.nbytes + data.test_x.nbytes
    free = free_memory_bytes(device)
    if device.type == "cuda" and free is not None and need > 0.8 * free:
        raise CifarlabError(f"the dataset needs {need / 2**30:.1f} GiB on {device} but only {free / 2**30:.1f} GiB "
                            "is free; use a smaller --image-size, --per-class/--train-fraction, or device=cpu")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


def to_device(model: nn.Module, p: Prepared, cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """Move ``model`` to the device (channels_last on CUDA) and return (model, the module to call)."""
    if cfg.sync_bn and distributed.get().enabled:
        model = distributed.sync_batchnorm(model, p.device)
    fmt = memory_format(p.device, cfg.channels_last)
    model.to(p.device, memory_format=fmt)
    fwd: nn.Module = model
    if cfg.compile:
        fwd = torch.compile(model)  # type: ignore[assignment]
    return model, fwd


def input_format(p: Prepared, cfg: RunConfig) -> torch.memory_format:
    """The memory format batches are handed to the model in (channels_last on CUDA unless switched off)."""
    return memory_format(p.device, cfg.channels_last)


def warn(msg: str) -> None:
    """A warning for the user, printed once (the CLI shows no Python warning machinery)."""
    print(f"warning: {msg}", file=sys.stderr)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


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
    logits = torch.cat([head_fn(feats[i:i + 4096]).float() for i in range(0, len(feats), 4096)])
    preds = logits.argmax(1)
    labels = p.test_y
    test_acc = (preds == labels).float().mean().item()
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
        "epochs": len(result.history), "test_acc": test_acc, "test_loss": test_loss,
        "best_val_acc": best.get("val_acc"), "best_epoch": result.best_epoch,
        "selection": "best validation accuracy" if len(p.split.val) else "last epoch (no validation split)",
        "train_time_s": round(result.train_time_s, 3), "epochs_wall_s": round(result.epochs_wall_s, 3),
        "images_per_s": round(result.images_per_s, 1), "num_train": len(p.split.train),
        "num_val": len(p.split.val), "num_test": len(labels),
        "classes": p.data.classes, "peak_memory_mb": peak_memory_mb(p.device), **params,
    }
