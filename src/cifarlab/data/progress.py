"""Progress of a dataset's first load (reading an archive, scanning sizes, decoding) on one stderr line."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm

# a callable progress receives (phase, done, total); total is None while it is unknown (reading a .tar.gz)
ProgressFn = Callable[[str, int, "int | None"], None]
ProgressArg = bool | ProgressFn


class Progress:
    """One tqdm line (count and rate) reused across phases, or a callable, or nothing (``progress=False``).

    Args:
        progress: ``True`` for a tqdm line on stderr, ``False`` for none, or a callable ``(phase, done, total)``.
        name: the dataset, shown before the phase (``cifar10-png.tar.gz: decoding``).
    """

    def __init__(self, progress: ProgressArg, name: str) -> None:
        self.fn = progress if callable(progress) else None
        self.enabled = bool(progress)
        self.name = name
        self.bar: tqdm | None = None
        self.phase_name, self.done, self.total = "", 0, None

    def phase(self, name: str, total: int | None = None) -> None:
        self.phase_name, self.done, self.total = name, 0, total
        if self.fn is not None:
            self.fn(name, 0, total)
        elif self.enabled:
            if self.bar is None:
                self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True,
                                desc=f"{self.name}: {name}")
            else:
                self.bar.reset(total=total)  # restarts the rate too
                self.bar.set_description(f"{self.name}: {name}")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.fn is not None:
            self.fn(self.phase_name, self.done, self.total)
        elif self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
