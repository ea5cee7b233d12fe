"""Run configuration: one dataclass per recipe; defaults, then a TOML file, then ``key=value`` overrides.

Every key is a dataclass field with its help text, allowed choices and range in the field's metadata, so one
validator covers every recipe and every error names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarlab.errors import ConfigError

AUGMENT_POLICIES = ("none", "flip", "cropflip", "rrcflip", "autoaugment", "autoaugment_flip")  # data.augment.POLICIES


def opt(default: Any, help: str, *, choices: tuple | None = None, lo: float | None = None, hi: float | None = None,
        lo_open: bool = False) -> Any:
    """A config field with its documentation and constraints (``lo``/``hi`` inclusive unless ``lo_open``)."""
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open}
    return _field(default, meta)


def _field(default: Any, meta: dict[str, Any]) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def redefault(key: str, default: Any, help: str | None = None, choices: tuple | None = None) -> Any:
    """The shared key ``key`` of :class:`RunConfig` with another default (and optionally another help text or
    choices) for one recipe; its bounds are the shared field's, so they are written once."""
    meta = dict(RunConfig.__dataclass_fields__[key].metadata)
    if help is not None:
        meta["help"] = help
    if choices is not None:
        meta["choices"] = choices
    return _field(default, meta)


@dataclass
class RunConfig:
    """Keys shared by every recipe."""

    recipe: str = opt("scratch", "which regime to run (see `cifarlab recipes`)")
    model: str = opt("resnet18", "backbone name from the model registry (see `cifarlab models`)")
    dataset: str = opt("cifar10", "cifar10 | cifar100 | synthetic | folder:PATH (directory or .tar/.tar.gz)")
    data_root: str = opt("", "where torchvision datasets and decoded caches live; '' = $CIFARLAB_DATA or ./data")
    image_size: int = opt(0, "folder datasets: side length images are resized to; 0 = keep if all are square and "
                             "of one size, else the median shorter side clamped to 32-160 px", lo=0, hi=1024)
    train_fraction: float = opt(1.0, "stratified fraction of the train split to use", lo=0.0, hi=1.0, lo_open=True)
    per_class: int = opt(0, "use N train images per class (stratified, seeded); 0 = all", lo=0)
    test_per_class: int = opt(0, "evaluate on a stratified, seeded subset of N test images per class (quick "
                                 "studies); 0 = the whole test split", lo=0)
    test_fraction: float = opt(1.0, "evaluate on a stratified, seeded fraction of the test split (e.g. 0.1, as the "
                                    "VGG16/ResNet18 assignment does); 1 = the whole test split", lo=0.0, hi=1.0,
                               lo_open=True)
    split_seed: int = opt(-1, "seed of the train subset (per_class / train_fraction) and of the validation split "
                              "carved from it; -1 = the run's seed (each seed draws its own subset), N = the same "
                              "images for every seed, so seeds vary initialisation, order and augmentation only",
                          lo=-1)
    test_seed: int = opt(0, "seed of the test subset that test_per_class / test_fraction draw: the same images for "
                            "every run seed, as the whole test split is, so seeds vary the training only and arms "
                            "are compared on one test set", lo=0)
    val_fraction: float = opt(0.1, "fraction of the used train images held out (stratified) for model selection",
                              lo=0.0, hi=0.5)
    epochs: int = opt(30, "training epochs", lo=1, hi=10000)
    tta: str = opt("auto", "also report test accuracy with test-time augmentation (mean logits over flips and 2-pixel "
                           "translations; its own column, test_acc_tta): on, off, or auto (on for CUDA; on the CPU it "
                           "costs 6x the test pass)", choices=("auto", "on", "off"))
    batch_size: int = opt(512, "images per optimizer step", lo=1, hi=65536)
    eval_batch_size: int = opt(1024, "images per forward pass when evaluating", lo=1, hi=65536)
    lr: float = opt(0.0, "peak learning rate, used exactly as given (of the head, where rates differ); 0 = base_lr "
                         "carried from ref_batch to batch_size by lr_scaling", lo=0.0, hi=100.0)
    base_lr: float = opt(0.4, "peak learning rate at the reference batch ref_batch (lr per ref_batch images)", lo=0.0,
                         lo_open=True, hi=100.0)
    ref_batch: int = opt(512, "the batch size base_lr is stated for", lo=1, hi=65536)
    lr_scaling: str = opt("capped", "how the learning rate follows batch_size when lr = 0: capped (linear below "
                          "ref_batch, base_lr above it), linear (base_lr x B/ref_batch) or sqrt (base_lr x "
                          "sqrt(B/ref_batch)); measured in docs/results.md", choices=("capped", "linear", "sqrt"))
    optimizer: str = opt("sgd", "optimizer: sgd (momentum, Nesterov), adam (torch.optim.Adam, L2 weight decay), adamw "
                                "(decoupled weight decay) or muon (torch.optim.Muon for conv/linear weight matrices, "
                                "SGD momentum for the rest)", choices=("sgd", "adam", "adamw", "muon"))
    muon_lr_scale: float = opt(1.0, "optimizer = muon: the Muon-updated weights train at lr x this (an orthogonalised "
                               "step's useful rate differs from SGD's; the rest and the head keep lr)", lo=0.0,
                               lo_open=True, hi=1000.0)
    momentum: float = opt(0.9, "SGD/Muon momentum, Adam/AdamW beta1", lo=0.0, hi=0.999)
    nesterov: bool = opt(True, "Nesterov momentum (SGD)")
    weight_decay: float = opt(5e-4, "weight decay (never applied to norms and biases)", lo=0.0, hi=1.0)
    schedule: str = opt("onecycle", "learning-rate schedule", choices=("onecycle", "cosine", "multistep", "constant"))
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs", lo=0.0, hi=1000.0)
    warmup_min_steps: int = opt(30, "a warm-up of the derived rate (lr = 0, warmup_epochs > 0) lasts at least this "
                                    "many optimizer steps, so tiny subsets and large batches warm up too; an explicit "
                                    "lr warms up for exactly warmup_epochs", lo=0)
    warmup_max_fraction: float = opt(0.3, "the warm-up lasts at most this fraction of the run's optimizer steps, so a "
                                          "run shorter than its warm-up still reaches its peak rate and decays; "
                                          "setting warmup_epochs or warmup_min_steps yourself makes it 1 (the "
                                          "warm-up as set, with a warning when it outlasts the run)",
                                     lo=0.0, hi=1.0)
    divergence_factor: float = opt(10.0, "a run has diverged when its loss exceeds this many times the chance-level "
                                         "loss (BatchNorm lag early in training is told apart and tolerated)",
                                   lo=1.0, lo_open=True)
    divergence_acc_factor: float = opt(2.0, "a large validation loss is divergence only while the validation accuracy "
                                            "is at most this many times chance (above it: an overconfident model)",
                                       lo=1.0)
    milestones: list = opt([0.5, 0.75], "multistep: fractions of training at which the lr is multiplied by gamma")
    gamma: float = opt(0.1, "multistep: lr factor at each milestone", lo=0.0, lo_open=True, hi=1.0)
    label_smoothing: float = opt(0.1, "cross-entropy label smoothing", lo=0.0, hi=0.99)
    selection: str = opt("best_val", "which epoch's weights are tested: best_val (the best validation metric: "
                                      "accuracy, or the pretext task's loss) or last (the last epoch)",
                         choices=("best_val", "last"))
    resolution: int = opt(0, "input side length; images are resized on the device; 0 = native: the data's own size "
                             "(scratch, rotation, supcon; CIFAR-stem models), the weights' own size for pretrained "
                             "weights (ImageNet or a weights file) of an ImageNet-stem model (224 for most)",
                          lo=0, hi=1024)
    arm: str = opt("", "this run's arm label in reports (e.g. 'course recipe'); '' = derived from the config")
    reference: str = opt("", "id of a published figure (cifarlab/analysis/references.toml) shown beside this run's "
                              "arm in reports, never as a measurement")
    ema: float = opt(0.0, "exponential moving average of the weights (and BatchNorm statistics), decay per optimizer "
                          "step, e.g. 0.99, warmed up as min(ema, t / (t + 9)) at step t; validation, model "
                          "selection, checkpoints' best.pt and the test use the averaged weights; 0 = off", lo=0.0,
                     hi=0.99999)
    ema_warmup: float = opt(9.0, "EMA decay warm-up: update t uses min(ema, t / (t + ema_warmup)) (TensorFlow's and "
                                 "timm's warm-up), so early near-random weights leave the average", lo=0.0)
    augment: str = opt("cropflip", "train augmentation policy: none, flip, cropflip (random crop of the reflect-padded "
                                   "image + flip), rrcflip (random-resized crop + flip), autoaugment (AutoAugment "
                                   "CIFAR10 policy + crop + flip), autoaugment_flip (AutoAugment + flip, no crop)",
                       choices=AUGMENT_POLICIES)
    crop_padding: int = opt(0, "random-crop padding in pixels (reflect); 0 = 1/8 of the image side (4 px at 32 px); "
                               "cropflip becomes rrcflip (random-resized crop + flip) for images of 96 px and more",
                            lo=0, hi=64)
    cutout: int = opt(0, "cutout: zero a square of this many pixels per side at a random place in each training "
                         "image (after crop/flip, at the data's resolution); 0 = off", lo=0, hi=1024)
    seed: int = opt(0, "seed for the subset, split, initialisation and augmentation", lo=0)
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps")
    amp: str = opt("auto", "mixed precision: auto = bf16 on CUDA compute capability >= 8.0, fp16 with a gradient "
                           "scaler on older CUDA cards, off on CPU and MPS; or bf16, fp16, off",
                   choices=("auto", "bf16", "fp16", "off"))
    channels_last: bool = opt(True, "channels_last memory format on CUDA")
    cudnn_benchmark: bool = opt(False, "let cuDNN time its algorithms for every new input shape (off: seconds of "
                                       "autotuning per shape for no steady-state gain)")
    compile: str = opt("auto", "torch.compile the model: on, off, cudagraphs (compiled with CUDA graphs), or auto "
                               "(cudagraphs for one-device CUDA runs of at least compile_min_images images, which "
                               "pay back the compilation; off elsewhere)",
                       choices=("auto", "on", "off", "cudagraphs"))
    compile_min_images: int = opt(3_000_000, "compile=auto compiles with CUDA graphs when a run trains on at least "
                                             "this many images (epochs x train split): measured on one H100 for "
                                             "ResNet18 at batch 1024 (12.9 s of compilation, 4.5 us saved per image), "
                                             "docs/results.md", lo=0)
    sync_bn: bool = opt(False, "under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only)")
    deterministic: bool = opt(False, "deterministic kernels (slower; makes resume bit-exact on GPU)")
    num_threads: int = opt(0, "CPU threads for torch; 0 = all cores", lo=0, hi=1024)
    cpu_allocator: str = opt("auto", "glibc malloc for CPU runs: retain (freed memory stays in the process for the "
                                     "next batch; 1.4-1.9x faster CPU passes, resident memory stays at its peak), "
                                     "default (glibc's own), or auto (retain when the run's device is the CPU)",
                             choices=("auto", "retain", "default"))
    out: str = opt("runs", "parent directory of run directories")
    name: str = opt("", "run directory name; '' = derived from recipe, model, dataset and seed")
    resume: bool = opt(False, "continue the run in the run directory from its last checkpoint")
    overwrite: bool = opt(False, "delete an existing run directory of the same name first")
    embed_samples: int = opt(2000, "test images whose embeddings are saved for t-SNE/UMAP (stratified)", lo=0)
    max_steps_per_epoch: int = opt(0, "cap on optimizer steps per epoch (smoke tests); 0 = no cap", lo=0)
    progress: str = opt("auto", "progress on stderr (training epochs, embeddings, evaluation): on, off, or auto (on "
                                "when stderr is a terminal)", choices=("auto", "on", "off"))
    linear_batch_size: int = opt(256, "linear evaluations (the LP-FT head, SupCon/SimCLR/supcon_ce evaluation): head "
                                      "batch size (at most batch_size)", lo=1, hi=65536)
    linear_weight_decay: float = opt(0.0, "linear evaluations: head weight decay", lo=0.0, hi=1.0)
    series: str = opt("", "a study's curve this run belongs to (e.g. the low-label curve's method); set by the study "
                          "file, recorded in summary.json as study_series before the run starts")

    def check(self) -> None:
        """Cross-key rules (single keys are checked by :func:`validate`)."""
        if self.per_class and self.train_fraction < 1.0:
            raise ConfigError(f"per_class={self.per_class} and train_fraction={self.train_fraction} both select a "
                              "subset; set only one")
        if self.resume and self.overwrite:
            raise ConfigError("resume=true and overwrite=true contradict each other; set only one")
        if any(not isinstance(m, (int, float)) or not 0 < m < 1 for m in self.milestones):
            raise ConfigError(f"milestones={self.milestones!r}: expected fractions of training strictly between "
                              "0 and 1")
        if self.test_per_class and self.test_fraction < 1.0:
            raise ConfigError(f"test_per_class={self.test_per_class} and test_fraction={self.test_fraction} both "
                              "select a test subset; set only one")


# Named sets of defaults: a preset's keys replace the recipe's defaults, and anything the user sets (file, flags)
# still wins. Measured in docs/results.md ("Scratch at 15 epochs, one lever at a time").
SCRATCH_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 15, "warmup_epochs": 3.0, "ema": 0.99, "label_smoothing": 0.2},
}


@dataclass
class ScratchConfig(RunConfig):
    """From random weights with crop+flip: SGD+Nesterov, one-cycle, label smoothing 0.1."""

    presets = SCRATCH_PRESETS  # class attribute, not a key

    preset: str = opt("default", "named defaults: fast = " + ", ".join(
        f"{k}={v}" for k, v in SCRATCH_PRESETS["fast"].items()) + " (quick iteration; the curriculum's "
        "scratch runs); keys you set still win", choices=("default", *SCRATCH_PRESETS))


@dataclass
class TransferConfig(RunConfig):
    """ImageNet backbones: linear probe, last block unfrozen, or full fine-tuning with discriminative rates."""

    model: str = redefault("model", "efficientnet_lite0")
    recipe: str = opt("linear", "linear | partial | finetune")
    epochs: int = redefault("epochs", 10)
    batch_size: int = redefault("batch_size", 128)
    base_lr: float = redefault("base_lr", 0.01, "peak learning rate of the head at the reference batch ref_batch")
    ref_batch: int = redefault("ref_batch", 128)
    schedule: str = redefault("schedule", "cosine")
    warmup_epochs: float = redefault("warmup_epochs", 0.0)
    augment: str = redefault("augment", "auto", "train augmentation; auto = none for linear (which then trains on "
                                                "cached embeddings), cropflip for partial and finetune",
                             choices=("auto", *AUGMENT_POLICIES))
    head_init: str = opt("linear", "partial/finetune: start the head from a linear head trained on the frozen "
                                   "backbone's embeddings by the linear-evaluation protocol (LP-FT, Kumar et al. "
                                   "2022), or from random weights", choices=("linear", "random"))
    head_init_epochs: int = opt(20, "head_init=linear: epochs of the linear head that starts fine-tuning", lo=1)
    head_init_lr: float = opt(0.1, "head_init=linear: its learning rate (SGD, cosine, standardised features)", lo=0.0,
                              lo_open=True)
    norm_stats: str = opt("auto", "partial/finetune: BatchNorm layers keep the running statistics the backbone "
                                  "starts with (frozen; their affine weights still train) or re-estimate them from "
                                  "each batch (train, frozen blocks included); auto = frozen from `weights` (e.g. "
                                  "ImageNet's), train from random init or --init",
                          choices=("auto", "frozen", "train"))
    weights: str = opt("default", "default (the model's ImageNet weights) | none (random init) | PATH to a state dict")
    init: str = opt("", "start the backbone from a cifarlab run directory or checkpoint (e.g. a rotation run); "
                        "'random' for the control; '' = use `weights`")
    backbone_lr_factor: float = opt(0.1, "finetune/partial: backbone lr = lr x this", lo=0.0, hi=10.0)
    layer_decay: float = opt(1.0, "finetune: lr multiplier per block counted back from the last", lo=0.0,
                             lo_open=True, hi=1.0)
    cache_embeddings: bool = opt(True, "linear without augmentation: compute frozen embeddings once and reuse them")
    flip_features: str = opt("auto", "cached linear probe: also embed mirrored images (train on both as separate "
                                     "examples; validate and test on the mean of an image's two embeddings, a "
                                     "fixed feature map of the image); doubles the embedding time; on, off, or "
                                     "auto (on for CUDA)",
                              choices=("auto", "on", "off"))


@dataclass
class SupConConfig(RunConfig):
    """Contrastive pretraining (Khosla et al. 2020; SimCLR without labels), then linear and kNN evaluation."""

    recipe: str = opt("supcon", "supcon | simclr | supcon_ce (cross-entropy baseline, same budget)")
    epochs: int = opt(100, "pretraining epochs; 0 = none: the randomly initialised encoder through the same "
                           "evaluation (the control)", lo=0, hi=10000)
    batch_size: int = opt(512, "images per step (each contributes `views` views)", lo=2, hi=65536)
    base_lr: float = redefault("base_lr", 0.5)
    weight_decay: float = redefault("weight_decay", 1e-4)
    schedule: str = redefault("schedule", "cosine")
    warmup_epochs: float = redefault("warmup_epochs", 5.0)
    label_smoothing: float = redefault("label_smoothing", 0.0, "cross-entropy baseline label smoothing")
    views: int = opt(2, "augmented views per image", lo=2, hi=16)
    temperature: float = opt(0.1, "softmax temperature of the contrastive loss", lo=0.0, lo_open=True, hi=10.0)
    proj_hidden: int = opt(512, "projection head hidden width", lo=1)
    proj_dim: int = opt(128, "projection dimension", lo=1)
    online_probe: bool = opt(True, "supcon/simclr: train a linear classifier during pretraining on the detached "
                                   "encoder features (it never trains the encoder; labels are read only by it); "
                                   "its accuracy fills the train_acc/val_acc columns; its cross-entropy trains it "
                                   "but never enters the validation loss that selects the pretraining epoch")
    online_probe_lr: float = opt(0.2, "the online probe's learning rate as a fraction of lr (no weight decay)",
                                 lo=0.0, lo_open=True, hi=10.0)
    linear_epochs: int = opt(50, "epochs of the linear evaluation on cached frozen embeddings", lo=1)
    linear_lr: float = opt(0.1, "linear evaluation learning rate", lo=0.0, lo_open=True)
    knn_k: int = opt(200, "kNN evaluation: neighbours", lo=1)
    knn_temperature: float = opt(0.1, "kNN evaluation: vote weight exp(sim / t)", lo=0.0, lo_open=True)


@dataclass
class RotationConfig(RunConfig):
    """Label-free rotation prediction (Gidaris et al. 2018): each image in all four rotations (or one random one),
    labels 0..3."""

    label_free = True  # class attribute, not a key: the split and everything in training ignore class labels

    recipe: str = opt("rotation", "rotation")
    batch_size: int = redefault("batch_size", 128, "images per step (x4 rotated inputs with rotations=all)")
    base_lr: float = redefault("base_lr", 0.2)
    ref_batch: int = redefault("ref_batch", 128)
    label_smoothing: float = redefault("label_smoothing", 0.0, "label smoothing of the rotation loss")
    rotations: str = opt("all", "training inputs per image and step: all (its four rotations, B images -> 4B "
                                "inputs, Gidaris et al.) or random (one angle drawn per image and step, B inputs, as "
                                "the RotNet assignment rotates them); evaluation scores all four either way",
                         choices=("all", "random"))


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(cls: type, key: str, value: Any) -> Any:
    """Turn a TOML value or a ``--set`` string into the field's type, or raise naming the key."""
    typ = field_types(cls)[key]
    if isinstance(value, str) and typ is not str:
        text = value.strip()
        try:
            if typ is bool:
                low = text.lower()
                if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError
                return low in ("true", "1", "yes", "on")
            if typ is int:
                return int(text)
            if typ is float:
                return float(text)
            if typ is list:
                return [float(v) for v in text.strip("[]").split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected {typ.__name__}") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {typ.__name__}, got {type(value).__name__}")
    return value


def validate(cfg: RunConfig) -> RunConfig:
    """Check every key against its field's choices and range, then the cross-key rules."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        _coerce(type(cfg), f.name, value)
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{f.name}={value!r} is not allowed; choose from: {', '.join(meta['choices'])}")
        lo, hi = meta.get("lo"), meta.get("hi")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value:  # NaN
                raise ConfigError(f"{f.name}=nan is not a number")
            if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
                rel = ">" if meta.get("lo_open") else ">="
                rng = f"{rel} {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise ConfigError(f"{f.name}={value} is out of range; allowed: {rng}")
            if hi is not None and value > hi:
                raise ConfigError(f"{f.name}={value} is out of range; allowed: <= {hi}")
    cfg.check()
    return cfg


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["lr=0.1", "epochs=3"]`` -> ``{"lr": "0.1", "epochs": "3"}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip().replace("-", "_")] = value
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def build(cls: type[RunConfig], *layers: dict[str, Any]) -> RunConfig:
    """Defaults of ``cls``, then each layer in order; an unknown key is rejected with the keys it may mean."""
    valid = keys(cls)
    recipe = next((str(layer["recipe"]) for layer in reversed(layers) if layer.get("recipe")), "")
    values: dict[str, Any] = {}
    env_dataset = os.environ.get("CIFARLAB_DATASET")
    if env_dataset:
        values["dataset"] = env_dataset
    for layer in layers:
        for key, value in layer.items():
            if key not in valid:
                raise ConfigError(unknown_key_message(key, valid, cls, recipe))
            values[key] = _coerce(cls, key, value)
    given = {k for layer in layers for k in layer}
    if given & {"warmup_epochs", "warmup_min_steps"} and "warmup_max_fraction" not in given:
        values["warmup_max_fraction"] = 1.0  # a warm-up the user set is kept as set (the run log warns if too long)
    presets: dict[str, dict[str, Any]] = getattr(cls, "presets", {})
    for key, value in presets.get(values.get("preset", ""), {}).items():
        values.setdefault(key, value)  # under everything the layers set
    return validate(cls(**values))


# Names other libraries and papers use for a key (lower case, '-' read as '_'): `learning_rate=0.1` is answered
# with `lr`, which difflib alone does not find (the strings share too little)
KEY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "lr": ("learning_rate", "learningrate", "lr_rate", "lrate", "rate", "max_lr", "peak_lr", "init_lr", "initial_lr",
           "learning_rate_init"),
    "base_lr": ("base_learning_rate", "lr_base", "blr"),
    "batch_size": ("batchsize", "bs", "batch", "minibatch", "minibatch_size", "mini_batch_size", "train_batch_size",
                   "batch_sz"),
    "eval_batch_size": ("test_batch_size", "val_batch_size", "eval_bs", "test_bs"),
    "epochs": ("num_epochs", "n_epochs", "nepochs", "epoch", "max_epochs", "train_epochs", "num_epoch", "n_epoch"),
    "weight_decay": ("wd", "weightdecay", "weight_decay_rate", "l2", "l2_reg", "l2_weight", "decay"),
    "momentum": ("mom", "beta1", "sgd_momentum", "momentum_rate"),
    "warmup_epochs": ("warmup", "warm_up", "warmup_epoch", "warm_up_epochs", "n_warmup", "warmup_steps"),
    "label_smoothing": ("smoothing", "label_smooth", "ls"),
    "seed": ("random_seed", "rng_seed", "seeds", "manual_seed"),
    "model": ("arch", "architecture", "network", "net", "backbone", "model_name"),
    "dataset": ("data", "dataset_name"),
    "per_class": ("samples_per_class", "images_per_class", "n_per_class", "num_per_class", "shots", "n_shot",
                  "train_per_class"),
    "optimizer": ("opt", "optim", "optimiser"),
    "schedule": ("scheduler", "lr_schedule", "lr_scheduler", "sched"),
    "augment": ("aug", "augmentation", "augmentations", "data_augmentation", "augment_policy"),
    "resolution": ("img_size", "input_size", "size", "input_resolution"),
    "out": ("output", "output_dir", "out_dir", "outdir", "run_dir", "save_dir", "log_dir", "logdir"),
    "name": ("run_name", "exp_name", "experiment", "experiment_name"),
    "num_threads": ("threads", "n_threads", "num_workers", "workers"),
    "weights": ("pretrained", "pretrained_weights", "weights_path", "checkpoint_path"),
    "init": ("init_from", "checkpoint", "ckpt", "from_run"),
    "amp": ("mixed_precision", "fp16", "bf16", "precision"),
    "val_fraction": ("val_split", "validation_split", "val_ratio", "valid_fraction", "validation_fraction"),
}
_SYNONYM_OF = {alias: key for key, aliases in KEY_SYNONYMS.items() for alias in aliases}


def closest_keys(key: str, valid: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` keys of ``valid`` the user probably meant: the synonym table, then spelling (difflib), then
    keys that contain ``key``."""
    norm = key.strip().lower().replace("-", "_")
    close = [k for k in (_SYNONYM_OF.get(norm), norm) if k in valid and k != key]
    close += [k for k in difflib.get_close_matches(norm, valid, n=n, cutoff=0.6) if k not in close]
    close += [k for k in valid if len(norm) >= 3 and norm in k and k not in close]
    return close[:n]


def unknown_key_message(key: str, valid: list[str], cls: type, recipe: str = "") -> str:
    """'unknown config key 'learning_rate'; did you mean: lr? ...': the likeliest keys (:func:`closest_keys`) and
    the command that lists them all, never the whole list."""
    close = closest_keys(key, valid)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    recipes = sorted(r for r, c in RECIPE_CONFIGS.items() if c is not cls and key in keys(c))
    where = f"; {key} is a key of recipe {', '.join(recipes)}" if recipes else ""
    recipe = recipe or next((r for r, c in RECIPE_CONFIGS.items() if c is cls), "scratch")
    return f"unknown config key {key!r}{hint}{where} (every key of {recipe}: cifarlab keys --recipe {recipe})"


# which config class each recipe reads (the recipes register their run functions under the same names)
RECIPE_CONFIGS: dict[str, type[RunConfig]] = {
    "scratch": ScratchConfig, "linear": TransferConfig, "partial": TransferConfig, "finetune": TransferConfig,
    "supcon": SupConConfig, "simclr": SupConConfig, "supcon_ce": SupConConfig, "rotation": RotationConfig,
}


def config_class(recipe: str) -> type[RunConfig]:
    try:
        return RECIPE_CONFIGS[recipe]
    except KeyError:
        raise ConfigError(f"unknown recipe {recipe!r}; choose from: {', '.join(sorted(RECIPE_CONFIGS))}") from None


def make_config(recipe: str | None = None, config_file: str | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None) -> RunConfig:
    """Resolve a config: the recipe's defaults, then ``config_file`` (TOML), then ``overrides``, then ``sets``
    (``"key=value"`` strings). Unknown keys and bad values raise :class:`cifarlab.errors.ConfigError`; the model
    name is checked before any data is loaded."""
    file_layer = load_toml(config_file) if config_file else {}
    name = str(recipe or file_layer.get("recipe") or (overrides or {}).get("recipe") or "scratch")
    cfg = build(config_class(name), file_layer, {**(overrides or {}), "recipe": name}, parse_overrides(sets or []))
    from cifarlab.models import check_model_name

    check_model_name(cfg.model)  # an unknown model fails before any data is loaded
    return cfg


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def help_table(cls: type[RunConfig]) -> str:
    """One line per key: name, default, help, then the allowed values (choices or range)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {f.name:<22} {default!r:<20} {f.metadata.get('help', '')}{allowed(f.metadata)}")
    return "\n".join(lines)


def allowed(meta: Any) -> str:
    """' [a|b|c]' or ' [>= 0, <= 1]' from a field's metadata ('' when unconstrained)."""
    if meta.get("choices"):
        return f" [{'|'.join(meta['choices'])}]"
    lo, hi = meta.get("lo"), meta.get("hi")
    parts = ([f"{'>' if meta.get('lo_open') else '>='} {lo:g}"] if lo is not None else []) + (
        [f"<= {hi:g}"] if hi is not None else [])
    return f" [{', '.join(parts)}]" if parts else ""
