"""Files written atomically: the floor that data/ (its decode cache) and engine/ (run directories, checkpoints)
both write through."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
