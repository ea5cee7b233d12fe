"""Small stand-ins for the named datasets, written in their distributed layouts (no network).

- :func:`write_imagenette`: ``imagenette2-160/{train,val}/<wnid>/*.JPEG`` with mixed sizes, as a directory or as
  the .tgz torchvision downloads;
- :func:`write_stl10`: ``stl10_binary/*.bin`` exactly as torchvision's STL10 reads them (column-major 96x96
  planes, labels 1..10), plus the MD5 table that makes torchvision accept the fake files;
- :func:`write_cifar100`: ``cifar-100-python/{train,test,meta}`` pickles, plus their MD5 table.

Images carry a class colour and a vertical gradient (so the rotation task has something to learn).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042", "n03425413",
         "n03445777", "n03888257")
NAMES = ("tench", "English springer", "cassette player", "chain saw", "church", "French horn", "garbage truck",
         "gas pump", "golf ball", "parachute")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def picture(rng: np.random.Generator, label: int, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8: class colour, bright at the top and dark at the bottom, plus noise."""
    colour = np.array([(label * 67) % 256, (label * 131 + 40) % 256, (label * 29 + 90) % 256], np.float64)
    ramp = np.linspace(1.0, 0.3, height)[:, None, None]
    img = colour * ramp + rng.normal(0, 12, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def imagenette_sizes(short: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(width, height) pairs like ImageNette-160's: the shorter side ``short``, the other longer (up to 2x), in
    either orientation."""
    out = []
    for _ in range(count):
        long = int(rng.integers(short + 1, 2 * short + 1))
        out.append((long, short) if rng.random() < 0.7 else (short, long))
    return out


def write_imagenette(root: Path, classes: int = 3, per_class: dict[str, int] | None = None, short: int = 40,
                     as_tgz: bool = False, folder: str = "imagenette2-160", seed: int = 0) -> Path:
    """ImageNette's layout under ``root/folder`` (or ``root/folder.tgz``, the directory wrapped in the archive);
    returns the directory or the archive."""
    rng = np.random.default_rng(seed)
    per_class = per_class or {"train": 6, "val": 3}
    files: dict[str, bytes] = {}
    for split, n in per_class.items():
        for label, wnid in enumerate(WNIDS[:classes]):
            for i, (w, h) in enumerate(imagenette_sizes(short, n, rng)):
                buf = io.BytesIO()
                Image.fromarray(picture(rng, label, w, h)).save(buf, format="JPEG", quality=90)
                files[f"{folder}/{split}/{wnid}/{wnid}_{i}.JPEG"] = buf.getvalue()
    files[f"{folder}/noisy_imagenette.csv"] = b"path,noisy_labels_0\n"  # present in the real archive; ignored
    if as_tgz:
        archive = root / f"{folder}.tgz"
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tf:
            for name, data in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return archive
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / folder


def stl10_images(n: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = labels if labels is not None else rng.integers(0, 10, n)
    return np.stack([picture(rng, int(k), 96, 96) for k in labels]).transpose(0, 3, 1, 2)  # (N, 3, H, W)


def write_stl10(root: Path, n_train: int = 20, n_test: int = 10, n_unlabeled: int = 30
                ) -> tuple[dict[str, np.ndarray], dict[str, list[list[str]]]]:
    """``root/stl10_binary`` as the STL-10 archive extracts; returns the arrays written ((N, 3, H, W) images,
    0-based labels) and ``{"train_list", "test_list"}`` MD5 tables to patch onto torchvision's STL10."""
    d = root / "stl10_binary"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {"train_y": rng.integers(0, 10, n_train), "test_y": rng.integers(0, 10, n_test)}
    arrays["train_x"] = stl10_images(n_train, 2, arrays["train_y"])
    arrays["test_x"] = stl10_images(n_test, 3, arrays["test_y"])
    arrays["unlabeled_x"] = stl10_images(n_unlabeled, 4)
    for part in ("train", "test", "unlabeled"):
        # the binary format stores each 96x96 plane column-major; torchvision transposes it back
        (d / f"{part}_X.bin").write_bytes(np.ascontiguousarray(arrays[f"{part}_x"].transpose(0, 1, 3, 2)).tobytes())
    for part in ("train", "test"):
        (d / f"{part}_y.bin").write_bytes((arrays[f"{part}_y"] + 1).astype(np.uint8).tobytes())
    (d / "class_names.txt").write_text("\n".join(("airplane", "bird", "car", "cat", "deer", "dog", "horse",
                                                  "monkey", "ship", "truck")) + "\n")
    tables = {"train_list": [[f, md5(d / f)] for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")],
              "test_list": [[f, md5(d / f)] for f in ("test_X.bin", "test_y.bin")]}
    return arrays, tables


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> dict[str, object]:
    """``root/cifar-100-python`` pickles as torchvision's CIFAR100 reads them; returns the attributes to patch
    (``train_list``, ``test_list``, ``meta``) with the fake files' MD5s."""
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for part, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 100
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(d / part, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist()}, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"fine{k:02d}" for k in range(100)],
                     "coarse_label_names": [f"coarse{k:02d}" for k in range(20)]}, f)
    return {"train_list": [["train", md5(d / "train")]], "test_list": [["test", md5(d / "test")]],
            "meta": {"filename": "meta", "key": "fine_label_names", "md5": md5(d / "meta")}}
