"""Image-folder datasets, as a directory or a .tar/.tar.gz archive.

Layout (every other file or folder is ignored)::

    train/<class>/<image>                 the train split (required)
    test/<class>/<image>                  the test split ...
    val/<class>/<image>                   ... or this one: val/ is the test split when there is no test/;
                                          when both exist, test/ is the test split and val/ is not used
    unlabeled/<image>                     optional, for label-free recipes: images directly or in any
    unlabeled/<any folder>/<image>        sub-folders (their names are not classes)

The choice of test split (``test_split="auto"``) is stated in the returned notes; ``test_split="val"`` or
``"test"`` picks one. An archive may wrap the layout in one top folder (``imagenette2-160/train/...``).

Files are decoded once into uint8 arrays and cached under ``<data_root>/cache/`` keyed by a SHA-256 of the
content (every file's path and bytes, or the archive's bytes), so later runs load in about a second. Archives are
read in memory, never extracted: a member with an absolute path, a ``..`` component, or a link is rejected by name.
The side images are decoded at follows :mod:`cifarlab.data.sizing`; what was resized is one of the notes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from cifarlab.data.images import IMAGE_EXTENSIONS, ImageDecodeError, decode, image_size
from cifarlab.data.progress import Progress, ProgressArg
from cifarlab.data.sizing import choose_side, resize_note
from cifarlab.errors import DataError
from cifarlab.files import atomic_write_bytes
from cifarlab.workers import imap

CACHE_VERSION = 2  # bump when decoding or the cache's layout changes, so stale caches are not reused (2: NCHW)
CLASS_SPLITS = ("train", "test", "val")  # folders of class folders
UNLABELED = "unlabeled"
TEST_SPLITS = ("auto", "test", "val")
LAYOUTS = ("train/<class>/<image> with test/<class>/<image> or val/<class>/<image> (val/ is the test split when "
           "there is no test/; test/ when both exist), optionally unlabeled/<image> or unlabeled/<folder>/<image> "
           "for label-free recipes")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


class _Entries:
    """Files found in a dataset: ``{split: {class: [(display_path, key)]}}`` and the unlabelled images' list;
    ``key`` is a path (directory) or an archive member name (its bytes in the blobs)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.files: dict[str, dict[str, list[tuple[str, str]]]] = {s: {} for s in CLASS_SPLITS}
        self.unlabeled: list[tuple[str, str]] = []

    def add_class(self, split: str, cls: str) -> None:
        self.files[split].setdefault(cls, [])

    def add(self, split: str, cls: str, display: str, key: str) -> None:
        self.files[split].setdefault(cls, []).append((display, key))

    def sort(self) -> _Entries:
        """Every list in path order, so a directory and its archive list the same images in the same order (a
        walk lists a folder's files before its sub-folders; an archive lists members in the order they were
        added)."""
        for classes in self.files.values():
            for found in classes.values():
                found.sort(key=lambda f: f[1])
        self.unlabeled.sort(key=lambda f: f[1])
        return self

    def all_keys(self) -> Iterator[str]:
        for split in CLASS_SPLITS:
            for cls in sorted(self.files[split]):
                yield from (key for _, key in self.files[split][cls])
        yield from (key for _, key in self.unlabeled)


def _walk_images(top: Path, real_root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith(".") or not _is_image(fname):
                continue
            path = Path(dirpath) / fname
            _check_inside(path, real_root)
            yield path


def _scan_dir(root: Path) -> _Entries:
    entries = _Entries(str(root))
    real_root = root.resolve()
    for split in CLASS_SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for cls_dir in sorted(split_dir.iterdir()):
            if cls_dir.name.startswith(".") or not cls_dir.is_dir():
                continue
            _check_inside(cls_dir, real_root)
            entries.add_class(split, cls_dir.name)
            for path in _walk_images(cls_dir, real_root):
                entries.add(split, cls_dir.name, str(path), str(path))
    if (root / UNLABELED).is_dir():
        entries.unlabeled = [(str(p), str(p)) for p in _walk_images(root / UNLABELED, real_root)]
    return entries.sort()


def _check_inside(path: Path, real_root: Path) -> None:
    if path.is_symlink():
        target = path.resolve()
        if real_root not in target.parents and target != real_root:
            raise DataError(f"{path}: symbolic link points outside the dataset folder (to {target}); refusing it")


def _scan_tar(path: Path, progress: Progress) -> tuple[_Entries, dict[str, bytes]]:
    """The archive's layout and image bytes, read in one pass (listing the members first and then reading each
    image's bytes decompressed the gzip stream twice). A member with an absolute path or '..' refuses the archive
    as soon as it is met; bytes are read only for regular image files that can be part of the layout."""
    entries = _Entries(str(path))
    blobs: dict[str, bytes] = {}
    progress.phase(f"reading {path.name}")
    members: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
    try:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                name, pure = m.name, PurePosixPath(m.name)
                if pure.is_absolute() or ".." in pure.parts or name.startswith(("/", "\\")):
                    raise DataError(f"{path}: archive member {name!r} has an absolute path or '..'; refusing the "
                                    "archive (it could write outside its folder if extracted)")
                members.append((m, pure.parts))
                if m.isfile() and _is_image(name) and _may_be_layout(pure.parts):
                    fobj = tf.extractfile(m)
                    blobs[name] = fobj.read() if fobj else b""
                    progress.update()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot read the archive ({exc})") from None
    prefix = _common_prefix([parts for _, parts in members])
    kept: set[str] = set()
    for m, all_parts in members:
        name, parts = m.name, all_parts[len(prefix):]
        if _is_hidden(parts) or len(parts) < 2 or parts[0] not in (*CLASS_SPLITS, UNLABELED):
            continue
        if m.isdir():
            if len(parts) == 2 and parts[0] != UNLABELED:
                entries.add_class(parts[0], parts[1])
            continue
        if m.issym() or m.islnk():
            raise DataError(f"{path}: archive member {name!r} is a link; only regular files are allowed")
        is_unlabeled = parts[0] == UNLABELED
        if not m.isfile() or len(parts) < (2 if is_unlabeled else 3) or not _is_image(parts[-1]):
            continue
        kept.add(name)
        if is_unlabeled:
            entries.unlabeled.append((f"{path}:{name}", name))
        else:
            entries.add(parts[0], parts[1], f"{path}:{name}", name)
    return entries.sort(), {k: v for k, v in blobs.items() if k in kept}


def _may_be_layout(parts: tuple[str, ...]) -> bool:
    """Whether a member could be an image of the layout, at the top or under one wrapping folder (which one is
    known only once every member is listed): a split folder first or second, nothing hidden from there on."""
    return any(len(parts) > i and parts[i] in (*CLASS_SPLITS, UNLABELED) and not _is_hidden(parts[i:])
               for i in (0, 1))


def _common_prefix(names: list[tuple[str, ...]]) -> tuple[str, ...]:
    """An archive may wrap the layout in one top folder (``cifar10/train/...``); find it (``names``: each member's
    path parts; hidden top-level entries such as ``__MACOSX`` or ``._cifar10`` beside it do not count)."""
    tops = {parts[0] for parts in names if parts}
    tops = {t for t in tops if not _is_hidden((t,))} or tops
    if tops & {*CLASS_SPLITS, UNLABELED} or len(tops) != 1:
        return ()
    return (tops.pop(),)


def _validate_layout(entries: _Entries, test_split: str) -> tuple[list[str], str, list[str]]:
    """Check the layout; returns (classes, the folder used as the test split, notes)."""
    src, files = entries.source, entries.files
    if test_split not in TEST_SPLITS:
        raise DataError(f"test_split={test_split!r}; choose from: {', '.join(TEST_SPLITS)}")
    test = test_split if test_split != "auto" else ("test" if files["test"] else "val")
    missing = [s for s in ("train", test) if not files[s]]
    if missing:
        which = " and ".join(s + "/" for s in missing)
        if test_split == "auto" and "train" in missing and not files["test"]:
            which = "train/ and test/ (or val/)"
        elif test_split == "auto" and test in missing:
            which = which.replace("val/", "test/ or val/")
        raise DataError(f"{src}: no class folders under {which}; accepted layouts: {LAYOUTS}")
    notes = []
    if test_split == "auto" and test == "val":
        notes.append("test split: val/ (the folder has no test/)")
    elif test_split == "auto" and files["val"]:
        notes.append("test split: test/ (val/ is also present and is not used: test/ wins when both exist)")
    train_cls, test_cls = set(files["train"]), set(files[test])
    if train_cls != test_cls:
        only_train, only_test = sorted(train_cls - test_cls), sorted(test_cls - train_cls)
        raise DataError(f"{src}: train and {test} class folders differ (only in train: {only_train or 'none'}; "
                        f"only in {test}: {only_test or 'none'})")
    folded = Counter(unicodedata.normalize("NFC", c).casefold() for c in train_cls)
    clashes = sorted(c for c in train_cls if folded[unicodedata.normalize("NFC", c).casefold()] > 1)
    if clashes:
        raise DataError(f"{src}: class folders differ only in letter case: {clashes}; rename them")
    for split in ("train", test):
        for cls, found in files[split].items():
            if not found:
                raise DataError(f"{src}: class folder {split}/{cls} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    if entries.unlabeled:
        notes.append(f"unlabeled/: {len(entries.unlabeled):,} images for label-free recipes")
    return sorted(train_cls), test, notes


def _content_hash(path: Path, entries: _Entries | None, size: int, test_split: str) -> str:
    """SHA-256 of the archive's bytes, or of every image's relative path and bytes (``size`` 0 = auto)."""
    h = hashlib.sha256(f"cifarlab-folder-v{CACHE_VERSION}-size{size}-test{test_split}".encode())
    if entries is None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for key in entries.all_keys():
            h.update(os.path.relpath(key, path).encode())
            h.update(Path(key).read_bytes())
    return h.hexdigest()


def _decode_one(job: tuple[str, bytes | str, int]) -> np.ndarray | str:
    """(display, bytes or path, side) -> (3, side, side) uint8, or the error line naming the file."""
    display, data, size = job
    try:
        return decode(data, size).transpose(2, 0, 1)
    except ImageDecodeError as exc:
        return f"{display}: {exc}"


def _decode_into(out: np.ndarray, jobs: list[tuple[str, bytes | str, int]], workers: int, progress: Progress
                 ) -> None:
    """Decode ``jobs`` in order into the preallocated ``out`` (N, 3, S, S), so the dataset is never held twice."""
    workers = workers if len(jobs) > 2000 else 1  # fewer images decode faster than workers start
    _fill(out, imap(_decode_one, jobs, workers, chunksize=max(16, min(512, len(jobs) // (8 * workers))),
                    forkable=True), progress)


def _fill(out: np.ndarray, results: Iterator[np.ndarray | str], progress: Progress) -> None:
    for i, r in enumerate(results):
        if isinstance(r, str):
            raise DataError(r)
        out[i] = r
        progress.update()


def _sizes(files: list[tuple[str, str]], blobs: dict[str, bytes] | None, progress: Progress) -> np.ndarray:
    """(N, 2) (width, height) from every image's header."""
    sizes = np.zeros((len(files), 2), np.int64)
    for i, (display, key) in enumerate(files):
        try:
            sizes[i] = image_size(blobs[key] if blobs is not None else key)
        except ImageDecodeError as exc:
            raise DataError(f"{display}: {exc}") from None
        progress.update()
    return sizes


def load_folder(path: str | Path, cache_dir: str | Path, image_size_: int = 0, progress: ProgressArg = False,
                test_split: str = "auto") -> dict[str, object]:
    """Load a folder dataset into uint8 arrays, from the cache when its content hash matches.

    Args:
        path: a directory or a .tar/.tar.gz archive in the layout of this module's docstring.
        cache_dir: where decoded arrays are cached.
        image_size_: the side to decode at; 0 = :mod:`cifarlab.data.sizing`'s rule.
        progress: the first load's progress on stderr (``True``), a callable ``(phase, done, total)``, or none.
        test_split: ``auto`` (test/ if present, else val/), ``test`` or ``val``.

    Returns:
        ``{"classes", "train_x" (N,3,S,S) uint8, "train_y", "test_x", "test_y", "unlabeled_x" (or None),
        "notes" (lines the run logs: the test split chosen, what was resized), "digest", "cached"}``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"dataset folder {str(path)!r} does not exist; expected a directory or .tar/.tar.gz "
                        f"archive in one of the layouts: {LAYOUTS}")
    if path.is_file() and not tarfile.is_tarfile(path):
        raise DataError(f"{path}: not a directory or a tar archive (.tar, .tar.gz)")
    entries = None if path.is_file() else _scan_dir(path)
    digest = _content_hash(path, entries, image_size_, test_split)
    cache = Path(cache_dir) / f"folder-{digest[:20]}.npz"
    if cache.is_file():
        try:
            return _read_cache(cache, digest)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    bar = Progress(progress, path.name)
    try:
        blobs = None
        if entries is None:
            entries, blobs = _scan_tar(path, bar)
        out = _decode_folder(path, entries, blobs, image_size_, test_split, bar)
    finally:
        bar.close()
    unlabeled = out["unlabeled_x"]
    arrays = {"meta": json.dumps({"classes": out["classes"], "source": str(path), "notes": out["notes"]}),
              "train_x": out["train_x"], "train_y": out["train_y"], "test_x": out["test_x"], "test_y": out["test_y"],
              **({"unlabeled_x": unlabeled} if unlabeled is not None else {})}
    atomic_write_bytes(cache, lambda f: np.savez(f, **arrays))  # the run directory's writer: fsync, then rename
    return {**out, "digest": digest, "cached": False}


def _decode_folder(path: Path, entries: _Entries, blobs: dict[str, bytes] | None, requested: int, test_split: str,
                   bar: Progress) -> dict[str, object]:
    classes, test, notes = _validate_layout(entries, test_split)
    parts: dict[str, tuple[list[tuple[str, str]], list[int]]] = {}
    for split, folder in (("train", "train"), ("test", test)):
        files, labels = [], []
        for label, cls in enumerate(classes):
            files += entries.files[folder][cls]
            labels += [label] * len(entries.files[folder][cls])
        parts[split] = (files, labels)
    if entries.unlabeled:
        parts["unlabeled"] = (entries.unlabeled, [])
    every = [f for files, _ in parts.values() for f in files]
    bar.phase("reading image sizes", len(every))
    sizes = _sizes(every, blobs, bar)
    side = choose_side(sizes, requested)
    note = resize_note(sizes, side, requested, {s: len(files) for s, (files, _) in parts.items()})
    notes += [note] if note else []
    bar.phase("decoding", len(every))
    workers = min(4, os.cpu_count() or 1)
    out: dict[str, object] = {"classes": classes, "notes": notes, "unlabeled_x": None}
    for split, (files, labels) in parts.items():
        x = np.empty((len(files), 3, side, side), np.uint8)
        _decode_into(x, [(display, blobs[key] if blobs is not None else key, side) for display, key in files],
                     workers, bar)
        out[f"{split}_x"] = x
        if split != "unlabeled":
            out[f"{split}_y"] = np.asarray(labels, dtype=np.int64)
    return out


def _read_cache(cache: Path, digest: str) -> dict[str, object]:
    with np.load(cache, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return {"classes": meta["classes"], "notes": meta["notes"], "digest": digest, "train_x": z["train_x"],
                "train_y": z["train_y"], "test_x": z["test_x"], "test_y": z["test_y"],
                "unlabeled_x": z["unlabeled_x"] if "unlabeled_x" in z.files else None, "cached": True}
