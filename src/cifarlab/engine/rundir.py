"""The run directory: the one interface between training and analysis.

Layout::

    <out>/<name>/
      summary.json       status (running | complete | diverged | failed | interrupted), headline metrics, error message
      config.json        resolved config, library versions, git commit, dataset and subset hashes
      metrics.csv        one row per epoch
      split.npz          train/val indices into the dataset's train split
      predictions.npz    test labels, predictions, logits (+ embeddings of a stratified test subset)
      checkpoints/last.pt, checkpoints/best.pt
      tb/                TensorBoard events (when tensorboard is installed)

config.json's ``fingerprint`` block is what decides the run's result (:mod:`cifarlab.engine.fingerprint`); a study
reuses the run only while it matches, and moves a changed run aside to ``<name>.replaced-N`` (:data:`REPLACED_MARK`).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from cifarlab.engine.checkpoint import atomic_write_bytes, write_json
from cifarlab.errors import CifarlabError


class RunDir:
    """A run directory, locked for the lifetime of the object's ``with`` block."""

    def __init__(self, path: str | Path) -> None:
        from cifarlab.engine import distributed

        self.path = Path(path)
        self._lock_file = None
        self.writable = distributed.get().is_main  # under torchrun only rank 0 writes

    # ---- paths ------------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.pt"

    # ---- locking ----------------------------------------------------------------------------------------------
    def __enter__(self) -> RunDir:
        if not self.writable:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise CifarlabError(f"run directory {self.path} is in use by {holder}; wait for it, or choose another "
                                "--name") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._lock_file = f
        for stale in self.path.rglob(".*.tmp"):  # temp files of writes interrupted by a kill (never the real files)
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_file is not None:
            (self.path / ".lock").unlink(missing_ok=True)
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # ---- files ------------------------------------------------------------------------------------------------
    def read_summary(self) -> dict[str, Any]:
        return read_json(self.path / "summary.json")

    def update_summary(self, **values: Any) -> dict[str, Any]:
        summary = self.read_summary()
        summary.update(values)
        if self.writable:
            write_json(self.path / "summary.json", summary)
        return summary

    def write_config(self, config: dict[str, Any]) -> None:
        if self.writable:
            write_json(self.path / "config.json", config)

    def save_npz(self, name: str, **arrays: Any) -> None:
        if self.writable:
            import numpy as np

            data = io.BytesIO()
            np.savez(data, **arrays)
            atomic_write_bytes(self.path / name, lambda f: f.write(data.getvalue()))

    def write_metrics(self, history: list[dict[str, Any]], name: str = "metrics.csv") -> None:
        """Rewrite ``name`` (metrics.csv) from the full history, atomically (the checkpoint's copy is the source of
        truth)."""
        if not history or not self.writable:
            return
        fields = list(dict.fromkeys(k for row in history for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
        data = buf.getvalue().encode()
        atomic_write_bytes(self.path / name, lambda f: f.write(data))

    def fail(self, message: str) -> None:
        self.update_summary(status="failed", error=message)

    def clear(self) -> None:
        """Delete everything in the run directory but the lock (``--overwrite``)."""
        for child in self.path.iterdir():
            if child.name == ".lock":
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


REPLACED_MARK = ".replaced-"  # a run directory a study moved aside when it re-ran the changed run: <name>.replaced-N


def is_replaced(path: Path) -> bool:
    """Whether ``path`` is a run directory moved aside by ``cifarlab study --rerun-changed`` (never reported)."""
    stem, mark, n = path.name.rpartition(REPLACED_MARK)
    return bool(stem and mark and n.isdigit())


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CifarlabError(f"{path} is not valid JSON ({exc})") from None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv rows with numbers converted."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: _num(v) for k, v in row.items()})
    return rows


def _num(v: str) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
