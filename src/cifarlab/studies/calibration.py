"""Seconds per input image of a model at a resolution: measured here (a few steps, cached on disk) or, where no
measurement exists, from FLOPs and a machine's effective throughput (``throughputs.toml``).

Three kinds of pass are timed, as the recipes spend them: ``train`` (forward + backward + SGD step of every
weight), ``partial`` (the same with only the last block and the head trainable, the rest frozen in eval mode) and
``forward`` (inference: validation, test, embeddings). Inputs are random images at the run's resolution: the cost
of a pass does not depend on the pixels.

The cache is a JSON file in the user cache directory (``$CIFARLAB_CACHE``, else ``$XDG_CACHE_HOME/cifarlab`` or
``~/.cache/cifarlab``), keyed by model, resolution, kind, batch, device, torch version and threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

KINDS = ("train", "partial", "forward")
# a train step is forward + backward (activations and weights): 3x the forward's FLOPs; a partial step adds the
# backward of the last block only, taken as half a forward (ResNet18's layer4 is about a quarter of its FLOPs)
FLOP_FACTOR = {"train": 3.0, "partial": 1.5, "forward": 1.0}
STEP_TARGET_S = 0.5  # a timed calibration step aims at about this long: a measurement of a few seconds in all
THROUGHPUTS = Path(__file__).with_name("throughputs.toml")


def cache_dir() -> Path:
    base = os.environ.get("CIFARLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
        / "cifarlab"
    return Path(base)


def _cache_file() -> Path:
    return cache_dir() / "calibration.json"


def read_cache() -> dict[str, dict]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict[str, dict]) -> None:
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new one


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}-{os.cpu_count()}cores"


def machine_key(device: torch.device) -> str:
    """What a measurement depends on besides the model: the device, torch's version and its threads."""
    return f"{device_label(device)}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def entry_key(model: str, resolution: int, kind: str, batch: int, device: torch.device) -> str:
    return f"{model}|{resolution}px|{kind}|batch {batch}|{machine_key(device)}"


@dataclass(frozen=True)
class Rate:
    """Seconds per input image of one kind of pass, and where the figure comes from."""

    seconds_per_input: float
    source: str  # "measured" | "FLOPs: <machine>"
    build_s: float = 0.0  # building the model (measured; part of each run's start)


def lookup(model: str, resolution: int, kind: str, batch: int, device: torch.device) -> Rate | None:
    """A cached measurement: at this batch, else at the nearest batch measured for the same model, resolution,
    kind and machine (per-image cost changes little with the batch once it is past a few images)."""
    cache = read_cache()
    hit = cache.get(entry_key(model, resolution, kind, batch, device))
    if hit is None:
        prefix, suffix = f"{model}|{resolution}px|{kind}|batch ", f"|{machine_key(device)}"
        near = [(abs(v["batch"] - batch), v) for k, v in cache.items() if k.startswith(prefix) and
                k.endswith(suffix)]
        hit = min(near, key=lambda p: p[0])[1] if near else None
    if hit is None:
        return None
    return Rate(hit["seconds_per_input"], "measured", hit.get("build_s", 0.0))


def _timed(step: Callable[[int], None], batch: int, device: torch.device, repeats: int) -> float:
    """Seconds per input of ``step(batch)`` over ``repeats`` calls, after one untimed call (allocation)."""
    step(batch)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step(batch)
    _sync(device)
    return (time.perf_counter() - t0) / (repeats * batch)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(model_name: str, resolution: int, kind: str, device: torch.device) -> tuple[Callable[[int], None], float]:
    """The pass of ``kind`` as a function of the batch, and the seconds it took to build the model."""
    from cifarlab.engine.device import autocast, memory_format
    from cifarlab.models import create_model

    t0 = time.perf_counter()
    model = create_model(model_name, num_classes=10, weights="none")
    build_s = time.perf_counter() - t0
    fmt = memory_format(device, True)
    if kind == "partial":
        model.set_trainable(model.partial_blocks())
    model.to(device, memory_format=fmt).train(kind != "forward")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)

    def step(batch: int) -> None:
        x = torch.rand(batch, 3, resolution, resolution, generator=gen).to(device, memory_format=fmt)
        if kind == "forward":
            with torch.inference_mode(), autocast(device, "auto"):
                model(x)
            return
        y = torch.randint(0, 10, (batch,), generator=gen).to(device)
        with autocast(device, "auto"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, build_s


def measure(model: str, resolution: int, kind: str, batch: int, device: torch.device,
            log: Callable[[str], None] | None = None) -> Rate:
    """Time ``kind`` passes of ``model`` at ``resolution`` and cache the result. The batch is the run's, or, where
    a step at the run's batch would take much longer than :data:`STEP_TARGET_S`, the largest batch that fits it
    (stated in the rate's source)."""
    if device.type == "cpu":
        from cifarlab.engine.device import retain_freed_memory

        retain_freed_memory()  # as a CPU run does (cpu_allocator=auto): it changes a pass's speed
    if log:
        log(f"calibrating {model} @{resolution}px {kind} (batch {batch}) on {device_label(device)}...")
    step, build_s = _step_fn(model, resolution, kind, device)
    probe = min(batch, 4)
    per_input = _timed(step, probe, device, 1)
    measured = max(probe, min(batch, int(STEP_TARGET_S / max(per_input, 1e-9))))
    if measured > probe:
        per_input = _timed(step, measured, device, 2)
    entry = {"model": model, "resolution": resolution, "kind": kind, "batch": batch, "measured_batch": measured,
             "seconds_per_input": per_input, "build_s": build_s, "machine": machine_key(device),
             "when": time.strftime("%Y-%m-%d %H:%M")}
    cache = read_cache()
    cache[entry_key(model, resolution, kind, batch, device)] = entry
    _write_cache(cache)
    return Rate(per_input, "measured", build_s)


# ---- the FLOP-based fallback ------------------------------------------------------------------------------------


def machines() -> dict[str, dict]:
    """The machine table: effective TFLOP/s per kind of pass, per-step overhead and where each figure comes from."""
    return tomllib.loads(THROUGHPUTS.read_text())["machines"]


def forward_flops(model: str, resolution: int) -> float:
    """FLOPs of one forward pass of one image (1 multiply-add = 2 FLOPs), counted once and cached."""
    key = f"flops|{model}|{resolution}px"
    cache = read_cache()
    if key in cache:
        return cache[key]["flops"]
    from torch.utils.flop_counter import FlopCounterMode

    from cifarlab.models import create_model

    net = create_model(model, num_classes=10, weights="none").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(2, 3, resolution, resolution))
    flops = counter.get_total_flops() / 2  # two images
    cache = read_cache()
    cache[key] = {"flops": flops}
    with contextlib.suppress(OSError):
        _write_cache(cache)
    return flops


def flop_rate(model: str, resolution: int, kind: str, batch: int, machine: str) -> Rate:
    """Seconds per input from FLOPs on ``machine`` (a key of the table): FLOPs / effective rate, plus the
    machine's per-step overhead spread over the batch."""
    m = machines()[machine]
    tflops = m[f"{'forward' if kind == 'forward' else 'train'}_tflops"] * m.get("efficiency", {}).get(
        model.split(":")[0], 1.0)
    seconds = FLOP_FACTOR[kind] * forward_flops(model, resolution) / (tflops * 1e12)
    return Rate(seconds + m.get("step_overhead_ms", 0.0) / 1000 / max(batch, 1), f"FLOPs: {machine}")


def rate(model: str, resolution: int, kind: str, batch: int, device: torch.device | None, machine: str | None = None,
         measure_missing: bool = True) -> Rate:
    """The rate an estimate uses: a cached or new measurement on ``device``; the FLOP table for ``machine`` when
    one is named (or no device is given, or ``measure_missing`` is off and nothing is cached)."""
    if machine is None and device is not None:
        hit = lookup(model, resolution, kind, batch, device)
        if hit is not None:
            return hit
        if measure_missing:
            return measure(model, resolution, kind, batch, device, log=_progress)
    return flop_rate(model, resolution, kind, batch, machine or default_machine(device))


def default_machine(device: torch.device | None) -> str:
    """The table's nearest machine to ``device``: the CUDA card by name, else the CPU by its cores."""
    if device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((k for k in machines() if k.upper() in name.upper()), "a100")
    return "cpu-8" if (os.cpu_count() or 1) >= 6 else "cpu-2"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
