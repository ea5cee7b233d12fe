"""The run context: built once by ``execute`` before the first step, read by the recipe, never written afterwards.

:func:`prepare` loads the data, carves the split and moves the images to the device; :func:`resolve` turns every
``auto`` of the config into the value the run uses (device, mixed precision, memory format, compilation, test-time
augmentation, flip features, BatchNorm statistics, augmentation, resolution, progress, learning rate and warm-up),
in one place, from the config, the device, the split and the model the recipe built. Both go into
:class:`RunContext` and into ``config.json`` (its ``resolved`` block).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cifarlab.config import RunConfig, to_dict
from cifarlab.data import ImageData, Split, load_dataset, make_split, placement
from cifarlab.data.augment import TTA_VIEWS, size_rule
from cifarlab.data.sources import default_root
from cifarlab.engine import distributed, fingerprint, provenance
from cifarlab.engine.device import (
    allocator_state,
    device_name,
    format_name,
    inference_format,
    memory_format,
    resolve_amp,
    resolve_device,
    retain_freed_memory,
    seed_everything,
    set_threads,
    start_warm_up,
)
from cifarlab.engine.fit import FitSpec
from cifarlab.engine.loop import FitData, StepPlan
from cifarlab.engine.optim import make_optimizer
from cifarlab.engine.rundir import RunDir
from cifarlab.models import Backbone
from cifarlab.progress import enabled as progress_enabled


@dataclass(frozen=True)
class RunClock:
    """When the run started (the process's start, for its first run: the interpreter's start and the imports count
    as its start-up) and when ``execute`` began, as ``time.perf_counter()`` values."""

    started_at: float
    entered_at: float

    @classmethod
    def start(cls) -> RunClock:
        entered = time.perf_counter()
        first = not _PROCESS_RAN[0]  # the process's first run pays the interpreter's start and the imports
        _PROCESS_RAN[0] = True
        return cls(entered - (provenance.process_age_s() if first else 0.0), entered)


_PROCESS_RAN = [False]  # a fact about the process (whether a run already paid its imports), not about a run


@dataclass(frozen=True)
class Loaded:
    """The data of a run on its device: the split, the training images and the test images it evaluates."""

    device: torch.device
    data: ImageData
    split: Split
    train: FitData
    test_x: torch.Tensor  # (M, C, H, W) uint8 on the device
    test_y: torch.Tensor
    test_keep: torch.Tensor  # (M,) indices of test_x / test_y in the dataset's test split (CPU)
    mean: tuple[float, ...]  # the train split's per-channel statistics, [0, 1] units
    std: tuple[float, ...]
    data_load_s: float  # decoding or reading the dataset (excluded from start-up)


@dataclass(frozen=True)
class Resolved:
    """Every decision a config leaves to the run, as it was taken (``config.json``'s ``resolved`` block)."""

    device: str
    amp: str  # bf16 | fp16 | off
    memory_format: str  # of the trained model and its inputs: channels_last | nchw
    inference_format: str  # of frozen-backbone embedding passes
    compile: str  # off | on | cudagraphs
    tta: bool
    progress: str  # on | off
    augment: str  # the training augmentation policy
    crop_padding: int  # its crop padding, pixels at the data's side
    resolution: int  # the side images are resized to on the device
    normalisation: dict[str, list[float]]  # mean / std, [0, 1] units
    started_from: str  # imagenet:<source> | file:<path> | none | init:<run dir>
    norm_stats: str | None  # transfer with training: frozen | train
    flip_features: bool | None  # cached linear probe
    lr: float  # peak learning rate at the batch used
    lr_rule: str
    batch_size: int
    steps_per_epoch: int
    warmup_steps: int
    warmup_note: str  # '' or why the warm-up differs from the one asked for / outlasts the run
    num_test: int
    tta_views: list[list[Any]]
    cpu_allocator: str  # default | retain | unavailable (engine.device.retain_freed_memory), process-wide
    amp_reason: str = ""  # why amp resolved as it did (engine.device.resolve_amp)


@dataclass(frozen=True)
class RunContext:
    """What a recipe reads: the config, its run directory, the data on the device, the resolved settings, the
    clock and the log. Recipes return their summary fields; nothing writes into the context."""

    cfg: RunConfig
    run: RunDir
    loaded: Loaded
    resolved: Resolved
    clock: RunClock
    prepared_at: float  # time.perf_counter() when the data was on the device (before the model was built)
    log: Callable[[str], None]

    @property
    def device(self) -> torch.device:
        return self.loaded.device


def log_stderr(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def load(cfg: RunConfig, log: Callable[[str], None] = log_stderr) -> Loaded:
    """Threads, seed, device, data, split (label-free recipes split without labels); the images to the device."""
    set_threads(cfg.num_threads)
    seed_everything(cfg.seed, cfg.deterministic, cfg.cudnn_benchmark)
    device = resolve_device(cfg.device)
    if cfg.cpu_allocator == "retain" or (cfg.cpu_allocator == "auto" and device.type == "cpu"):
        retain_freed_memory()  # process-wide, before the data's and the model's allocations
    warm_up = start_warm_up(device)  # the CUDA start overlaps the dataset's loading
    t0 = time.perf_counter()
    data = load_dataset(cfg.dataset, cfg.data_root or None, cfg.image_size, progress=progress_enabled(cfg.progress))
    data_load_s = time.perf_counter() - t0
    data, split, test_keep = select(cfg, data)
    for note in data.notes:
        log(f"data: {note}")
    if warm_up is not None:
        warm_up.join()
    on_device, message = placement.fits(device, data.nbytes)
    if message:
        log(f"data: {message}")
    train_x = placement.place(data.train_x, device, on_device)
    mean, std = data.channel_stats(split.train, train_x)
    index_on = device if on_device else torch.device("cpu")  # host-held images are indexed on the host
    train = FitData(x=train_x, y=data.train_y.to(device), train_idx=split.train.to(index_on),
                    val_idx=split.val.to(index_on), compute=device)
    return Loaded(device, data, split, train, placement.place(data.test_x[test_keep], device, on_device),
                  data.test_y[test_keep].to(device), test_keep, mean, std, data_load_s)


def split_of(cfg: RunConfig, train_y: torch.Tensor, num_classes: int) -> Split:
    """The run's train/validation split of a train set with labels ``train_y`` (label-free recipes draw it without
    reading them)."""
    label_free = getattr(cfg, "label_free", False)
    strata = torch.zeros_like(train_y) if label_free else train_y
    per_class = cfg.per_class * (num_classes if label_free else 1)
    return make_split(strata, per_class=per_class, train_fraction=cfg.train_fraction, val_fraction=cfg.val_fraction,
                      seed=cfg.seed if cfg.split_seed < 0 else cfg.split_seed)


def select(cfg: RunConfig, data: ImageData) -> tuple[ImageData, Split, torch.Tensor]:
    """The images a run trains on (``data``, with the unlabelled ones for label-free recipes), its train/val split
    and the indices of its test subset: a function of the config and the labels only (no images are read)."""
    # label-free recipes split without looking at labels (all images one stratum), so labels cannot leak in; their
    # per_class still means what it says for the others: per_class x classes images (drawn without labels). They
    # also train on the dataset's unlabelled images where it has some (STL-10's, a folder's unlabeled/)
    label_free = getattr(cfg, "label_free", False)
    if label_free and data.unlabeled_x is not None:
        data = data.with_unlabeled()
    split = split_of(cfg, data.train_y, data.num_classes)
    test_keep = torch.arange(len(data.test_y))
    if cfg.test_per_class or cfg.test_fraction < 1.0:
        test_keep = make_split(data.test_y, per_class=cfg.test_per_class, train_fraction=cfg.test_fraction,
                               val_fraction=0.0, seed=cfg.test_seed).train
    return data, split, test_keep


def data_fingerprint(cfg: RunConfig, datasets: dict[tuple, ImageData] | None = None) -> dict[str, str]:
    """The data parts of ``cfg``'s fingerprint (:mod:`cifarlab.engine.fingerprint`) without training: the dataset is
    loaded (from ``datasets``, loaded datasets kept by the caller, when it is there) and split; nothing moves to a
    device."""
    key = (cfg.dataset, cfg.data_root, cfg.image_size)
    cache = {} if datasets is None else datasets
    if key not in cache:
        cache[key] = load_dataset(cfg.dataset, cfg.data_root or None, cfg.image_size, progress=False)
    data, split, test_keep = select(cfg, cache[key])
    return fingerprint.data_part(data.digest, split, test_keep)


def pretrained(started_from: str) -> bool:
    """Whether the weights a run started from were trained on another dataset (ImageNet, or a given file)."""
    return started_from.startswith(("imagenet:", "file:"))


def resolve(cfg: RunConfig, loaded: Loaded, model: Backbone) -> Resolved:
    """Every ``auto`` of ``cfg`` for this device, split and model, decided once."""
    device = loaded.device
    dc = model.data_config
    started = model.weights_source
    recipe = cfg.recipe
    transfer = recipe in ("linear", "partial", "finetune")
    given = pretrained(started)
    resolution = cfg.resolution or (dc.input_size if given and not dc.cifar_stem else loaded.data.image_size)
    mean, std = (dc.mean, dc.std) if (given and dc.mean) else (loaded.mean, loaded.std)
    augment = cfg.augment if cfg.augment != "auto" else ("none" if recipe == "linear" else "cropflip")
    # the policy and crop padding scale with the images' side (1/8 of it; random-resized crop from 96 px)
    augment, crop_padding = size_rule(augment, loaded.data.image_size, cfg.crop_padding or None)
    cached_linear = recipe == "linear" and augment == "none" and getattr(cfg, "cache_embeddings", False)
    flip = None
    if cached_linear:
        flip = cfg.flip_features == "on" or (cfg.flip_features == "auto" and device.type == "cuda")
    # auto follows the weights actually loaded: ImageNet (or other given) weights keep their statistics; random init
    # (also `weights=default` of a model that has no pretrained weights) and a cifarlab run's encoder (e.g. a
    # rotation run's, whose statistics come from another task's inputs) re-estimate them
    norm_stats = None
    if transfer and recipe != "linear":
        norm_stats = cfg.norm_stats if cfg.norm_stats != "auto" else ("frozen" if given else "train")
    n_train = len(loaded.split.train) * (2 if flip else 1)
    single_cuda = device.type == "cuda" and not distributed.get().enabled
    compile_mode = cfg.compile if cfg.compile != "auto" else (
        "cudagraphs" if single_cuda and cfg.epochs * n_train >= cfg.compile_min_images else "off")
    if cached_linear:
        compile_mode = "off"  # a linear head on cached embeddings: nothing to compile
    plan = StepPlan.of(fit_spec(cfg, amp="off", progress="off"), n_train,
                       distributed.get().world if distributed.get().enabled else 1)
    amp, amp_reason = resolve_amp(cfg.amp, device)
    return Resolved(
        device=str(device), amp=amp, amp_reason=amp_reason,
        memory_format=format_name(memory_format(device, cfg.channels_last)),
        inference_format=format_name(inference_format(device, cfg.channels_last)), compile=compile_mode,
        tta=cfg.tta == "on" or (cfg.tta == "auto" and device.type == "cuda"),
        progress="on" if progress_enabled(cfg.progress) else "off", augment=augment, crop_padding=crop_padding,
        resolution=resolution,
        normalisation={"mean": list(mean), "std": list(std)}, started_from=started, norm_stats=norm_stats,
        flip_features=flip, lr=plan.peak_lr, lr_rule=plan.lr_rule, batch_size=plan.batch_size,
        steps_per_epoch=plan.steps_per_epoch, warmup_steps=plan.warmup, warmup_note=plan.warmup_note(),
        num_test=len(loaded.test_y),
        tta_views=[list(v) for v in TTA_VIEWS], cpu_allocator=allocator_state())


def run_optimizer(cfg: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """The optimizer the config names over ``groups``, with every optimizer key of the config."""
    return make_optimizer(groups, cfg.optimizer, cfg.momentum, cfg.nesterov, muon_lr_scale=cfg.muon_lr_scale)


def fit_spec(cfg: RunConfig, resolved: Resolved | None = None, **changes: Any) -> FitSpec:
    """The loop's spec from the config's keys of the same names, with ``amp``/``progress`` resolved."""
    keys = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FitSpec) if hasattr(cfg, f.name)}
    if resolved is not None:
        keys.update(amp=resolved.amp, progress=resolved.progress)
    return FitSpec(**{**keys, **changes})


def decisions_line(r: Resolved) -> str:
    """The first log line: the decisions that change results or speed."""
    parts = [f"device {r.device}", f"amp {r.amp} ({r.amp_reason})", f"compile {r.compile}",
             f"memory format {r.memory_format}",
             f"tta {'on' if r.tta else 'off'}", f"augment {r.augment}", f"resolution {r.resolution}",
             f"started from {r.started_from}"]
    if r.device == "cpu":
        parts.append(f"cpu allocator {r.cpu_allocator}")
    if r.norm_stats:
        parts.append(f"norm_stats {r.norm_stats}")
    if r.flip_features is not None:
        parts.append(f"flip_features {'on' if r.flip_features else 'off'}")
    parts.append(f"lr {r.lr:.4g} ({r.lr_rule}), warm-up {r.warmup_steps} steps{r.warmup_note}")
    return "resolved: " + "; ".join(parts)


def write_config(cfg: RunConfig, run: RunDir, loaded: Loaded, resolved: Resolved) -> None:
    """config.json: the config as given, what each ``auto`` became, versions, machine, data and split."""
    import platform

    data, split = loaded.data, loaded.split
    run.save_npz("split.npz", train=split.train.numpy(), val=split.val.numpy(), test=loaded.test_keep.numpy())
    given = to_dict(cfg)
    effective = {**given, **{k: v for k, v in dataclasses.asdict(resolved).items() if k in given},
                 "lr": resolved.lr, "batch_size": resolved.batch_size,
                 "image_size": data.image_size, "data_root": cfg.data_root or str(default_root())}
    run.write_config({
        "config": given, "resolved": {**effective, **dataclasses.asdict(resolved)},
        "versions": provenance.versions(), "git_commit": provenance.git_commit(),
        "command": sys.argv, "host": platform.node(), "machine": provenance.machine(),
        "device": device_name(loaded.device), "threads": torch.get_num_threads(), "started": provenance.now(),
        "dataset": {"spec": cfg.dataset, "name": data.name, "digest": data.digest, "classes": data.classes,
                    "num_train_total": len(data.train_y), "num_test": len(data.test_y),
                    "image_size": data.image_size, "notes": data.notes},
        "split": {"digest": split.digest(), "seed": cfg.seed, "num_train": len(split.train),
                  "num_val": len(split.val), "per_class": cfg.per_class, "train_fraction": cfg.train_fraction,
                  "val_fraction": cfg.val_fraction, "indices": "split.npz"},
        "normalisation_data": {"mean": loaded.mean, "std": loaded.std},
        "fingerprint": fingerprint.record(cfg, data, split, loaded.test_keep),
        "protocol": "model selection on the validation split carved from train; test evaluated once at the end",
    })
