"""Checkpoints written atomically (temp file, fsync, rename) and read with ``weights_only=True``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifarlab.errors import CheckpointError
from cifarlab.files import atomic_write_bytes, current_umask  # noqa: F401  (re-exported: the writers of run files)

if TYPE_CHECKING:
    import torch

# torch is imported where a checkpoint is written or read, so that run-directory reading (the report and its
# worker processes) does not pay for importing it


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
