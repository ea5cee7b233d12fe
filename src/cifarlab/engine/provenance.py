"""Where a run came from: library versions, the git commit, the machine and the clock."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from cifarlab import __version__

_IMPORTED_AT = time.perf_counter()


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Versions of the libraries a run depends on, read from the installed metadata (importing timm only to ask
    its version cost a second of every run's start-up)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "cifarlab": __version__, "torch": torch.__version__,
           "numpy": np.__version__}
    for name in ("torchvision", "timm"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''}".strip()


def process_age_s() -> float:
    """Seconds since this process started (Linux: from /proc, so the interpreter's start and every import count);
    elsewhere, since cifarlab was imported."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED_AT
