"""Dataset sources behind one call: ``load_dataset("cifar10" | "cifar100" | "synthetic" | "folder:PATH")``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cifarlab.data.folder import load_folder
from cifarlab.data.synthetic import make_synthetic
from cifarlab.errors import DataError

SOURCES = ("cifar10", "cifar100", "synthetic", "folder:PATH")


@dataclass
class ImageData:
    """A whole dataset as uint8 tensors (on the CPU until moved), NCHW, labels int64."""

    name: str
    classes: list[str]
    train_x: torch.Tensor  # (N, 3, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor  # (M, 3, H, W) uint8
    test_y: torch.Tensor  # (M,) int64
    digest: str  # content hash: identical data <=> identical digest

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def channel_stats(self, idx: torch.Tensor | None = None, x: torch.Tensor | None = None
                      ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the train split (or of its images ``idx``), in [0, 1] units; ``x`` is a copy
        of ``train_x`` on the compute device to do the arithmetic there (a second of start-up on the CPU)."""
        x = self.train_x if x is None else x
        x = (x if idx is None else x[idx.to(x.device)]).double().div_(255.0)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3))
        return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def default_root() -> Path:
    return Path(os.environ.get("CIFARLAB_DATA") or "./data")


def _from_arrays(name: str, raw: dict) -> ImageData:
    def nchw(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()

    return ImageData(name=name, classes=list(raw["classes"]), train_x=nchw(raw["train_x"]),
                     train_y=torch.from_numpy(np.asarray(raw["train_y"], dtype=np.int64)),
                     test_x=nchw(raw["test_x"]), test_y=torch.from_numpy(np.asarray(raw["test_y"], dtype=np.int64)),
                     digest=str(raw["digest"]))


def _torchvision_cifar(name: str, root: Path) -> dict:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise DataError(f"{name} is not in {folder} and could not be downloaded ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]}); put the extracted python version there, or use "
                        "--dataset folder:PATH with train/<class>/ and test/<class>/ image folders") from None
    h = hashlib.sha256(name.encode())
    for part in (train.data, np.asarray(train.targets), test.data, np.asarray(test.targets)):
        h.update(np.ascontiguousarray(part).tobytes())
    return {"classes": list(train.classes), "train_x": train.data, "train_y": np.asarray(train.targets),
            "test_x": test.data, "test_y": np.asarray(test.targets), "digest": h.hexdigest()}


def load_dataset(spec: str, root: str | Path | None = None, image_size: int = 0) -> ImageData:
    """Load a dataset by name.

    Args:
        spec: ``cifar10``, ``cifar100``, ``synthetic`` or ``folder:PATH``.
        root: data root for torchvision downloads and decoded caches (default ``$CIFARLAB_DATA`` or ``./data``).
        image_size: folder datasets: resize to this side (0 = keep a uniform size, else 32); synthetic: side.
    """
    root = Path(root) if root else default_root()
    if spec in ("cifar10", "cifar100"):
        return _from_arrays(spec, _torchvision_cifar(spec, root))
    if spec == "synthetic" or spec.startswith("synthetic:"):
        # synthetic[:K[:N_TRAIN[:N_TEST]]]; image side from image_size (default 32)
        nums = [int(v) for v in spec.split(":")[1:]] if ":" in spec else []
        k, ntr, nte = (nums + [10, 100, 50][len(nums):])[:3]
        return _from_arrays("synthetic", make_synthetic(k, ntr, nte, size=image_size or 32))
    if spec.startswith("folder:"):
        path = spec.split(":", 1)[1]
        if not path:
            raise DataError("folder: needs a path, e.g. --dataset folder:~/images")
        raw = load_folder(path, root / "cache", image_size)
        return _from_arrays(Path(path).name or path, raw)
    raise DataError(f"unknown dataset {spec!r}; choose from: {', '.join(SOURCES)}")
