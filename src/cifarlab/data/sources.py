"""Dataset sources behind one call: ``load_dataset(spec)`` for the specs in :data:`SOURCES`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cifarlab.data.folder import load_folder
from cifarlab.data.named import IMAGENETTE_DEFAULT_SIZE, load_cifar, load_imagenette, load_stl10
from cifarlab.data.progress import ProgressArg
from cifarlab.data.sizing import resize_note, resize_uint8
from cifarlab.data.synthetic import make_synthetic
from cifarlab.errors import DataError

SOURCES = ("cifar10", "cifar100", "imagenette[:160px|:320px|:full]", "stl10", "stl10+unlabeled", "synthetic",
           "folder:PATH")


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
    unlabeled_x: torch.Tensor | None = None  # (N_u, 3, H, W) uint8 images without labels, for label-free recipes
    notes: list[str] = field(default_factory=list)  # lines the run must log (what was resized, the test split)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of every image tensor (train, test and unlabelled)."""
        extra = self.unlabeled_x.nbytes if self.unlabeled_x is not None else 0
        return self.train_x.nbytes + self.test_x.nbytes + extra

    def with_unlabeled(self) -> ImageData:
        """For label-free recipes: the train split followed by the unlabelled images (label -1), ``unlabeled_x``
        None; the same object when there are none. Indices below ``len(train_y)`` keep their meaning."""
        if self.unlabeled_x is None or len(self.unlabeled_x) == 0:
            return self
        n = len(self.unlabeled_x)
        return replace(self, train_x=torch.cat([self.train_x, self.unlabeled_x]),
                       train_y=torch.cat([self.train_y, torch.full((n,), -1, dtype=self.train_y.dtype)]),
                       unlabeled_x=None,
                       notes=[*self.notes, f"label-free pool: {len(self.train_y):,} train + {n:,} unlabelled images"])

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
    """``raw`` arrays are NCHW uint8 (the loaders' common format); no copy is made."""
    unlabeled = raw.get("unlabeled_x")
    return ImageData(name=name, classes=list(raw["classes"]), train_x=torch.from_numpy(raw["train_x"]),
                     train_y=torch.from_numpy(np.asarray(raw["train_y"], dtype=np.int64)),
                     test_x=torch.from_numpy(raw["test_x"]),
                     test_y=torch.from_numpy(np.asarray(raw["test_y"], dtype=np.int64)), digest=str(raw["digest"]),
                     unlabeled_x=torch.from_numpy(unlabeled) if unlabeled is not None else None,
                     notes=list(raw.get("notes", [])))


def _resized(data: ImageData, side: int) -> ImageData:
    """A tensor dataset (CIFAR, STL-10) at ``side`` when ``image_size`` asks for another size, with its note."""
    if not side or side == data.image_size:
        return data
    parts = {"train": data.train_x, "test": data.test_x,
             **({"unlabeled": data.unlabeled_x} if data.unlabeled_x is not None else {})}
    sizes = np.full((sum(len(x) for x in parts.values()), 2), data.image_size)
    note = resize_note(sizes, side, side, {k: len(v) for k, v in parts.items()})
    new = {k: resize_uint8(v, side) for k, v in parts.items()}
    return replace(data, train_x=new["train"], test_x=new["test"], unlabeled_x=new.get("unlabeled"),
                   digest=f"{data.digest}-size{side}", notes=[*data.notes, *([note] if note else [])])


def load_dataset(spec: str, root: str | Path | None = None, image_size: int = 0, progress: ProgressArg = False,
                 test_split: str = "auto") -> ImageData:
    """Load a dataset by name.

    Args:
        spec: ``cifar10``, ``cifar100``, ``imagenette`` (= ``imagenette:160px``; or ``:320px``, ``:full``),
            ``stl10``, ``stl10+unlabeled`` (adds ``unlabeled_x``), ``synthetic[:K[:N_TRAIN[:N_TEST]]]`` or
            ``folder:PATH`` (see :mod:`cifarlab.data.folder` for the layouts).
        root: data root for torchvision downloads and decoded caches (default ``$CIFARLAB_DATA`` or ``./data``).
        image_size: the side to resize to; 0 = the data's own size, and for mixed sizes the rule in
            :mod:`cifarlab.data.sizing` (stated in ``notes``); synthetic: the side (default 32).
        progress: show the first decode of a folder dataset (or ImageNette) on stderr, or a callable
            ``(phase, done, total)``.
        test_split: folder datasets: ``auto`` (test/ if present, else val/), ``test`` or ``val``.
    """
    root = Path(root) if root else default_root()
    if spec in ("cifar10", "cifar100"):
        return _resized(_from_arrays(spec, load_cifar(spec, root)), image_size)
    if spec in ("stl10", "stl10+unlabeled"):
        return _resized(_from_arrays(spec, load_stl10(root, unlabeled=spec.endswith("+unlabeled"))), image_size)
    if spec == "imagenette" or spec.startswith("imagenette:"):
        size = spec.split(":", 1)[1] if ":" in spec else IMAGENETTE_DEFAULT_SIZE
        return _from_arrays(f"imagenette-{size}", load_imagenette(size, root, image_size, progress))
    if spec == "synthetic" or spec.startswith("synthetic:"):
        # synthetic[:K[:N_TRAIN[:N_TEST]]]; image side from image_size (default 32)
        nums = [int(v) for v in spec.split(":")[1:]] if ":" in spec else []
        k, ntr, nte = (nums + [10, 100, 50][len(nums):])[:3]
        return _from_arrays("synthetic", make_synthetic(k, ntr, nte, size=image_size or 32))
    if spec.startswith("folder:"):
        path = spec.split(":", 1)[1]
        if not path:
            raise DataError("folder: needs a path, e.g. --dataset folder:~/images")
        raw = load_folder(path, root / "cache", image_size, progress=progress, test_split=test_split)
        return _from_arrays(Path(path).name or path, raw)
    raise DataError(f"unknown dataset {spec!r}; choose from: {', '.join(SOURCES)}")
