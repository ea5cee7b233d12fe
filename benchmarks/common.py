"""Helpers shared by the benchmark scripts: data location, timing, machine description."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
CIFAR_PNG = SHARED / "cifar10-png.tar.gz"


def cifar_or_exit(root: str | None = None):
    """The real CIFAR-10 copy (lossless PNG) loaded as uint8 tensors, or exit 0 with a note when absent."""
    from cifarlab.data import load_dataset

    path = Path(os.environ.get("CIFARLAB_CIFAR_PNG", CIFAR_PNG))
    if not path.is_file():
        print(f"skipped: {path} not present")
        raise SystemExit(0)
    return load_dataset(f"folder:{path}", root)


def fresh_data_root(tmp: Path) -> Path:
    """A data root whose cache holds the already-decoded datasets (symlinked) but no cached embeddings, so a
    benchmark pays for embedding and not for PNG decoding."""
    root = Path(tmp)
    (root / "cache").mkdir(parents=True, exist_ok=True)
    for f in (Path(os.environ.get("CIFARLAB_DATA", "./data")) / "cache").glob("folder-*.npz"):
        (root / "cache" / f.name).symlink_to(f.resolve())
    return root


def median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()} ({os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, {dev}), "
            f"torch {torch.__version__}, {datetime.date.today().isoformat()}")


def short_commit() -> str:
    """The checkout's short commit, or '' where there is no git (the GPU machine's copy of the tree)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""
