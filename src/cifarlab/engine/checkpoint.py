"""Checkpoints written atomically (temp file, fsync, rename) and read with ``weights_only=True``."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifarlab.errors import CheckpointError

if TYPE_CHECKING:
    import torch

# torch is imported where a checkpoint is written or read, so that run-directory reading (the report and its
# worker processes) does not pay for importing it


def current_umask() -> int:
    """The process's file-mode creation mask. POSIX can only read it by setting it, so it is set and put back at
    once; Linux reports it read-only in /proc/self/status (``Umask:``), which is used where present, so no other
    thread ever sees a changed mask there."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it, then rename it over ``path``: a reader (or a
    crash at any moment) sees either the old file or the complete new one, never a truncated one. The file gets
    the mode a plain ``open(path, "w")`` would give it (0o666 less the umask), not mkstemp's private 0o600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(obj: dict[str, Any], path: str | Path) -> None:
    import torch

    atomic_write_bytes(Path(path), lambda f: torch.save(obj, f))


def write_json(path: str | Path, obj: Any) -> None:
    data = json.dumps(obj, indent=2, sort_keys=False, default=str).encode()
    atomic_write_bytes(Path(path), lambda f: f.write(data))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint; anything that is not tensors and plain containers is refused."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain containers "
                              f"(weights_only=True: {str(exc).strip().splitlines()[0][:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160]})") from None
