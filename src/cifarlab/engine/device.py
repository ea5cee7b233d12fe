"""Device, precision and determinism settings."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import threading

import numpy as np
import torch

from cifarlab.errors import ConfigError
from cifarlab.memory import free_memory_bytes, peak_memory_mb  # noqa: F401  (re-exported)


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


def resolve_amp(amp: str, device: torch.device) -> tuple[str, str]:
    """(bf16 | fp16 | off, why) for ``amp`` (auto | bf16 | fp16 | off) on ``device``.

    ``auto``: bf16 where the card has bf16 hardware (CUDA compute capability 8.0 and up); fp16 with a gradient scaler
    on older CUDA cards, where torch only emulates bf16 (``torch.cuda.is_bf16_supported`` says True there through
    emulation, at a fraction of the card's fp16 speed); off on the CPU and on MPS (autocast on MPS is not measured
    here, so it is not chosen for the user)."""
    if amp == "off":
        return "off", "asked (amp=off)"
    if amp in ("bf16", "fp16"):
        if amp == "fp16" and device.type == "cpu" and not torch.amp.is_autocast_available("cpu"):
            raise ConfigError("amp=fp16: this torch cannot autocast fp16 on the CPU; use amp=off or amp=bf16")
        return amp, f"asked (amp={amp})"
    if device.type != "cuda":
        return "off", f"auto: no mixed precision on {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if major >= 8:
        return "bf16", f"auto: compute capability {major}.{minor} has bf16 hardware"
    return "fp16", f"auto: compute capability {major}.{minor} < 8.0 only emulates bf16; fp16 with a gradient scaler"


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Autocast for a resolved ``amp`` (bf16 | fp16 | off); ``auto`` is resolved here by :func:`resolve_amp`."""
    if amp == "auto":
        amp = resolve_amp(amp, device)[0]
    if amp not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (its range is too small for small gradients without it); None for bf16 and off."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def seed_everything(seed: int, deterministic: bool = False, cudnn_benchmark: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # set either way: the switch is process-wide, and a deterministic run must not leave it on for the next run of
    # a study (or a test) that did not ask for it
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic


def warm_up_kernels(device: torch.device) -> None:
    """A small convolution forward and backward in bf16 channels_last, and a matrix product, on ``device``: the
    CUDA context, the cuDNN/cuBLAS libraries and handles, and the common kernels' first loads. Draws no random
    numbers (no module is initialised), so the run's random streams stay as seeded."""
    fmt = memory_format(device, True)
    weight = torch.ones(8, 8, 3, 3, device=device, requires_grad=True)
    x = torch.ones(2, 8, 8, 8, device=device).contiguous(memory_format=fmt)
    with autocast(device, "auto"):
        torch.nn.functional.conv2d(x, weight, padding=1).float().sum().backward()
        (torch.ones(64, 64, device=device) @ torch.ones(64, 64, device=device)).sum()
    synchronize(device)


def start_warm_up(device: torch.device) -> threading.Thread | None:
    """On CUDA, :func:`warm_up_kernels` in a background thread, so that the CUDA start (about a second in the first step
    of a process) overlaps the dataset's loading; join it before using the device.
    PyTorch hands a finished thread's library handles to the next thread that asks. None elsewhere."""
    if device.type != "cuda":
        return None

    def run() -> None:
        try:
            warm_up_kernels(device)
        except Exception:  # noqa: BLE001  (a failed warm-up only loses its head start; the run reports real errors)
            pass

    thread = threading.Thread(target=run, name="cifarlab-cuda-warm-up", daemon=True)
    thread.start()
    return thread


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (so wall-clock timings are true); nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_threads(n: int) -> None:
    if n:
        torch.set_num_threads(n)


# glibc's mallopt parameters (malloc.h) and the values cifarlab sets on the CPU: blocks up to 1 GiB come from the
# heap and freed memory stays there for the next batch instead of going back to the kernel
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
RETAIN_MMAP_BYTES, RETAIN_TRIM_BYTES = 1 << 30, (1 << 31) - 1
_allocator = "default"


def retain_freed_memory() -> str:
    """Keep freed memory in the process for reuse (glibc ``mallopt``), process-wide; returns the allocator's state
    afterwards: ``retain``, or ``unavailable`` where the C library is not glibc (macOS, musl, Windows).

    By default glibc serves every block over its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh
    ``mmap`` and unmaps it on free, so each CPU forward pass zero-fills its activations again through page faults:
    on the 2-core machine half of an embedding pass's CPU time was kernel time. Retaining the memory made frozen
    EfficientNet-Lite0 at 128 px 1.4-1.9x faster (docs/results.md, "Frozen embedding on the CPU"); PyTorch's CPU
    tuning guide gets the same from jemalloc/tcmalloc. The price: the process's resident memory stays at its peak.
    """
    global _allocator
    if _allocator == "retain":
        return _allocator
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, RETAIN_MMAP_BYTES) and libc.mallopt(M_TRIM_THRESHOLD, RETAIN_TRIM_BYTES)
    except (OSError, AttributeError):
        ok = False
    _allocator = "retain" if ok else "unavailable"
    return _allocator


def allocator_state() -> str:
    """``default`` (glibc's own thresholds), ``retain`` (:func:`retain_freed_memory`) or ``unavailable``."""
    return _allocator


def memory_format(device: torch.device, channels_last: bool) -> torch.memory_format:
    """channels_last on CUDA when asked, NCHW elsewhere. channels_last builds cuDNN plans for seconds per new
    shape where NCHW takes a fraction of that, but then runs the steps clearly faster, so it stays,
    and evaluation pads its batches to few shapes (``engine.embed.Padded``)."""
    return torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format


def inference_format(device: torch.device, channels_last: bool) -> torch.memory_format:
    """The layout of frozen-backbone inference (embeddings): channels_last also on the CPU, where it measured 1.8x
    faster for lite0 at 128 px (oneDNN); :func:`memory_format` on CUDA."""
    return torch.channels_last if device.type == "cpu" else memory_format(device, channels_last)


def format_name(fmt: torch.memory_format) -> str:
    return "channels_last" if fmt == torch.channels_last else "nchw"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


def compile_model(fn, mode: str):
    """``torch.compile`` of a module or function: ``on`` (inductor's default mode), ``cudagraphs`` (inductor with
    CUDA graphs: "reduce-overhead"), or ``off`` (returned as is). Compiled code is cached on disk by inductor (its
    FX-graph and AOT-autograd caches), so a second run of the same model and shapes compiles much faster."""
    if mode == "off":
        return fn
    return torch.compile(fn, mode="reduce-overhead" if mode == "cudagraphs" else None)
