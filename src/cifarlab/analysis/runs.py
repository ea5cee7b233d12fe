"""Reading run directories: the only input analysis and reports take."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.engine.rundir import is_replaced, read_json, read_metrics


@dataclass
class Run:
    """One run directory, read lazily."""

    path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def config(self) -> dict[str, Any]:
        return read_json(self.path / "config.json")

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path / "metrics.csv")

    @cached_property
    def predictions(self) -> dict[str, np.ndarray] | None:
        f = self.path / "predictions.npz"
        if not f.is_file():
            return None
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.summary.get("classes") or self.config.get("dataset", {}).get("classes", [])]

    def key(self, name: str, default: Any = None) -> Any:
        """A config key of the run (``per_class``, ``init``, ...)."""
        return self.config.get("config", {}).get(name, default)

    @property
    def accuracy(self) -> float | None:
        """The run's headline test accuracy: classifier accuracy, or rotation accuracy for pretext runs; None for a
        run that did not complete (a diverged or failed run is never reported as a result)."""
        if self.status != "complete":
            return None
        for k in ("test_acc", "rotation_test_acc"):
            if isinstance(self.summary.get(k), (int, float)):
                return float(self.summary[k])
        return None


def find_runs(root: str | Path) -> list[Run]:
    """Every run directory under ``root`` (``root`` itself may be one), sorted by name; runs moved aside as
    ``<name>.replaced-N`` are left out."""
    root = Path(root)
    paths = [root] if (root / "summary.json").is_file() else sorted(p.parent for p in root.rglob("summary.json"))
    # runs a study moved aside when it re-ran them changed are kept, never reported beside their replacements
    paths = [p for p in paths if p == root or not any(is_replaced(q) for q in [p, *p.relative_to(root).parents])]
    return [Run(p, read_json(p / "summary.json")) for p in paths]
