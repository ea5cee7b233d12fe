"""Named datasets through torchvision's own classes: CIFAR-10/100, ImageNette and STL-10.

Each is downloaded into the data root where the machine is online; offline, a missing file raises a
:class:`DataError` that names the file, the folder to put it in and the URL to fetch it from. The same code runs on
torchvision 0.26 and 0.29 (the three classes are identical in both).

- ``imagenette[:160px|320px|full]`` (``imagenette`` = ``imagenette:160px``, the smallest download that gives the
  default 160-px images): 10 ImageNet classes, 9,469 train and 3,925 val images; the val split is the test split.
  torchvision downloads and extracts ``imagenette2-160/`` (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``); the
  images are then decoded, resized and cached as any image folder (:mod:`cifarlab.data.folder`), and the classes
  carry ImageNette's names (``tench``, ``English springer``, ...) in WordNet-id order.
- ``stl10`` / ``stl10+unlabeled``: 96-px images, 5,000 labelled train (the ten predefined folds are not used) and
  8,000 test images; ``+unlabeled`` adds the 100,000 unlabelled images as ``unlabeled_x``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab.data.folder import load_folder
from cifarlab.data.progress import ProgressArg
from cifarlab.errors import DataError

IMAGENETTE_SIZES = ("160px", "320px", "full")
IMAGENETTE_DEFAULT_SIZE = "160px"
# the classes in label order, used only if the archive lacks class_names.txt (torchvision reads it from there)
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- CIFAR ------------------------------------------------------------------------------------------------------


def load_cifar(name: str, root: Path) -> dict[str, Any]:
    """CIFAR-10 or CIFAR-100 (fine labels) through torchvision; arrays NCHW uint8."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = root / cls.base_folder
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise DataError(f"{name} is not in {folder} and could not be downloaded ({_reason(exc)}); download "
                        f"{cls.url} and put {cls.filename} in {root} (it is extracted there on the next run), or "
                        f"extract it there yourself (giving {folder}/), or use --dataset folder:PATH with "
                        "train/<class>/ and test/<class>/ image folders") from None
    h = hashlib.sha256(name.encode())
    for part in (train.data, np.asarray(train.targets), test.data, np.asarray(test.targets)):
        h.update(np.ascontiguousarray(part).tobytes())
    return {"classes": list(train.classes), "train_x": _nchw(train.data), "train_y": np.asarray(train.targets),
            "test_x": _nchw(test.data), "test_y": np.asarray(test.targets), "digest": h.hexdigest()}


def _nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


# ---- ImageNette --------------------------------------------------------------------------------------------------


def imagenette_archive(size: str) -> tuple[str, str]:
    """(URL, MD5) of the archive torchvision downloads for ``size``."""
    from torchvision.datasets import Imagenette

    archives = getattr(Imagenette, "_ARCHIVES", {})
    if size not in archives:  # a torchvision that renamed its table: the documented archive names
        stem = {"full": "imagenette2", "320px": "imagenette2-320", "160px": "imagenette2-160"}[size]
        return f"https://s3.amazonaws.com/fast-ai-imageclas/{stem}.tgz", ""
    return archives[size]


def load_imagenette(size: str, root: Path, image_size: int = 0, progress: ProgressArg = False) -> dict[str, Any]:
    """ImageNette at ``size`` (``160px``, ``320px`` or ``full``): train and val (the test split), decoded like an
    image folder; classes named as ImageNette names them (the first name torchvision lists per WordNet id)."""
    from torchvision.datasets import Imagenette

    if size not in IMAGENETTE_SIZES:
        raise DataError(f"unknown ImageNette size {size!r}; choose from: {', '.join(IMAGENETTE_SIZES)} "
                        f"(e.g. --dataset imagenette:{IMAGENETTE_DEFAULT_SIZE})")
    url, md5 = imagenette_archive(size)
    archive = Path(url).name  # imagenette2-160.tgz
    folder = root / Path(url).stem  # imagenette2-160
    try:
        train = Imagenette(str(root), split="train", size=size, download=True)
        Imagenette(str(root), split="val", size=size)  # raises when val/ is missing
    except (OSError, RuntimeError) as exc:
        have = root / archive
        state = (f"{have} is present but its MD5 is not {md5} (a partial download?)" if have.is_file() and md5
                 else f"{folder} is incomplete" if folder.exists() else f"{folder} does not exist")
        raise DataError(f"imagenette:{size}: {state}, and the download failed ({_reason(exc)}); download {url} "
                        f"and put {archive} in {root} (it is extracted there on the next run), or extract it "
                        f"there yourself, giving {folder}/train/<wnid>/*.JPEG and {folder}/val/<wnid>/*.JPEG"
                        ) from None
    raw = load_folder(folder, root / "cache", image_size, progress=progress, test_split="val")
    name_of = {wnid: names[0] for wnid, names in zip(train.wnids, train.classes)}
    raw["classes"] = [name_of.get(wnid, wnid) for wnid in raw["classes"]]
    raw["notes"] = [f"imagenette:{size}: the test split is ImageNette's val split ({len(raw['test_y']):,} images)",
                    *raw["notes"]]
    return raw


# ---- STL-10 ------------------------------------------------------------------------------------------------------

_VERIFIED: set[tuple[Any, ...]] = set()  # STL-10 folders whose MD5s were checked in this process


@functools.cache
def _stl10_class() -> type:
    """torchvision's STL10 with its MD5 check (all five files, 3 GB, on every construction: ~5 s each) done once
    per folder and process; a file that changes size or modification time is checked again."""
    from torchvision.datasets import STL10

    class CheckedOnceSTL10(STL10):
        def _check_integrity(self) -> bool:
            key = _stl10_stamp(Path(self.root))
            if key in _VERIFIED:
                return True
            ok = super()._check_integrity()
            if ok:
                _VERIFIED.add(key)
            return ok

    return CheckedOnceSTL10


def _stl10_files() -> list[tuple[str, str]]:
    from torchvision.datasets import STL10

    return [(f, md5) for f, md5 in STL10.train_list + STL10.test_list]


def _stl10_stamp(root: Path) -> tuple[Any, ...]:
    from torchvision.datasets import STL10

    stamp: list[Any] = [str(root.resolve())]
    for f, md5 in _stl10_files():
        p = root / STL10.base_folder / f
        st = p.stat() if p.is_file() else None
        stamp += [f, md5, st.st_size if st else -1, st.st_mtime_ns if st else -1]
    return tuple(stamp)


def load_stl10(root: Path, unlabeled: bool = False) -> dict[str, Any]:
    """STL-10 train (5,000) and test (8,000) at 96 px; with ``unlabeled`` also the 100,000 unlabelled images."""
    from torchvision.datasets import STL10

    cls = _stl10_class()
    folder = root / STL10.base_folder
    try:
        train = cls(str(root), split="train", download=True)
        test = cls(str(root), split="test")
        extra = cls(str(root), split="unlabeled") if unlabeled else None
    except (OSError, RuntimeError) as exc:
        missing = [f for f, _ in _stl10_files() if not (folder / f).is_file()]
        state = (f"{folder} lacks {', '.join(missing)}" if missing
                 else f"a file in {folder} does not match its MD5 (a partial or damaged copy)")
        raise DataError(f"stl10: {state}, and the download failed ({_reason(exc)}); download {STL10.url} (2.6 GB) "
                        f"and put {STL10.filename} in {root} (it is extracted there on the next run), or extract it "
                        f"there yourself, giving {folder}/ with {', '.join(f for f, _ in _stl10_files())} "
                        "(torchvision checks all five, unlabeled_X.bin included, for every split)") from None
    h = hashlib.sha256(f"stl10|unlabeled={unlabeled}|".encode())
    for f, md5 in _stl10_files():  # the files were checked against these MD5s
        h.update(f"{f}:{md5}|".encode())
    notes = [f"stl10: {len(train.labels):,} labelled train images (the predefined folds are not used), "
             f"{len(test.labels):,} test images"]
    out = {"classes": list(getattr(train, "classes", STL10_CLASSES)), "train_x": _contiguous(train.data),
           "train_y": train.labels.astype(np.int64), "test_x": _contiguous(test.data),
           "test_y": test.labels.astype(np.int64), "unlabeled_x": None, "digest": h.hexdigest()}
    if extra is not None:
        out["unlabeled_x"] = _contiguous(extra.data)
        notes.append(f"stl10+unlabeled: {len(extra.data):,} unlabelled images for label-free recipes")
    out["notes"] = notes
    return out


def _contiguous(a: np.ndarray) -> np.ndarray:
    """torchvision's (N, 3, H, W) view of the file (H and W swapped back by strides) as one contiguous array."""
    return torch.from_numpy(a).contiguous().numpy() if not a.flags.c_contiguous else a

