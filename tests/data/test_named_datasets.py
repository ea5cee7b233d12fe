"""ImageNette, STL-10 and folders with val/ or unlabeled/ trained end to end: rotation pretraining, then last-block
(partial) and full (finetune) fine-tuning from it, on fakes in each distributed layout.

The last ones check what the recipes do with ``ImageData.notes`` (logged and recorded in config.json),
``unlabeled_x`` (label-free recipes train on it) and :func:`cifarlab.data.placement.fits` (the host fallback).
"""

import json
import subprocess
import sys

import pytest

from cifarlab import api

from tests.data.fakes import NAMES, md5, write_imagenette, write_stl10

BASE = {"model": "cnn_small", "epochs": 1, "batch_size": 8, "lr": 0.05, "embed_samples": 9, "progress": "off",
        "tta": "off"}


@pytest.fixture
def imagenette_root(tmp_path, monkeypatch):
    """The .tgz torchvision downloads, in the data root, with its MD5 known to torchvision."""
    from torchvision.datasets import Imagenette

    root = tmp_path / "data"
    archive = write_imagenette(root, classes=3, per_class={"train": 8, "val": 3}, short=40, as_tgz=True)
    url, _ = Imagenette._ARCHIVES["160px"]
    monkeypatch.setitem(Imagenette._ARCHIVES, "160px", (url, md5(archive)))
    return root


@pytest.fixture
def stl10_root(tmp_path, monkeypatch):
    from torchvision.datasets import STL10

    _, tables = write_stl10(tmp_path / "data", n_train=24, n_test=12, n_unlabeled=40)
    for attr, table in tables.items():
        monkeypatch.setattr(STL10, attr, table)
    return tmp_path / "data"


def _train(recipe, out, **keys):
    return api.train(api.make_config(recipe, overrides={**BASE, "out": str(out), **keys}))


def _config(result):
    return json.loads((result.path / "config.json").read_text())


def _pretrain_and_finetune(dataset, root, out, pretrain_dataset=None, **keys):
    rot = _train("rotation", out, dataset=pretrain_dataset or dataset, data_root=str(root), name="rot", **keys)
    assert rot.summary["status"] == "complete" and 0 <= rot.summary["rotation_test_acc"] <= 1
    runs = {"rotation": rot}
    for regime in ("partial", "finetune"):
        runs[regime] = _train(regime, out, dataset=dataset, data_root=str(root), init=str(rot.path),
                              name=f"{regime}-rotinit", augment="cropflip", backbone_lr_factor=1.0, head_init="random",
                              **keys)
        assert runs[regime].summary["status"] == "complete", regime
    return runs


def test_imagenette_trains_through_rotation_partial_and_finetune(imagenette_root, tmp_path):
    runs = _pretrain_and_finetune("imagenette:160px", imagenette_root, tmp_path / "runs")
    ds = _config(runs["finetune"])["dataset"]
    assert ds["classes"] == list(NAMES[:3]) and ds["num_test"] == 9 and ds["image_size"] == 40
    assert runs["finetune"].summary["resolution"] == 40
    assert _config(runs["rotation"])["dataset"]["digest"] == ds["digest"]  # the same images for both stages


def test_imagenette_shaped_directory_with_val_trains_through_the_cli(tmp_path):
    """An ImageNette-shaped directory (not an archive) by folder:PATH, through the CLI: val/ is the test split."""
    folder = write_imagenette(tmp_path / "src", classes=2, per_class={"train": 6, "val": 2}, short=36, seed=7)
    cmd = [sys.executable, "-m", "cifarlab.cli", "train", "--recipe", "rotation", "--dataset", f"folder:{folder}",
           "--model", "cnn_small", "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "runs"), "--name",
           "rot", "--data-root", str(tmp_path / "d"), "--progress", "off"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = json.loads((tmp_path / "runs" / "rot" / "config.json").read_text())
    assert cfg["dataset"]["num_test"] == 4 and cfg["dataset"]["image_size"] == 36
    assert cfg["dataset"]["classes"] == ["n01440764", "n02102040"]  # a folder's classes are its folder names


def test_stl10_trains_through_rotation_partial_and_finetune(stl10_root, tmp_path):
    runs = _pretrain_and_finetune("stl10", stl10_root, tmp_path / "runs", image_size=48)  # 96 px, resized (CPU time)
    ds = _config(runs["finetune"])["dataset"]
    assert ds["num_train_total"] == 24 and ds["num_test"] == 12 and ds["image_size"] == 48


def test_stl10_rotation_pretrains_on_the_unlabelled_images_too(stl10_root, tmp_path):
    runs = _pretrain_and_finetune("stl10", stl10_root, tmp_path / "runs", pretrain_dataset="stl10+unlabeled")
    split = _config(runs["rotation"])["split"]
    assert split["num_train"] + split["num_val"] == 24 + 40  # labelled train + unlabelled, labels never read
    assert _config(runs["finetune"])["split"]["num_train"] + _config(runs["finetune"])["split"]["num_val"] == 24


def test_folder_unlabeled_images_join_the_rotation_pool(tmp_path):
    from PIL import Image

    folder = write_imagenette(tmp_path / "src", classes=2, per_class={"train": 4, "test": 2}, short=32)
    (folder / "unlabeled" / "extra").mkdir(parents=True)
    for i in range(10):
        Image.new("RGB", (32, 32), (i * 20, 50, 90)).save(folder / "unlabeled" / "extra" / f"{i}.png")
    runs = _pretrain_and_finetune(f"folder:{folder}", tmp_path / "d", tmp_path / "runs")
    split = _config(runs["rotation"])["split"]
    assert split["num_train"] + split["num_val"] == 8 + 10


def test_the_resize_line_is_in_the_log(imagenette_root, tmp_path, capfd):
    rot = _train("rotation", tmp_path / "runs", dataset="imagenette", data_root=str(imagenette_root), name="r")
    err = capfd.readouterr().err
    line = "resized 33 images (train 24, test 9) of 40-"
    assert line in err
    assert line in json.dumps(_config(rot))  # the run directory says it too


def test_a_dataset_too_large_for_the_device_falls_back_to_the_host(tmp_path, capfd, monkeypatch):
    import cifarlab.data.placement as placement

    monkeypatch.setattr(placement, "fits", lambda device, nbytes, free_bytes=None: (False, "kept on the host (test)"))
    real_place, placed = placement.place, []

    def place(x, device, on_device):
        placed.append(on_device)
        return real_place(x, device, on_device)

    monkeypatch.setattr(placement, "place", place)
    run = _train("rotation", tmp_path / "runs", dataset="synthetic:4:20:10", image_size=16, name="host")
    assert run.summary["status"] == "complete"
    assert "kept on the host (test)" in capfd.readouterr().err
    assert placed and not any(placed)  # train and test images both stayed on the host (on the CPU it is the device)


@pytest.fixture
def cifar100_root(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    from tests.data.fakes import write_cifar100

    for attr, value in write_cifar100(tmp_path / "data", n_train=400, n_test=100).items():
        monkeypatch.setattr(CIFAR100, attr, value)
    return tmp_path / "data"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["scratch", "supcon", "linear"])
def test_cifar100_trains_in_the_other_recipes(cifar100_root, tmp_path, recipe):
    """100 classes of 4 train images: the classifiers get 100 outputs (rotation/partial/finetune run above on the
    other datasets; here the recipes that read the class count)."""
    keys = {"linear_epochs": 1, "knn_k": 5} if recipe == "supcon" else {"weights": "none"} if recipe == "linear" else {}
    run = _train(recipe, tmp_path / "runs", dataset="cifar100", data_root=str(cifar100_root), name=recipe,
                 val_fraction=0.25, **keys)
    assert run.summary["status"] == "complete"
    assert _config(run)["dataset"]["classes"][99] == "fine99"
