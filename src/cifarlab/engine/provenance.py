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

import cifarlab
from cifarlab import __version__

# more than this between the process's start and cifarlab's import is not the interpreter's own start-up
INTERPRETER_START_MAX_S = 2.0


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


def _proc_age_s() -> float | None:
    """Seconds since this pid started (Linux /proc); None elsewhere."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def process_age_s() -> float:
    """Seconds since this process started: from /proc, so the interpreter's start and every import count. Where
    the pid ran something else first, the time since cifarlab's import (which precedes torch's) is used instead: a
    shell's ``exec`` keeps the pid and its start time (the last command of ``bash -c "a && b"`` is exec'd, so ``a``'s
    time would count as b's start-up), and a notebook imports cifarlab long after it started.
    More than ``INTERPRETER_START_MAX_S`` between the two is taken for such a case."""
    since_import = time.perf_counter() - cifarlab.IMPORTED_AT
    age = _proc_age_s()
    return age if age is not None and age - since_import <= INTERPRETER_START_MAX_S else since_import
