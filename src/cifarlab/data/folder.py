"""Image-folder datasets: ``train/<class>/*`` and ``test/<class>/*``, as a directory or a .tar/.tar.gz archive.

Files are decoded once into uint8 arrays and cached under ``<data_root>/cache/`` keyed by a SHA-256 of the
content (every file's path and bytes, or the archive's bytes), so later runs load in about a second. Archives are
read in memory, never extracted: a member with an absolute path, a ``..`` component, or a link is rejected by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import unicodedata
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from cifarlab.data.images import IMAGE_EXTENSIONS, ImageDecodeError, decode, image_size
from cifarlab.engine.checkpoint import atomic_write_bytes
from cifarlab.errors import DataError

CACHE_VERSION = 1  # bump when decoding changes, so stale caches are not reused
SPLITS = ("train", "test")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


class _Entries:
    """Files found in a dataset: ``{split: {class: [(display_path, key)]}}`` plus a reader for the bytes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.files: dict[str, dict[str, list[tuple[str, str]]]] = {s: {} for s in SPLITS}

    def add_class(self, split: str, cls: str) -> None:
        self.files[split].setdefault(cls, [])

    def add(self, split: str, cls: str, display: str, key: str) -> None:
        self.files[split].setdefault(cls, []).append((display, key))


def _scan_dir(root: Path) -> tuple[_Entries, dict[str, bytes] | None]:
    entries = _Entries(str(root))
    real_root = root.resolve()
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for cls_dir in sorted(split_dir.iterdir()):
            if cls_dir.name.startswith(".") or not cls_dir.is_dir():
                continue
            _check_inside(cls_dir, real_root)
            entries.add_class(split, cls_dir.name)
            for dirpath, dirnames, filenames in os.walk(cls_dir, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fname in sorted(filenames):
                    path = Path(dirpath) / fname
                    if fname.startswith(".") or not _is_image(fname):
                        continue
                    _check_inside(path, real_root)
                    entries.add(split, cls_dir.name, str(path), str(path))
    return entries, None


def _check_inside(path: Path, real_root: Path) -> None:
    if path.is_symlink():
        target = path.resolve()
        if real_root not in target.parents and target != real_root:
            raise DataError(f"{path}: symbolic link points outside the dataset folder (to {target}); refusing it")


def _scan_tar(path: Path) -> tuple[_Entries, dict[str, bytes]]:
    entries = _Entries(str(path))
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            members = tf.getmembers()
            prefix = _common_prefix([m.name for m in members])
            for m in members:
                name = m.name
                pure = PurePosixPath(name)
                if pure.is_absolute() or ".." in pure.parts or name.startswith(("/", "\\")):
                    raise DataError(f"{path}: archive member {name!r} has an absolute path or '..'; refusing the "
                                    "archive (it could write outside its folder if extracted)")
                parts = pure.parts[len(prefix):]
                if _is_hidden(parts) or len(parts) < 2 or parts[0] not in SPLITS:
                    continue
                split, cls = parts[0], parts[1]
                if m.isdir():
                    if len(parts) == 2:
                        entries.add_class(split, cls)
                    continue
                if m.issym() or m.islnk():
                    raise DataError(f"{path}: archive member {name!r} is a link; only regular files are allowed")
                if not m.isfile() or len(parts) < 3 or not _is_image(parts[-1]):
                    continue
                fobj = tf.extractfile(m)
                blobs[name] = fobj.read() if fobj else b""
                entries.add(split, cls, f"{path}:{name}", name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot read the archive ({exc})") from None
    return entries, blobs


def _common_prefix(names: list[str]) -> tuple[str, ...]:
    """An archive may wrap the layout in one top folder (``cifar10/train/...``); find it."""
    tops = {PurePosixPath(n).parts[0] for n in names if PurePosixPath(n).parts}
    if tops & set(SPLITS) or len(tops) != 1:
        return ()
    return (tops.pop(),)


def _validate_layout(entries: _Entries) -> list[str]:
    src = entries.source
    missing = [s for s in SPLITS if not entries.files[s]]
    if missing:
        raise DataError(f"{src}: no class folders under {' and '.join(s + '/' for s in missing)}; expected the "
                        "layout train/<class>/<image> and test/<class>/<image>")
    train_cls, test_cls = set(entries.files["train"]), set(entries.files["test"])
    if train_cls != test_cls:
        only_train, only_test = sorted(train_cls - test_cls), sorted(test_cls - train_cls)
        raise DataError(f"{src}: train and test class folders differ (only in train: {only_train or 'none'}; "
                        f"only in test: {only_test or 'none'})")
    folded = Counter(unicodedata.normalize("NFC", c).casefold() for c in train_cls)
    clashes = sorted(c for c in train_cls if folded[unicodedata.normalize("NFC", c).casefold()] > 1)
    if clashes:
        raise DataError(f"{src}: class folders differ only in letter case: {clashes}; rename them")
    for split in SPLITS:
        for cls, files in entries.files[split].items():
            if not files:
                raise DataError(f"{src}: class folder {split}/{cls} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(train_cls)


def _content_hash(path: Path, entries: _Entries | None, size: int) -> str:
    """SHA-256 of the archive's bytes, or of every image's relative path and bytes (``size`` 0 = auto)."""
    h = hashlib.sha256(f"cifarlab-folder-v{CACHE_VERSION}-size{size}".encode())
    if entries is None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for split in SPLITS:
            for cls in sorted(entries.files[split]):
                for _, key in entries.files[split][cls]:
                    h.update(os.path.relpath(key, path).encode())
                    h.update(Path(key).read_bytes())
    return h.hexdigest()


def _read(blobs: dict[str, bytes] | None, key: str) -> bytes:
    return blobs[key] if blobs is not None else Path(key).read_bytes()


def _decode_one(job: tuple[str, bytes, int]) -> np.ndarray | str:
    display, data, size = job
    try:
        return decode(data, size)
    except ImageDecodeError as exc:
        return f"{display}: {exc}"


def _decode_all(jobs: list[tuple[str, bytes, int]], workers: int) -> Iterator[np.ndarray]:
    if workers > 1 and len(jobs) > 2000:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_decode_one, jobs, chunksize=512)
            yield from _raise_errors(results)
    else:
        yield from _raise_errors(map(_decode_one, jobs))


def _raise_errors(results: Iterator[np.ndarray | str]) -> Iterator[np.ndarray]:
    for r in results:
        if isinstance(r, str):
            raise DataError(r)
        yield r


def load_folder(path: str | Path, cache_dir: str | Path, image_size_: int = 0
                ) -> dict[str, object]:
    """Load a folder dataset into uint8 arrays, from the cache when its content hash matches.

    Returns:
        ``{"classes", "train_x" (N,H,W,3) uint8, "train_y", "test_x", "test_y", "digest", "files"}``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"dataset folder {str(path)!r} does not exist; expected a directory or .tar/.tar.gz "
                        "archive with train/<class>/ and test/<class>/ folders")
    if path.is_file() and not tarfile.is_tarfile(path):
        raise DataError(f"{path}: not a directory or a tar archive (.tar, .tar.gz)")
    entries, blobs = (None, None) if path.is_file() else _scan_dir(path)
    digest = _content_hash(path, entries, image_size_)
    cache = Path(cache_dir) / f"folder-{digest[:20]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return {"classes": meta["classes"], "digest": digest, "train_x": z["train_x"], "train_y": z["train_y"],
                        "test_x": z["test_x"], "test_y": z["test_y"], "cached": True}
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    if entries is None:
        entries, blobs = _scan_tar(path)
    classes = _validate_layout(entries)
    size = image_size_ or _uniform_size(entries, blobs) or 32
    out: dict[str, object] = {"classes": classes, "digest": digest, "cached": False}
    workers = min(4, os.cpu_count() or 1)
    for split in SPLITS:
        jobs, labels = [], []
        for label, cls in enumerate(classes):
            for display, key in entries.files[split][cls]:
                jobs.append((display, _read(blobs, key), size))
                labels.append(label)
        arrays = list(_decode_all(jobs, workers))
        out[f"{split}_x"] = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
        out[f"{split}_y"] = np.asarray(labels, dtype=np.int64)
    arrays = {"meta": json.dumps({"classes": classes, "source": str(path)}), "train_x": out["train_x"],
              "train_y": out["train_y"], "test_x": out["test_x"], "test_y": out["test_y"]}
    atomic_write_bytes(cache, lambda f: np.savez(f, **arrays))  # the run directory's writer: fsync, then rename
    return out


def _uniform_size(entries: _Entries, blobs: dict[str, bytes] | None) -> int:
    """The common side length when every image is square and of one size; 0 otherwise."""
    sizes: set[tuple[int, int]] = set()
    for split in SPLITS:
        for files in entries.files[split].values():
            for display, key in files:
                try:
                    sizes.add(image_size(_read(blobs, key)))
                except ImageDecodeError as exc:
                    raise DataError(f"{display}: {exc}") from None
                if len(sizes) > 1:
                    return 0
    (w, h), = sizes
    return w if w == h else 0
