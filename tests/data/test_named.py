"""ImageNette, STL-10 and CIFAR-100 by name, from fakes in their distributed layouts; the offline errors."""

import re

import numpy as np
import pytest
import torch

from cifarlab.data import load_dataset, named
from cifarlab.errors import DataError

from tests.data.fakes import NAMES, WNIDS, md5, write_cifar100, write_imagenette, write_stl10


@pytest.fixture
def fake_stl10(tmp_path, monkeypatch):
    from torchvision.datasets import STL10

    arrays, tables = write_stl10(tmp_path / "root")
    for attr, table in tables.items():
        monkeypatch.setattr(STL10, attr, table)
    return tmp_path / "root", arrays


def _patch_imagenette_md5(monkeypatch, archive):
    from torchvision.datasets import Imagenette

    url, _ = Imagenette._ARCHIVES["160px"]
    monkeypatch.setitem(Imagenette._ARCHIVES, "160px", (url, md5(archive)))


def test_imagenette_from_the_archive_torchvision_downloads(tmp_path, monkeypatch):
    """The .tgz in the data root is checked (MD5), extracted by torchvision, decoded at the default side with the
    resize line, val/ is the test split, and the classes carry ImageNette's names in WordNet-id order."""
    root = tmp_path / "root"
    archive = write_imagenette(root, classes=3, per_class={"train": 4, "val": 2}, short=40, as_tgz=True)
    _patch_imagenette_md5(monkeypatch, archive)
    d = load_dataset("imagenette:160px", root)
    assert (root / "imagenette2-160" / "val" / WNIDS[0]).is_dir()  # extracted where torchvision puts it
    assert d.classes == list(NAMES[:3])
    assert tuple(d.train_x.shape) == (12, 3, 40, 40) and tuple(d.test_x.shape) == (6, 3, 40, 40)
    assert d.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and d.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert d.unlabeled_x is None
    assert any("test split is ImageNette's val split (6 images)" in n for n in d.notes)
    resize = [n for n in d.notes if n.startswith("resized")]
    assert len(resize) == 1 and "(train 12, test 6)" in resize[0] and "to 40 px" in resize[0]
    assert "median shorter side (40 px)" in resize[0]
    again = load_dataset("imagenette", root)  # the default size is 160px: the same data, now from the cache
    assert again.digest == d.digest and torch.equal(again.train_x, d.train_x) and again.notes == d.notes


def test_imagenette_at_160_px_and_image_size(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_imagenette(root, classes=2, per_class={"train": 2, "val": 1}, short=160)  # already extracted
    d = load_dataset("imagenette", root)
    assert d.image_size == 160  # the default for ImageNette-160: its shorter side
    [note] = [n for n in d.notes if n.startswith("resized")]
    assert re.match(r"resized 6 images \(train 4, test 2\) of 160-(\d+) px to 160 px \(shorter side", note)
    assert 160 < int(re.match(r".* of 160-(\d+) px", note).group(1)) <= 320  # the longer sides written
    small = load_dataset("imagenette:160px", root, image_size=64)
    assert small.image_size == 64 and any("image_size=64" in n for n in small.notes)


def test_imagenette_unknown_size(tmp_path):
    with pytest.raises(DataError, match=r"unknown ImageNette size '200px'; choose from: 160px, 320px, full"):
        load_dataset("imagenette:200px", tmp_path)


@pytest.mark.parametrize("size, stem", [("160px", "imagenette2-160"), ("320px", "imagenette2-320"),
                                        ("full", "imagenette2")])
def test_imagenette_offline_error_names_file_folder_and_url(tmp_path, size, stem):
    with pytest.raises(DataError) as err:
        load_dataset(f"imagenette:{size}", tmp_path)
    msg = str(err.value)
    assert f"{tmp_path / stem} does not exist" in msg and "URLError" in msg
    assert f"https://s3.amazonaws.com/fast-ai-imageclas/{stem}.tgz" in msg
    assert f"put {stem}.tgz in {tmp_path}" in msg
    assert f"{tmp_path / stem}/val/<wnid>/*.JPEG" in msg


def test_imagenette_damaged_archive_is_named(tmp_path):
    (tmp_path / "imagenette2-160.tgz").write_bytes(b"half a download")
    with pytest.raises(DataError, match=r"imagenette2-160.tgz is present but its MD5 is not e793b78c"):
        load_dataset("imagenette", tmp_path)


def test_stl10_as_torchvision_reads_it(fake_stl10):
    root, arrays = fake_stl10
    d = load_dataset("stl10", root)
    assert d.classes[:3] == ["airplane", "bird", "car"] and d.num_classes == 10
    assert torch.equal(d.train_x, torch.from_numpy(arrays["train_x"]))  # orientation: rows are rows
    assert torch.equal(d.test_x, torch.from_numpy(arrays["test_x"]))
    assert d.train_y.tolist() == arrays["train_y"].tolist() and d.train_y.dtype == torch.int64
    assert d.unlabeled_x is None and d.train_x.is_contiguous()
    assert any("20 labelled train images" in n for n in d.notes)
    u = load_dataset("stl10+unlabeled", root)
    assert torch.equal(u.unlabeled_x, torch.from_numpy(arrays["unlabeled_x"]))
    assert u.digest != d.digest and torch.equal(u.train_x, d.train_x)
    assert any("30 unlabelled images" in n for n in u.notes)
    pool = u.with_unlabeled()
    assert len(pool.train_x) == 50 and pool.train_y[20:].eq(-1).all() and pool.unlabeled_x is None
    assert torch.equal(pool.train_x[:20], u.train_x) and torch.equal(pool.train_x[20:], u.unlabeled_x)


def test_stl10_image_size_resizes_every_split(fake_stl10):
    root, _ = fake_stl10
    d = load_dataset("stl10+unlabeled", root, image_size=48)
    assert d.image_size == 48 and d.unlabeled_x.shape[-1] == 48
    [note] = [n for n in d.notes if n.startswith("resized")]
    assert note.startswith("resized 60 images (train 20, test 10, unlabeled 30) of 96 px to 48 px")


def test_stl10_md5_is_checked_once_per_process(fake_stl10, monkeypatch):
    from torchvision.datasets import STL10

    root, _ = fake_stl10
    calls = []
    real = STL10._check_integrity
    monkeypatch.setattr(STL10, "_check_integrity", lambda self: calls.append(1) or real(self))
    named._VERIFIED.clear()
    load_dataset("stl10+unlabeled", root)
    load_dataset("stl10", root)
    assert len(calls) == 1  # three constructions per load, two loads: one check of the files
    (root / "stl10_binary" / "test_y.bin").write_bytes(b"\x01\x02")  # changed: checked again, and refused
    with pytest.raises(DataError, match="does not match its MD5"):
        load_dataset("stl10", root)
    assert len(calls) >= 2


def test_stl10_offline_error_names_files_folder_and_url(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("stl10", tmp_path)
    msg = str(err.value)
    folder = tmp_path / "stl10_binary"
    assert f"{folder} lacks train_X.bin, train_y.bin, unlabeled_X.bin, test_X.bin, test_y.bin" in msg
    assert "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz" in msg
    assert f"put stl10_binary.tar.gz in {tmp_path}" in msg


def test_cifar100_by_name(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    for attr, value in write_cifar100(tmp_path).items():
        monkeypatch.setattr(CIFAR100, attr, value)
    d = load_dataset("cifar100", tmp_path)
    assert d.num_classes == 100 and d.classes[7] == "fine07"
    assert tuple(d.train_x.shape) == (200, 3, 32, 32) and d.train_y.tolist()[:3] == [0, 1, 2]
    assert d.train_x.is_contiguous() and d.notes == []
    big = load_dataset("cifar100", tmp_path, image_size=40)
    assert big.image_size == 40 and big.digest != d.digest


def test_cifar_offline_error_names_file_folder_and_url(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", tmp_path)
    msg = str(err.value)
    assert f"cifar100 is not in {tmp_path / 'cifar-100-python'}" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in msg
    assert f"put cifar-100-python.tar.gz in {tmp_path}" in msg


def test_the_stl10_pixels_survive_resizing_bicubically(fake_stl10):
    """The tensor resize keeps a flat image flat and the mean colour (bicubic, antialiased)."""
    from cifarlab.data.sizing import resize_uint8

    x = torch.full((3, 3, 96, 96), 77, dtype=torch.uint8)
    assert resize_uint8(x, 32).eq(77).all()
    root, arrays = fake_stl10
    d = load_dataset("stl10", root, image_size=32)
    src = arrays["train_x"].reshape(20, 3, -1).mean(-1)
    assert np.abs(d.train_x.reshape(20, 3, -1).float().mean(-1).numpy() - src).max() < 2.0
