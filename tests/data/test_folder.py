import io
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from cifarlab.data import load_dataset
from cifarlab.errors import DataError

from tests.conftest import CIFAR_PNG, needs_cifar, write_folder


def test_loads_directory_and_caches(folder, tmp_path):
    d = load_dataset(f"folder:{folder}", tmp_path / "root")
    assert d.classes == ["cat", "dog"]
    assert tuple(d.train_x.shape) == (6, 3, 8, 8) and d.train_x.dtype.__str__() == "torch.uint8"
    assert d.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    caches = list((tmp_path / "root" / "cache").glob("folder-*.npz"))
    assert len(caches) == 1
    again = load_dataset(f"folder:{folder}", tmp_path / "root")
    assert again.digest == d.digest and (again.train_x == d.train_x).all()


def test_pixels_are_exact(tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        arr = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
        Image.fromarray(arr).save(root / split / "a" / "x.png")
    d = load_dataset(f"folder:{root}", tmp_path)
    assert (d.train_x[0].permute(1, 2, 0).numpy() == arr).all()


def test_tar_gz_matches_directory(folder, tmp_path):
    archive = tmp_path / "ds.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder / "train", arcname="train")
        tf.add(folder / "test", arcname="test")
    a = load_dataset(f"folder:{folder}", tmp_path / "r1")
    b = load_dataset(f"folder:{archive}", tmp_path / "r2")
    assert a.classes == b.classes and (a.train_x == b.train_x).all() and (a.test_y == b.test_y).all()


def test_tar_in_one_top_folder_skips_hidden_and_non_image_members(folder, tmp_path):
    """The archive is read in one pass: a wrapping folder with macOS metadata beside it (a top-level __MACOSX and
    a ._top file) and inside it, hidden files and a README beside the images change nothing."""
    archive = tmp_path / "wrapped.tar.gz"
    junk = tmp_path / "junk"
    (junk / "__MACOSX" / "train").mkdir(parents=True)
    (junk / "__MACOSX" / "train" / "x.png").write_bytes(b"not an image")
    (junk / "README.txt").write_text("about")
    (junk / ".hidden.png").write_bytes(b"not an image")
    with tarfile.open(archive, "w:gz") as tf:
        for part in ("train", "test"):
            tf.add(folder / part, arcname=f"top/{part}")
        tf.add(junk / "__MACOSX", arcname="__MACOSX")  # beside the wrapping folder: still one top folder
        tf.add(junk / ".hidden.png", arcname="._top")
        tf.add(junk / "__MACOSX", arcname="top/train/__MACOSX")  # inside a split, where only hiding skips it
        tf.add(junk / "README.txt", arcname="top/README.txt")
        tf.add(junk / ".hidden.png", arcname="top/train/cat/.hidden.png")
    a = load_dataset(f"folder:{folder}", tmp_path / "r1")
    b = load_dataset(f"folder:{archive}", tmp_path / "r2")
    assert a.classes == b.classes and (a.train_x == b.train_x).all() and (a.test_x == b.test_x).all()
    assert (a.train_y == b.train_y).all() and len(b.train_x) == len(a.train_x)


def test_tar_traversal_is_refused_before_the_rest_is_read(tmp_path, monkeypatch):
    """A '..' member refuses the archive as soon as it is met: no image after it is read."""
    from cifarlab.data import folder as folder_module

    archive = tmp_path / "evil.tar"
    img = io.BytesIO()
    Image.new("RGB", (4, 4)).save(img, format="PNG")
    with tarfile.open(archive, "w") as tf:
        for name in ("train/cat/a.png", "../escape.png", "train/cat/b.png", "test/cat/c.png"):
            info = tarfile.TarInfo(name)
            info.size = len(img.getvalue())
            tf.addfile(info, io.BytesIO(img.getvalue()))
    reads = []
    real = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: reads.append(m.name) or real(self, m))
    with pytest.raises(DataError, match=r"'\.\./escape\.png' has an absolute path or '\.\.'"):
        folder_module.load_folder(archive, tmp_path / "cache")
    assert reads == ["train/cat/a.png"]


def test_mixed_sizes_and_modes_are_converted(tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        Image.new("L", (40, 20), 128).save(root / split / "a" / "gray.png")
        Image.new("RGB", (1, 1), (255, 0, 0)).save(root / split / "a" / "tiny.png")
        Image.new("CMYK", (16, 16)).save(root / split / "a" / "cmyk.jpg")
        Image.new("P", (16, 16)).save(root / split / "a" / "pal.png")
        Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(root / split / "a" / "deep.png")
    d = load_dataset(f"folder:{root}", tmp_path, image_size=0)
    assert tuple(d.train_x.shape[1:]) == (3, 32, 32)  # mixed sizes -> 32
    # sorted names: cmyk, deep, gray, pal, tiny
    assert int(d.train_x[0].min()) == 255  # CMYK (0, 0, 0, 0) is white
    assert int(d.train_x[1].max()) == 255  # 16-bit white stays white
    assert int(d.train_x[2].float().mean().round()) == 128
    assert int(d.train_x[3].max()) == 0  # palette index 0 of the default palette is black


def _bad(tmp_path, name):
    return write_folder(tmp_path / name)


def test_corrupt_image_is_named(tmp_path):
    root = _bad(tmp_path, "corrupt")
    bad = root / "train" / "cat" / "0.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match=r"train/cat/0.png: truncated or corrupt"):
        load_dataset(f"folder:{root}", tmp_path)


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"hello, not an image", "not a recognised")])
def test_zero_byte_and_non_image_files(tmp_path, content, reason):
    root = _bad(tmp_path, "x")
    (root / "test" / "dog" / "1.png").write_bytes(content)
    with pytest.raises(DataError, match=f"test/dog/1.png: {reason}"):
        load_dataset(f"folder:{root}", tmp_path)


def test_empty_class_folder(tmp_path):
    root = _bad(tmp_path, "empty")
    (root / "train" / "bird").mkdir()
    (root / "test" / "bird").mkdir()
    with pytest.raises(DataError, match="class folder train/bird has no images"):
        load_dataset(f"folder:{root}", tmp_path)


def test_class_mismatch(tmp_path):
    root = write_folder(tmp_path / "m", classes=("cat", "dog"))
    write_folder(tmp_path / "m2", classes=("cow",))
    os.rename(tmp_path / "m2" / "test" / "cow", root / "test" / "cow")
    with pytest.raises(DataError, match=r"train and test class folders differ \(only in train: none; only in test: "
                                        r"\['cow'\]\)"):
        load_dataset(f"folder:{root}", tmp_path)


def test_missing_directory_and_layout(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}", tmp_path)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class folders under train/ and test/"):
        load_dataset(f"folder:{tmp_path / 'flat'}", tmp_path)


def test_case_clash(tmp_path):
    root = write_folder(tmp_path / "c", classes=("Cat", "cat"))
    with pytest.raises(DataError, match="differ only in letter case"):
        load_dataset(f"folder:{root}", tmp_path)


def test_symlink_outside_is_refused(tmp_path):
    root = _bad(tmp_path, "s")
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    (root / "train" / "cat" / "link.png").symlink_to(outside)
    with pytest.raises(DataError, match="link.png: symbolic link points outside"):
        load_dataset(f"folder:{root}", tmp_path)


@pytest.mark.parametrize("member", ["../evil/train/a/x.png", "/abs/train/a/x.png"])
def test_tar_traversal_is_refused_and_nothing_written(tmp_path, member):
    archive = tmp_path / "evil.tar"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(buf.getvalue())
        tf.addfile(info, io.BytesIO(buf.getvalue()))
    before = set(tmp_path.rglob("*"))
    with pytest.raises(DataError, match="absolute path or '..'"):
        load_dataset(f"folder:{archive}", tmp_path / "root")
    assert set(tmp_path.rglob("*")) - before <= {tmp_path / "root", tmp_path / "root" / "cache"}
    assert not (tmp_path.parent / "evil").exists()


def test_unicode_and_html_class_names(tmp_path):
    root = write_folder(tmp_path / "u", classes=("<script>alert(1)</script>", "chat noir", "猫"))
    d = load_dataset(f"folder:{root}", tmp_path)
    assert "猫" in d.classes and "chat noir" in d.classes


def test_unknown_dataset():
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'; choose from: cifar10, cifar100, "
                                        r"imagenette\[:160px\|:320px\|:full\], stl10, stl10\+unlabeled, "
                                        r"synthetic, folder:PATH"):
        load_dataset("imagenet")


@needs_cifar()
@pytest.mark.realdata
def test_real_cifar10_png_has_the_known_statistics(tmp_path_factory):
    root = os.environ.get("CIFARLAB_TEST_CACHE") or tmp_path_factory.mktemp("cifar")
    d = load_dataset(f"folder:{CIFAR_PNG}", root)
    assert d.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert tuple(d.train_x.shape) == (50000, 3, 32, 32) and tuple(d.test_x.shape) == (10000, 3, 32, 32)
    mean, std = d.channel_stats()
    assert mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-4)
    assert std == pytest.approx((0.2470, 0.2435, 0.2616), abs=1e-4)


def test_large_and_truncated_jpeg_images(tmp_path):
    root = write_folder(tmp_path / "big", per_class=2, size=8, fmt="jpg")
    Image.new("RGB", (4000, 4000), (10, 200, 30)).save(root / "train" / "cat" / "huge.jpg", quality=50)
    d = load_dataset(f"folder:{root}", tmp_path, image_size=16)
    assert tuple(d.train_x.shape[1:]) == (3, 16, 16)
    big = d.train_x[2]  # sorted names: 0.jpg, 1.jpg, huge.jpg
    assert abs(int(big[1].float().mean()) - 200) < 4  # resized, colour kept
    bad = root / "test" / "dog" / "0.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match="test/dog/0.jpg: truncated or corrupt"):
        load_dataset(f"folder:{root}", tmp_path, image_size=16)


def test_cli_on_a_broken_dataset_prints_one_line_and_no_traceback(tmp_path):
    import subprocess
    import sys

    root = write_folder(tmp_path / "b")
    (root / "train" / "cat" / "0.png").write_bytes(b"")
    res = subprocess.run([sys.executable, "-m", "cifarlab.cli", "train", "--dataset", f"folder:{root}", "--model",
                          "cnn_small", "--out", str(tmp_path / "runs"), "--data-root", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "train/cat/0.png: empty file" in lines[0]


# ---- layouts: val/ as the test split, unlabeled/, the hint --------------------------------------------------------


def _rename(root, old, new):
    os.rename(root / old, root / new)
    return root


def test_val_is_the_test_split_when_there_is_no_test(tmp_path):
    root = _rename(write_folder(tmp_path / "v", split_sizes={"train": 3, "test": 2}), "test", "val")
    d = load_dataset(f"folder:{root}", tmp_path / "c")
    assert tuple(d.test_x.shape) == (4, 3, 8, 8) and d.test_y.tolist() == [0, 0, 1, 1]
    assert d.notes == ["test split: val/ (the folder has no test/)"]


def test_test_wins_over_val_and_says_so(tmp_path):
    root = write_folder(tmp_path / "tv", split_sizes={"train": 3, "test": 2})
    write_folder(tmp_path / "other", split_sizes={"train": 1, "test": 5})
    os.rename(tmp_path / "other" / "test", root / "val")
    d = load_dataset(f"folder:{root}", tmp_path / "c")
    assert len(d.test_y) == 4  # test/ (2 per class), not val/ (5 per class)
    assert "test/ wins when both exist" in d.notes[0]
    chosen = load_dataset(f"folder:{root}", tmp_path / "c", test_split="val")
    assert len(chosen.test_y) == 10 and chosen.notes == []


def test_no_test_folder_error_lists_the_layouts(tmp_path):
    root = write_folder(tmp_path / "nt")
    import shutil

    shutil.rmtree(root / "test")
    with pytest.raises(DataError) as err:
        load_dataset(f"folder:{root}", tmp_path)
    msg = str(err.value)
    assert "no class folders under test/ or val/; accepted layouts: train/<class>/<image> with test/<class>/<image> " \
           "or val/<class>/<image>" in msg
    assert "unlabeled/<image> or unlabeled/<folder>/<image>" in msg


def _unlabeled(root, n_direct=2, n_nested=3, size=8):
    rng = np.random.default_rng(3)
    (root / "unlabeled" / "batch1" / "deeper").mkdir(parents=True)
    for i in range(n_direct):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "unlabeled" / f"u{i}.png")
    for i in range(n_nested):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            root / "unlabeled" / "batch1" / "deeper" / f"n{i}.png")
    (root / "unlabeled" / "notes.txt").write_text("not an image")
    return root


def test_unlabeled_images_directly_and_in_subfolders(tmp_path):
    root = _unlabeled(write_folder(tmp_path / "u"))
    d = load_dataset(f"folder:{root}", tmp_path / "c")
    assert tuple(d.unlabeled_x.shape) == (5, 3, 8, 8) and d.classes == ["cat", "dog"]  # batch1 is not a class
    nested = np.asarray(Image.open(root / "unlabeled" / "batch1" / "deeper" / "n0.png"))
    assert (d.unlabeled_x[0].permute(1, 2, 0).numpy() == nested).all()  # path order: batch1/... before u0.png
    assert "unlabeled/: 5 images for label-free recipes" in d.notes
    archive = tmp_path / "u.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="wrapped")  # one top folder around the layout
    t = load_dataset(f"folder:{archive}", tmp_path / "c2")
    assert torch.equal(t.unlabeled_x, d.unlabeled_x) and torch.equal(t.train_x, d.train_x)
    cached = load_dataset(f"folder:{archive}", tmp_path / "c2")
    assert torch.equal(cached.unlabeled_x, d.unlabeled_x) and cached.notes == t.notes


def test_no_unlabeled_folder_gives_none(folder, tmp_path):
    assert load_dataset(f"folder:{folder}", tmp_path).unlabeled_x is None


# ---- mixed sizes: the stated default, the note, the cache ---------------------------------------------------------


def _mixed(root, sizes):
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            Image.new("RGB", (w, h), (i * 20, 100, 50)).save(root / split / "a" / f"{i}.png")
    return root


def test_mixed_sizes_default_to_the_median_shorter_side_and_say_so(tmp_path):
    root = _mixed(tmp_path / "m", [(60, 48), (48, 48), (200, 50), (30, 30)])  # shorter sides 48, 48, 50, 30
    d = load_dataset(f"folder:{root}", tmp_path / "c")
    assert d.image_size == 48
    assert d.notes == ["resized 6 of 8 images of 30-200 px to 48 px (shorter side, bicubic, centre crop; the default "
                       "for mixed sizes: the median shorter side (48 px) within 32-160 px; set image_size to choose)"]
    assert load_dataset(f"folder:{root}", tmp_path / "c").notes == d.notes  # from the cache, still said
    big = _mixed(tmp_path / "big", [(400, 300), (300, 500)])
    assert load_dataset(f"folder:{big}", tmp_path / "c").image_size == 160  # capped


def test_uniform_square_images_keep_their_size_silently(folder, tmp_path):
    d = load_dataset(f"folder:{folder}", tmp_path)
    assert d.image_size == 8 and d.notes == []


def test_requested_size_is_named_in_the_note(folder, tmp_path):
    d = load_dataset(f"folder:{folder}", tmp_path, image_size=12)
    assert d.image_size == 12
    assert d.notes[0].startswith("resized 12 images (train 6, test 6) of 8 px to 12 px")
    assert "image_size=12" in d.notes[0]


# ---- progress ------------------------------------------------------------------------------------------------------


def test_progress_callable_sees_every_phase(tmp_path):
    root = write_folder(tmp_path / "p")
    archive = tmp_path / "p.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(root / "train", arcname="train")
        tf.add(root / "test", arcname="test")
    calls = []
    load_dataset(f"folder:{archive}", tmp_path / "c", progress=lambda *a: calls.append(a))
    phases = [c for c in calls if c[1] == 0]
    assert [p[0] for p in phases] == ["reading p.tar", "reading image sizes", "decoding"]
    assert phases[2][2] == 12 and calls[-1] == ("decoding", 12, 12)
    calls.clear()
    load_dataset(f"folder:{archive}", tmp_path / "c", progress=lambda *a: calls.append(a))
    assert calls == []  # a cached load decodes nothing


def test_progress_true_prints_one_tqdm_line_with_the_rate(tmp_path, capsys):
    root = write_folder(tmp_path / "q")
    load_dataset(f"folder:{root}", tmp_path / "c", progress=True)
    err = capsys.readouterr().err
    assert "q: decoding" in err and "12/12" in err and "img/s" in err
    load_dataset(f"folder:{write_folder(tmp_path / 'r')}", tmp_path / "c", progress=False)
    assert capsys.readouterr().err == ""
