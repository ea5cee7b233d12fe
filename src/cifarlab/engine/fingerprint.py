"""A run's fingerprint: everything that decides its result, so a run directory is reused only for the same run.

Its components (``config.json``'s ``fingerprint`` block keeps them beside their hash, so a difference can be named):

- ``config``: the resolved config without the keys in :data:`PRESENTATION_KEYS` (where the run goes, how it shows
  progress, whether it was resumed: none of them changes what is trained);
- ``dataset``: the dataset's content hash (``ImageData.digest``, taken when the dataset is decoded);
- ``split`` and ``test_subset``: hashes of the train/val indices and of the test subset's indices;
- ``init``: the fingerprint hash of the run an ``init`` names (or the content hash of a checkpoint file);
- ``weights_file``: the content hash of a ``weights`` file (ImageNet weights by name are not hashed);
- ``cifarlab``: the package version.

The config part, ``init``, ``weights_file`` and the version are known before any data is read (:func:`static`);
the data part needs the labels (:func:`data_part`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from cifarlab.engine.rundir import read_json

# config keys that never change what a run trains or measures; the one list of them
PRESENTATION_KEYS = ("progress", "out", "name", "resume", "overwrite", "data_root")
DATA_PARTS = ("dataset", "split", "test_subset")
_PART_NAMES = {"dataset": "dataset content", "split": "training subset (train/val indices)",
               "test_subset": "test subset (indices)", "init": "init run", "weights_file": "weights file content",
               "cifarlab": "cifarlab version"}


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def source(spec: str) -> str | None:
    """What a run starts from, as a fingerprint part: ``run <hash>`` for a run directory (or a checkpoint inside
    one), ``file <hash>`` for another file, ``missing <path>`` for a path that is not there, None for none."""
    if not spec or spec in ("random", "default", "none"):
        return None
    path = Path(spec)
    run_dir = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    if run_dir is not None and (run_dir / "config.json").is_file():
        return f"run {recorded_hash(run_dir) or 'without a fingerprint'}"
    if path.is_file():
        return f"file {_file_hash(path)}"
    return f"missing {spec}"


def static(cfg: Any) -> dict[str, Any]:
    """The parts known before any data is read: the config, the ``init`` run, the ``weights`` file, the version."""
    import dataclasses

    from cifarlab import __version__

    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in PRESENTATION_KEYS}
    return {"config": config, "init": source(str(getattr(cfg, "init", "") or "")),
            "weights_file": source(str(getattr(cfg, "weights", "") or "")), "cifarlab": __version__}


def data_part(digest: str, split: Any, test_keep: torch.Tensor) -> dict[str, str]:
    """The data parts: the dataset's content hash and the hashes of the index arrays (never of the images)."""
    return {"dataset": digest, "split": split.digest()[:16],
            "test_subset": hashlib.sha256(test_keep.numpy().tobytes()).hexdigest()[:16]}


def digest_of(components: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(components, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record(cfg: Any, data: Any, split: Any, test_keep: torch.Tensor) -> dict[str, Any]:
    """``config.json``'s ``fingerprint`` block: the components and their hash."""
    components = {**static(cfg), **data_part(data.digest, split, test_keep)}
    return {"hash": digest_of(components), "components": components}


def recorded(run_dir: str | Path) -> dict[str, Any] | None:
    """The components a run directory recorded; for a run written before fingerprints, the parts its config.json
    holds (config, dataset and split); None when it holds no config.json."""
    doc = read_json(Path(run_dir) / "config.json")
    if not doc:
        return None
    if "fingerprint" in doc:
        return doc["fingerprint"]["components"]
    config = {k: v for k, v in doc.get("config", {}).items() if k not in PRESENTATION_KEYS}
    split = doc.get("split", {}).get("digest")
    return {"config": config, "dataset": doc.get("dataset", {}).get("digest"),
            **({"split": split[:16]} if split else {})}


def recorded_hash(run_dir: str | Path) -> str | None:
    return read_json(Path(run_dir) / "config.json").get("fingerprint", {}).get("hash")


def _show(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value) if isinstance(value, str) and " " in value else str(value)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two sets of components, one phrase each (``epochs 1 -> 3``, ``dataset content
    changed``); only parts both hold are compared (a run written before fingerprints lacks some)."""
    out = []
    old_cfg, new_cfg = old.get("config", {}), new.get("config", {})
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if "config" in old and "config" in new and old_cfg.get(key) != new_cfg.get(key):
            out.append(f"{key} {_show(old_cfg.get(key))} -> {_show(new_cfg.get(key))}")
    for part, what in _PART_NAMES.items():
        if part in old and part in new and old[part] != new[part]:
            if part == "cifarlab":
                out.append(f"{what} {old[part]} -> {new[part]}")
            elif part in DATA_PARTS:
                out.append(f"{what} changed")
            else:
                out.append(f"{what} changed ({_show(old[part])} -> {_show(new[part])})")
    return out
