"""SupCon/SimCLR/CE-baseline and rotation recipes end to end on synthetic data; fine-tuning from a rotation run."""

import numpy as np
import pytest
import torch

from cifarlab import api
from cifarlab.engine import checkpoint
from cifarlab.errors import CheckpointError
from cifarlab.models import create_model
from cifarlab.recipes.transfer import load_encoder

from tests.conftest import trained_keys

BASE = {"dataset": "synthetic:4:40:20", "model": "cnn_small", "epochs": 2, "batch_size": 32, "lr": 0.05,
        "image_size": 16, "embed_samples": 40, "progress": "off"}


@pytest.mark.parametrize("recipe", ["supcon", "simclr", "supcon_ce"])
def test_contrastive_recipes_report_linear_and_knn(tmp_path, recipe):
    cfg = api.make_config(recipe, overrides={**BASE, "out": str(tmp_path), "linear_epochs": 5, "knn_k": 10,
                                             "warmup_epochs": 0.0})
    result = api.train(cfg)
    s = result.summary
    assert s["status"] == "complete" and 0 <= s["knn_acc"] <= 1
    pred = np.load(result.path / "predictions.npz")  # the reported linear accuracy is the saved predictions'
    assert s["linear_acc"] == pytest.approx((pred["preds"] == pred["labels"]).mean())
    if recipe == "supcon_ce":
        assert "ce_test_acc" in s
    else:  # the online probe's accuracy per epoch fills the accuracy columns (chance is 0.25)
        import csv

        with open(result.path / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2 and all(0 <= float(r["val_acc"]) <= 1 and 0 <= float(r["train_acc"]) <= 1
                                      for r in rows)
        assert "online_probe" in s
        if recipe == "supcon":
            assert max(float(r["val_acc"]) for r in rows) > 0.4


def _rotation(tmp_path, name, **kw):
    return api.train(api.make_config("rotation", overrides={**BASE, "out": str(tmp_path), "name": name,
                                                            "deterministic": True, **kw}))


def test_rotation_is_label_free(tmp_path, monkeypatch):
    """Permuting every class label of the dataset leaves the whole rotation run unchanged."""
    a = _rotation(tmp_path, "a")
    import cifarlab.recipes.context as context

    real = context.load_dataset

    def shuffled(*args, **kwargs):
        d = real(*args, **kwargs)
        d.train_y = d.train_y[torch.randperm(len(d.train_y), generator=torch.Generator().manual_seed(9))]
        return d

    monkeypatch.setattr(context, "load_dataset", shuffled)
    b = _rotation(tmp_path, "b")
    wa = checkpoint.load(a.path / "checkpoints" / "last.pt")["model"]
    wb = checkpoint.load(b.path / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.summary["rotation_test_acc"] == b.summary["rotation_test_acc"]


def test_rotation_learns_above_chance_and_finetune_loads_its_encoder_exactly(tmp_path, trunk_at_fit_start):
    rot = _rotation(tmp_path, "rot", epochs=4, lr=0.1)
    assert rot.summary["rotation_test_acc"] > 0.4  # chance 0.25
    model = create_model("cnn_small", num_classes=4)
    load_encoder(model, str(rot.path))
    saved = checkpoint.load(rot.path / "checkpoints" / "best.pt")["model"]
    for k, v in model.trunk.state_dict().items():
        assert torch.equal(v, saved[f"trunk.{k}"]), k
    # the fine-tune run itself starts training from those weights (its trunk as fit receives it), and says so
    ft = api.train(api.make_config("finetune", overrides={**BASE, "out": str(tmp_path), "init": str(rot.path),
                                                          "augment": "cropflip", "backbone_lr_factor": 1.0}))
    assert ft.summary["status"] == "complete" and ft.summary["resolution"] == 16
    assert ft.summary["started_from"] == f"init:{rot.path}"
    weights = trained_keys(trunk_at_fit_start)
    assert weights and all(torch.equal(trunk_at_fit_start[k], saved[f"trunk.{k}"]) for k in weights)


def test_init_from_a_run_of_another_architecture_is_refused(tmp_path):
    rot = _rotation(tmp_path, "rot2", epochs=1)
    with pytest.raises(CheckpointError, match="encoder does not fit resnet18"):
        load_encoder(create_model("resnet18", num_classes=10), str(rot.path))


def test_supcon_control_without_pretraining(tmp_path):
    cfg = api.make_config("supcon", overrides={**BASE, "out": str(tmp_path), "epochs": 0, "linear_epochs": 3,
                                               "knn_k": 5})
    run = api.train(cfg)
    s = run.summary
    assert s["status"] == "complete" and s["control"].startswith("random-init") and s["epochs"] == 0
    assert run.path.is_dir() and not (run.path / "checkpoints").exists()  # nothing was trained


def test_folded_scaler_equals_the_standardised_head():
    from torch import nn

    from cifarlab.recipes.linear_eval import feature_scaler, fold_scaler

    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64) * torch.tensor([1e-3, 1.0, 1e3, 5.0, 0.0, 2.0],
                                                                      dtype=torch.float64) + 7.0
    mean, std = feature_scaler(x)
    assert std[4] == 1  # a constant feature is left unscaled, not divided by zero
    head = nn.Linear(6, 3).double()
    want = head((x - mean) / std)
    fold_scaler(head, mean, std)
    torch.testing.assert_close(head(x), want)


def test_linear_evaluation_does_not_depend_on_the_scale_of_the_embeddings(tmp_path, monkeypatch):
    """The same encoder with its embeddings multiplied by 1000 gets the same linear accuracy (without the
    standardisation, SGD at the same learning rate diverges or lands elsewhere)."""
    import cifarlab.recipes.supcon as supcon

    over = {**BASE, "out": str(tmp_path), "epochs": 0, "linear_epochs": 5, "knn_k": 5, "deterministic": True}
    a = api.train(api.make_config("supcon", overrides={**over, "name": "a"})).summary
    real = supcon.embed_split

    def scaled(ctx, fn, **kw):
        from cifarlab.recipes.linear_eval import Embedded

        e = real(ctx, fn, **kw)
        return Embedded(e.used, e.train * 1000, e.test * 1000)

    monkeypatch.setattr(supcon, "embed_split", scaled)
    b = api.train(api.make_config("supcon", overrides={**over, "name": "b"})).summary
    assert abs(a["linear_acc"] - b["linear_acc"]) <= 1 / 80 + 1e-9  # at most one of the 80 test images flips
    assert a["knn_acc"] == b["knn_acc"]  # cosine kNN is scale-free by construction


def test_rotation_per_class_means_images_per_class_drawn_without_labels(tmp_path):
    """``--per-class 5`` on 4 classes is 20 images, as for every other recipe, though the label-free split never
    looks at which class each one is."""
    run = _rotation(tmp_path, "pc", epochs=1, per_class=5, val_fraction=0.2)
    assert run.summary["num_train"] + run.summary["num_val"] == 20


def test_rotation_random_reaches_the_task_and_the_run_records_it(tmp_path, monkeypatch):
    """rotations="random" (the RotNet assignment's one angle per image) is what the run's task trains with, and
    config.json records it."""
    import json

    import cifarlab.recipes.rotation as rotation_recipe
    from cifarlab.objectives import Rotation

    made = []

    def spy(*args, **kwargs):
        task = Rotation(*args, **kwargs)
        made.append(task.rotate)
        return task

    monkeypatch.setattr(rotation_recipe, "Rotation", spy)
    run = _rotation(tmp_path, "rand", epochs=1, rotations="random")
    from cifarlab.objectives.rotation import ROTATIONS

    assert run.summary["status"] == "complete" and made == [ROTATIONS["random"]]
    assert json.loads((run.path / "config.json").read_text())["config"]["rotations"] == "random"
