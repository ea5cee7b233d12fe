"""Device, precision and determinism settings."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import resource
from pathlib import Path

import numpy as np
import torch

from cifarlab.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is not there is an error."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        from cifarlab.engine import distributed

        d = distributed.get()
        return torch.device("cuda", d.local_rank) if d.enabled else torch.device("cuda")
    if name == "auto":
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available on this machine; use device=cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (``amp=auto|bf16``), or on CPU only when asked (``amp=bf16``)."""
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int, deterministic: bool = False, cudnn_benchmark: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (so wall-clock timings are true); nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_threads(n: int) -> None:
    if n:
        torch.set_num_threads(n)


def memory_format(device: torch.device, channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


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


def peak_memory_mb(device: torch.device) -> float:
    """Peak device memory of this process: CUDA's max allocated, or the process's max RSS on the CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def compile_model(fn, mode: str):
    """``torch.compile`` of a module or function: ``on`` (inductor's default mode), ``cudagraphs`` (inductor with
    CUDA graphs: "reduce-overhead"), or ``off`` (returned as is). Compiled code is cached on disk by inductor (its
    FX-graph and AOT-autograd caches), so a second run of the same model and shapes compiles much faster."""
    if mode == "off":
        return fn
    return torch.compile(fn, mode="reduce-overhead" if mode == "cudagraphs" else None)
