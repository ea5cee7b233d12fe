"""Checkpoints written atomically (temp file, fsync, rename) and read with ``weights_only=True``."""

from __future__ import annotations

import json
import pickle
import re
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
    except Exception as exc:  # noqa: BLE001  (torch raises many types for a bad file; each becomes one line)
        raise load_error(path, exc) from None


GLOBAL_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ"}  # a pickle that imports a class or function by name


def pickle_opcodes(path: Path) -> set[str] | None:
    """The opcodes of the pickle a PyTorch file holds (``data.pkl`` of its zip, or the legacy file's first
    pickle), read without running any of them; ``None`` when the file is no well-formed zip or pickle (corrupt,
    truncated, or another kind of file)."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if z.testzip() is not None:  # a member whose CRC does not match: damaged bytes
                    return None
                name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                if name is None:
                    return None
                data = z.read(name)
                ops = [op.name for op, _, _ in pickletools.genops(data)]
                return set(ops) if ops and ops[-1] == "STOP" else None
        with open(path, "rb") as f:
            ops = [op.name for op, _, _ in pickletools.genops(f)]
        return set(ops) if ops and ops[-1] == "STOP" else None
    except Exception:  # noqa: BLE001  (any parse failure means the bytes are not a pickle)
        return None


def load_error(path: Path, exc: Exception) -> CheckpointError:
    """The one line for a file ``torch.load(weights_only=True)`` could not read: a well-formed file whose pickle
    names classes or functions is refused (unpickling it could run code); bytes that are no PyTorch file at all are
    called corrupt; anything else keeps torch's reason."""
    if isinstance(exc, PermissionError):
        return CheckpointError(f"{path}: cannot be read ({exc.strerror})")
    ops = pickle_opcodes(path)
    if ops is None:
        return CheckpointError(f"not a readable checkpoint (corrupt or truncated): {path}; save it again, or point "
                               "to another file")
    if isinstance(exc, pickle.UnpicklingError) and ops & GLOBAL_OPCODES:
        named = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        what = f" ({named.group(1)})" if named else ""
        return CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain "
                               f"containers{what}, which could run code when unpickled (weights_only=True); save a "
                               "state dict (tensors only) instead")
    if isinstance(exc, pickle.UnpicklingError):  # a well-formed pickle of plain values, but not torch.save's format
        return CheckpointError(f"not a readable checkpoint (a pickle that torch.save did not write): {path}")
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}{': ' + first if first else ''})")
