# ruff: noqa: B023  (each step() closure is timed inside the loop iteration that defines it)
"""``cifarlab bench`` (an application of the package, beside ``cli`` and ``api``): each regime's hot loop, as the
product runs it, against the hardware and the notebook way.

Every loop is built from the product's own pieces (models, tasks, augmentation, optimizer, the training step of
``engine.fit``), so a number here is what a run gets. Each measurement reports two things apart: the seconds of
the first call (allocation, cuDNN autotuning, compilation: ``warmup_s``) and the steady-state images per second
(median over repeats after it).

Conventions: FLOPs are counted by ``torch.utils.flop_counter`` on one forward pass at the input size (1
multiply-add = 2 FLOPs); a training step counts 3x the forward (forward + backward for activations and weights),
times the inputs each source image becomes (2 views for SupCon, 4 rotations for RotNet). Model-FLOP utilisation
(MFU) = achieved FLOP/s / the device's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s); reported on CUDA only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cifarlab.data.augment import CIFAR10_MEAN, CIFAR10_STD, Augment, ContrastiveViews
from cifarlab.engine.device import autocast, compile_model, inference_format, memory_format, synchronize
from cifarlab.engine.loop import train_step
from cifarlab.engine.optim import make_optimizer, param_groups
from cifarlab.models import ProjectionHead, create_model
from cifarlab.objectives import Classification, Contrastive, ContrastiveModel, Rotation, SupConLoss

# the bench's own step settings (its loops time steps; no accuracy is read): SGD + Nesterov momentum 0.9, these
# rates, label smoothing 0.1 in the classification tasks
BENCH_LR = 0.01
BENCH_WEIGHT_DECAY = 5e-4
BENCH_LABEL_SMOOTHING = 0.1
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
LOOPS = ("scratch", "supcon", "rotation", "embed", "finetune")
# eager / compile: the product's two paths; the others isolate one lever each
# frozenbn: the fine-tune loop with every BatchNorm on its running statistics (norm_stats=frozen, the product's
# default from ImageNet weights) instead of batch statistics; the other loops ignore it
# cl / nchw: the memory format forced to channels_last / NCHW (eager: the product's, channels_last on CUDA)
VARIANTS = ("eager", "compile", "cudagraphs", "fused", "benchmark", "frozenbn", "cl", "nchw")


@dataclass
class BenchOptions:
    """What ``cifarlab bench`` measures (the CLI's defaults are these)."""

    dataset: str = ""  # '' = $CIFARLAB_DATASET or cifar10; synthetic:K:N:M needs no files
    data_root: str = ""
    device: str = "auto"
    loops: str = "scratch,embed"  # comma-separated, from LOOPS
    variants: str = "eager"  # comma-separated, from VARIANTS
    batch_sizes: str = "512"  # comma-separated
    model: str = "resnet18"
    probe_model: str = "efficientnet_lite0"
    resolution: int = 128
    steps: int = 10  # optimizer steps (or embedding batches) per timed call
    repeats: int = 3
    notebook: bool = True  # also time the notebook pipeline (scratch loop)
    workers: int = 2  # its DataLoader workers


@dataclass
class BenchRow:
    loop: str
    variant: str
    batch_size: int
    images_per_s: float
    warmup_s: float  # the first call: allocation, autotuning, compilation
    tflops: float | None
    mfu: float | None


def forward_flops(model: torch.nn.Module, size: int, device: torch.device) -> float:
    """FLOPs of one forward pass of one image (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 3, size, size, device=device)
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was)
    return counter.get_total_flops() / 2


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def time_loop(step: Callable[[], int], repeats: int, device: torch.device) -> tuple[float, float]:
    """(seconds of the first call, median images/s of the next ``repeats`` calls); ``step()`` returns images."""
    synchronize(device)
    t0 = time.perf_counter()
    step()
    synchronize(device)
    warmup = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        n = step()
        synchronize(device)
        rates.append(n / (time.perf_counter() - t0))
    return warmup, statistics.median(rates)


class _Settings:
    """The optimizer and step settings a variant changes (a stand-in for the run config's keys)."""

    def __init__(self, variant: str) -> None:
        self.optimizer, self.momentum, self.nesterov, self.amp = "sgd", 0.9, True, "auto"
        self.fused = variant == "fused"
        self.benchmark = variant == "benchmark"  # the product leaves cuDNN's autotuner off (cudnn_benchmark)
        self.compile = {"compile": "on", "cudagraphs": "cudagraphs"}.get(variant, "off")
        self.layout = {"cl": True, "nchw": False}.get(variant)  # None: the product's choice

    def memory_format(self, device: torch.device) -> torch.memory_format:
        if self.layout is None:
            return memory_format(device, True)
        return torch.channels_last if self.layout else torch.contiguous_format


def _training_loop(loop: str, model_name: str, data: tuple[torch.Tensor, torch.Tensor], batch_size: int, steps: int,
                   device: torch.device, variant: str, resolution: int) -> tuple[Callable[[], int], float]:
    """The product's training step for ``loop`` on ``data`` (uint8 images, labels); returns (step function, FLOPs
    per source image)."""
    x, y = data
    s = _Settings(variant)
    fmt = s.memory_format(device)
    k = int(y.max()) + 1
    if loop == "finetune":
        model = create_model(model_name, num_classes=k)
        if variant == "frozenbn":
            model.set_norm_statistics("frozen")
        dc = model.data_config
        task = Classification(Augment("cropflip", dc.mean or CIFAR10_MEAN, dc.std or CIFAR10_STD,
                                      resolution=resolution, memory_format=fmt), BENCH_LABEL_SMOOTHING)
        size, per_image = resolution, 3
    elif loop == "supcon":
        backbone = create_model(model_name, num_classes=0)
        model = ContrastiveModel(backbone, ProjectionHead(backbone.num_features, 512, 128))
        task = Contrastive(ContrastiveViews(CIFAR10_MEAN, CIFAR10_STD, 2), SupConLoss(0.1))
        size, per_image = x.shape[-1], 2 * 3
    elif loop == "rotation":
        model = create_model(model_name, num_classes=4)
        task = Rotation(Augment("cropflip", CIFAR10_MEAN, CIFAR10_STD, memory_format=fmt))
        size, per_image = x.shape[-1], 4 * 3
    else:
        model = create_model(model_name, num_classes=k)
        task = Classification(Augment("cropflip", CIFAR10_MEAN, CIFAR10_STD, memory_format=fmt), BENCH_LABEL_SMOOTHING)
        size, per_image = x.shape[-1], 3
    model.to(device, memory_format=fmt)
    flops = per_image * forward_flops(model.backbone if loop == "supcon" else model, size, device)
    fwd = compile_model(model, s.compile)
    optimizer = make_optimizer(param_groups(model.named_parameters(), BENCH_WEIGHT_DECAY), s.optimizer, s.momentum,
                               s.nesterov, fused=s.fused)
    for g in optimizer.param_groups:
        g["lr"] = BENCH_LR
    xd, yd = x.to(device), y.to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> int:
        with torch.backends.cudnn.flags(enabled=True, benchmark=s.benchmark):
            for _ in range(steps):
                idx = torch.randint(0, len(xd), (batch_size,), generator=gen, device=device)
                train_step(fwd, task, optimizer, xd[idx], yd[idx], gen, s.amp)
        return steps * batch_size

    return step, flops


def _embed_loop(model_name: str, x: torch.Tensor, batch_size: int, steps: int, device: torch.device, variant: str,
                resolution: int) -> tuple[Callable[[], int], float]:
    """The linear probe's frozen-backbone embedding, as ``recipes.transfer.cached_features`` runs it."""
    s = _Settings(variant)
    model = create_model(model_name).eval()
    fmt = inference_format(device, True) if s.layout is None else s.memory_format(device)  # as cached_features
    model.to(device, memory_format=fmt)
    dc = model.data_config
    aug = Augment("none", dc.mean or CIFAR10_MEAN, dc.std or CIFAR10_STD, resolution=resolution, memory_format=fmt)
    flops = forward_flops(model, resolution, device)
    features = compile_model(model.forward_features, s.compile)
    xs = x[: batch_size * steps].to(device)

    def step() -> int:
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, benchmark=s.benchmark):
            for i in range(steps):
                with autocast(device, "auto"):
                    features(aug.eval(xs[i * batch_size:(i + 1) * batch_size]))
        return steps * batch_size

    return step, flops


@dataclass(frozen=True)
class LoopGrid:
    """The (loop, variant, batch size) grid one bench call measures, with its steps, repeats and models."""

    loops: list[str]
    variants: list[str]
    batch_sizes: list[int]
    steps: int
    repeats: int
    model: str = "resnet18"
    probe_model: str = "efficientnet_lite0"
    resolution: int = 128

    @classmethod
    def of(cls, o: BenchOptions) -> LoopGrid:
        """The grid of the CLI's comma-separated options; unknown loops or variants are an error naming them."""
        from cifarlab.errors import ConfigError

        loops = [v.strip() for v in o.loops.split(",") if v.strip()]
        variants = [v.strip() for v in o.variants.split(",") if v.strip()]
        unknown = [v for v in loops if v not in LOOPS] + [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"bench: unknown loop/variant {unknown}; loops: {', '.join(LOOPS)}; variants: "
                              f"{', '.join(VARIANTS)}")
        sizes = [int(v) for v in o.batch_sizes.split(",") if v.strip()]
        return cls(loops, variants, sizes, o.steps, o.repeats, o.model, o.probe_model, o.resolution)


def bench_loops(x: torch.Tensor, y: torch.Tensor, grid: LoopGrid, device: torch.device,
                log: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Every (loop, variant, batch size) combination; a variant that fails (e.g. no compiler) is reported and
    skipped, so one missing lever does not hide the others' numbers."""
    loops, variants, batch_sizes, steps = grid.loops, grid.variants, grid.batch_sizes, grid.steps
    repeats, model, probe_model, resolution = grid.repeats, grid.model, grid.probe_model, grid.resolution
    rows = []
    for loop in loops:
        for variant in variants:
            for bs in batch_sizes:
                torch.manual_seed(0)
                try:
                    if loop == "embed":
                        step, flops = _embed_loop(probe_model, x, bs, steps, device, variant, resolution)
                    else:
                        name = probe_model if loop == "finetune" else model
                        step, flops = _training_loop(loop, name, (x, y), bs, steps, device, variant, resolution)
                    warmup, rate = time_loop(step, repeats, device)
                except Exception as exc:  # report and go on
                    if log:
                        log(f"{loop} {variant} bs {bs}: failed: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                label = f"{loop} {probe_model if loop in ('embed', 'finetune') else model}"
                if loop in ("embed", "finetune"):
                    label += f" @{resolution}px"
                rows.append(_row(label, variant, bs, rate, warmup, flops, device))
                if log:
                    log(format_rows(rows[-1:], header=False))
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


class _PilDataset(Dataset):
    """The notebook pipeline: one PIL image per item through torchvision transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x.permute(0, 2, 3, 1).numpy(), y.numpy(), transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def bench_notebook(x: torch.Tensor, y: torch.Tensor, model_name: str, batch_size: int, steps: int, repeats: int,
                   device: torch.device, workers: int) -> BenchRow:
    """The course notebook's scratch loop: per-sample PIL crop/flip + DataLoader, fp32, NCHW, no autocast."""
    from torchvision import transforms

    size = x.shape[-1]
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=int(y.max()) + 1).to(device)
    flops = 3 * forward_flops(model, size, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    tf = transforms.Compose([transforms.RandomCrop(size, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    loader = DataLoader(_PilDataset(x, y, tf), batch_size=batch_size, shuffle=True, num_workers=workers,
                        drop_last=True, pin_memory=device.type == "cuda", persistent_workers=workers > 0)

    def step() -> int:
        n = 0
        for i, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(xb)
            if i + 1 == steps:
                break
        return n

    warmup, rate = time_loop(step, repeats, device)
    return _row(f"scratch {model_name}", "notebook", batch_size, rate, warmup, flops, device)


def _row(loop: str, variant: str, batch_size: int, rate: float, warmup: float, flops_per_image: float,
         device: torch.device) -> BenchRow:
    tflops = rate * flops_per_image / 1e12
    peak = peak_tflops(device)
    return BenchRow(loop, variant, batch_size, rate, warmup, tflops, tflops / peak if peak else None)


def format_rows(rows: list[BenchRow], header: bool = True) -> str:
    lines = [f"{'loop':<38} {'variant':<12} {'batch':>6} {'images/s':>10} {'warm-up s':>9} {'TFLOP/s':>8} "
             f"{'MFU':>6}"] if header else []
    for r in rows:
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "–"
        lines.append(f"{r.loop:<38} {r.variant:<12} {r.batch_size:>6} {r.images_per_s:>10.0f} {r.warmup_s:>9.2f} "
                     f"{r.tflops:>8.3f} {mfu:>6}")
    if header:
        nb = {(r.loop, r.batch_size): r.images_per_s for r in rows if r.variant == "notebook"}
        for r in rows:
            if r.variant == "eager" and (r.loop, r.batch_size) in nb:
                lines.append(f"ratio cifarlab eager / notebook, {r.loop} bs {r.batch_size}: "
                             f"{r.images_per_s / nb[(r.loop, r.batch_size)]:.1f}x")
    return "\n".join(lines)
