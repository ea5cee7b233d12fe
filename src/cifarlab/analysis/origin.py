"""What a run started from, as its summary records it (``started_from``), never guessed from its config.

The contract, written by every run into summary.json:
    ``imagenet:<source>``  ImageNet weights (e.g. ``imagenet:torchvision IMAGENET1K_V1``)
    ``file:<path>``        a state dict the user gave
    ``none``               random init
    ``init:<run dir>``     a cifarlab run's encoder (e.g. a rotation run's)
A run written before this was recorded has no ``started_from``: it is shown as "unrecorded" and filed under no
question that depends on its start (it is never called pretrained)."""

from __future__ import annotations

from pathlib import Path

from cifarlab.analysis.runs import Run
from cifarlab.engine.rundir import read_json

UNRECORDED = "unrecorded"


def started_from(run: Run) -> str | None:
    value = run.summary.get("started_from")
    return str(value) if isinstance(value, str) and value else None


def parts(run: Run) -> tuple[str, str] | None:
    """``started_from`` split at its first colon (``("none", "")`` for random init); None where unrecorded."""
    value = started_from(run)
    if value is None:
        return None
    head, _, rest = value.partition(":")
    return head, rest


class Origins:
    """Resolves a run's start to a kind, looking up ``init:<run dir>`` among the reported runs (or on disk)."""

    def __init__(self, runs: list[Run]) -> None:
        self._by_path = {str(r.path.resolve()): r for r in runs}
        self._by_name: dict[str, list[Run]] = {}
        for r in runs:
            self._by_name.setdefault(r.name, []).append(r)

    def source_recipe(self, run_dir: str) -> str | None:
        """The recipe of the run directory ``run_dir`` names: a reported run by path, else by its unique name,
        else the summary.json on disk; None when none of them is found."""
        path = Path(run_dir)
        hit = self._by_path.get(str(path.resolve()))
        if hit is None and len(self._by_name.get(path.name, [])) == 1:
            hit = self._by_name[path.name][0]
        if hit is not None:
            return str(hit.summary.get("recipe"))
        summary = path / "summary.json"
        if summary.is_file():
            try:
                return str(read_json(summary).get("recipe"))
            except (OSError, ValueError):
                return None
        return None

    def kind(self, run: Run) -> str:
        """imagenet | file | none | rotation | init:<recipe of the source run, or 'unknown'> | unrecorded."""
        split = parts(run)
        if split is None:
            return UNRECORDED
        head, rest = split
        if split == ("none", "") or head in ("imagenet", "file"):
            return head
        if head == "init":
            recipe = self.source_recipe(rest)
            return "rotation" if recipe == "rotation" else f"init:{recipe or 'unknown'}"
        return UNRECORDED  # a value outside the contract is not interpreted


def label(run: Run) -> str:
    """The report's ``init`` column: 'ImageNet (torchvision IMAGENET1K_V1)', 'given weights (w.pt)', 'random init',
    'init: <run name>' or 'unrecorded'."""
    split = parts(run)
    if split is None:
        return UNRECORDED
    head, rest = split
    if split == ("none", ""):
        return "random init"
    if head == "imagenet":
        return f"ImageNet ({rest})" if rest else "ImageNet"
    if head == "file":
        return f"given weights ({Path(rest).name})"
    if head == "init":
        return f"init: {Path(rest).name}"
    return f"{UNRECORDED} ({started_from(run)})"
