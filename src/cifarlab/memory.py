"""How much memory a device has free and how much this process has used: the floor that data/ (where the dataset
is placed) and engine/ (run summaries) both read."""

from __future__ import annotations

import resource
from pathlib import Path

import torch


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
