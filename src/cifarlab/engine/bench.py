# ruff: noqa: B023  (each step() closure is timed inside the loop iteration that defines it)
"""``cifarlab bench``: each regime's hot loop against the course-notebook way and against the hardware.

Conventions: FLOPs are counted by ``torch.utils.flop_counter`` on one forward pass at the input size
(1 multiply-add = 2 FLOPs); a training step counts 3x the forward (forward + backward for activations and
weights). Model-FLOP utilisation (MFU) = achieved FLOP/s / the device's dense bf16 peak (H100 SXM: 989 TFLOP/s);
reported on CUDA only. Timings are medians over repeats, after a warm-up; both pipelines run in the same process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cifarlab.data.augment import Augment
from cifarlab.data.batches import train_batches
from cifarlab.engine.device import autocast, memory_format
from cifarlab.models import create_model

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


@dataclass
class BenchRow:
    regime: str
    pipeline: str
    images_per_s: float
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


def _median_rate(step: Callable[[], int], repeats: int, sync: Callable[[], None]) -> float:
    step()  # warm-up: allocator, cuDNN autotuning, compilation
    rates = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        n = step()
        sync()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


class _PilDataset(Dataset):
    """The notebook pipeline: one PIL image per item through torchvision transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x.permute(0, 2, 3, 1).numpy(), y.numpy(), transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def bench_scratch(x: torch.Tensor, y: torch.Tensor, model_name: str, batch_size: int, steps: int, repeats: int,
                  device: torch.device, workers: int) -> list[BenchRow]:
    """Training steps of a from-scratch model: cifarlab's loop vs per-sample PIL + DataLoader, fp32, NCHW."""
    from torchvision import transforms

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    size = x.shape[-1]
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    rows = []
    fwd = None
    for pipeline in ("cifarlab", "notebook"):
        torch.manual_seed(0)
        model = create_model(model_name, num_classes=int(y.max()) + 1, weights="none").to(device)
        fmt = memory_format(device, True) if pipeline == "cifarlab" else torch.contiguous_format
        model.to(memory_format=fmt)
        fwd = fwd or forward_flops(model, size, device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        if pipeline == "cifarlab":
            xd, yd = x.to(device), y.to(device)
            aug = Augment("cropflip", mean, std, 4, memory_format=fmt)
            gen = torch.Generator(device=device).manual_seed(0)
            idx = torch.arange(len(xd), device=device)

            def step() -> int:
                n = 0
                for i, b in enumerate(train_batches(idx, batch_size, gen)):
                    if i == steps:
                        break
                    with autocast(device, "auto"):
                        loss = F.cross_entropy(model(aug.train(xd[b], gen)).float(), yd[b])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    n += len(b)
                return n
        else:
            tf = transforms.Compose([transforms.RandomCrop(size, padding=4), transforms.RandomHorizontalFlip(),
                                     transforms.ToTensor(), transforms.Normalize(mean, std)])
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

        rate = _median_rate(step, repeats, sync)
        rows.append(_row(f"scratch {model_name}", pipeline, rate, 3 * fwd, device))
    return rows


def bench_embed(x: torch.Tensor, model_name: str, resolution: int, batch_size: int, steps: int, repeats: int,
                device: torch.device) -> list[BenchRow]:
    """Frozen-backbone embedding (the linear probe's hot loop): cifarlab (on-device resize, channels_last,
    bf16 on CUDA, inference mode) vs the notebook way (fp32, NCHW, no_grad)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    model = create_model(model_name).eval().to(device)
    dc = model.data_config
    fwd = forward_flops(model, resolution, device)
    xs = x[: batch_size * steps].to(device)
    rows = []
    for pipeline in ("cifarlab", "notebook"):
        fmt = torch.channels_last if pipeline == "cifarlab" else torch.contiguous_format
        model.to(memory_format=fmt)
        aug = Augment("none", dc.mean or (0.5,) * 3, dc.std or (0.25,) * 3, resolution=resolution,
                      memory_format=fmt)

        def step() -> int:
            with torch.inference_mode():
                for i in range(steps):
                    xb = xs[i * batch_size:(i + 1) * batch_size]
                    if pipeline == "cifarlab":
                        with autocast(device, "auto"):
                            model.forward_features(aug.eval(xb))
                    else:
                        model.forward_features(aug.eval(xb).contiguous())
            return steps * batch_size

        rate = _median_rate(step, repeats, sync)
        rows.append(_row(f"linear-probe embedding {model_name} @{resolution}px", pipeline, rate, fwd, device))
    return rows


def _row(regime: str, pipeline: str, rate: float, flops_per_image: float, device: torch.device) -> BenchRow:
    tflops = rate * flops_per_image / 1e12
    peak = peak_tflops(device)
    return BenchRow(regime, pipeline, rate, tflops, tflops / peak if peak else None)


def format_rows(rows: list[BenchRow]) -> str:
    lines = [f"{'regime':<50} {'pipeline':<10} {'images/s':>10} {'TFLOP/s':>8} {'MFU':>6}"]
    for r in rows:
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "–"
        lines.append(f"{r.regime:<50} {r.pipeline:<10} {r.images_per_s:>10.0f} {r.tflops:>8.3f} {mfu:>6}")
    by = {}
    for r in rows:
        by.setdefault(r.regime, {})[r.pipeline] = r.images_per_s
    for regime, d in by.items():
        if "cifarlab" in d and "notebook" in d:
            lines.append(f"ratio cifarlab / notebook, {regime}: {d['cifarlab'] / d['notebook']:.1f}x")
    return "\n".join(lines)
