import io
import os
import tarfile

import numpy as np
import pytest
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
