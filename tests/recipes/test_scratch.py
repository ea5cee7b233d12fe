"""The scratch regime end to end on synthetic data: learning, run directory, resume, failures."""

import json

import numpy as np
import pytest
import torch

from cifarlab import api
from cifarlab.engine import checkpoint
from cifarlab.engine.rundir import read_metrics
from cifarlab.errors import CifarlabError, DataError, TrainingDiverged

from tests.conftest import stopping_fit

BASE = {"dataset": "synthetic:10:60:30", "model": "cnn_small", "epochs": 3, "batch_size": 32, "lr": 0.05,
        "image_size": 16, "embed_samples": 50}


def _cfg(tmp_path, **kw):
    return api.make_config("scratch", overrides={**BASE, "out": str(tmp_path / "runs"), **kw})


def test_learns_well_above_chance_and_writes_the_run_directory(tmp_path):
    result = api.train(_cfg(tmp_path))
    s = result.summary
    assert s["status"] == "complete" and s["test_acc"] > 0.5  # chance is 0.1
    for key in ("recipe", "model", "dataset", "epochs", "best_val_acc", "best_epoch", "train_time_s", "images_per_s",
                "params_total", "params_trainable"):
        assert key in s, key
    files = {p.name for p in result.path.iterdir()}
    assert {"summary.json", "config.json", "metrics.csv", "split.npz", "predictions.npz", "checkpoints"} <= files
    cfg = json.loads((result.path / "config.json").read_text())
    assert cfg["dataset"]["digest"] and cfg["split"]["digest"] and cfg["versions"]["torch"]
    rows = (result.path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,lr,train_loss,train_acc,val_loss,val_acc")
    # the tested epoch is the best on validation (the first of equals), and its weights are best.pt's
    vals = [r["val_acc"] for r in read_metrics(result.path / "metrics.csv")]
    assert s["best_epoch"] == 1 + vals.index(max(vals)) and s["best_val_acc"] == pytest.approx(max(vals))
    assert checkpoint.load(result.path / "checkpoints" / "best.pt")["epoch"] == s["best_epoch"]
    pred = np.load(result.path / "predictions.npz")
    assert pred["logits"].shape == (300, 10) and (pred["preds"] == pred["logits"].argmax(1)).all()
    assert s["test_acc"] == pytest.approx((pred["preds"] == pred["labels"]).mean())


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    full = api.train(_cfg(tmp_path, name="full", deterministic=True))
    import cifarlab.recipes.scratch as scratch

    real_fit = scratch.fit
    monkeypatch.setattr(scratch, "fit", stopping_fit(real_fit, at_epoch=2))
    with pytest.raises(KeyboardInterrupt):
        api.train(_cfg(tmp_path, name="cut", deterministic=True))
    cut_dir = tmp_path / "runs" / "cut"
    assert json.loads((cut_dir / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(scratch, "fit", real_fit)
    cut_rows = (cut_dir / "metrics.csv").read_text().splitlines()
    capsys.readouterr()
    resumed = api.train(_cfg(tmp_path, name="cut", deterministic=True, resume=True))
    # it continued after epoch 2 (a restart from epoch 0 would give the same weights): it said so, and the two
    # epochs it had written stay as they were, wall times included
    assert "after epoch 2/3" in capsys.readouterr().err
    assert (cut_dir / "metrics.csv").read_text().splitlines()[:3] == cut_rows[:3] and len(cut_rows) == 3
    a = checkpoint.load(full.path / "checkpoints" / "last.pt")
    b = checkpoint.load(resumed.path / "checkpoints" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert resumed.summary["test_acc"] == full.summary["test_acc"]


def test_existing_run_needs_resume_or_overwrite_named_in_the_callers_language(tmp_path, capsys):
    api.train(_cfg(tmp_path, epochs=1))
    with pytest.raises(CifarlabError, match=r"already holds a run \(status complete\) with the same config and data; "
                                            r"with resume=True it returns its result .*overwrite=True.*name=") as err:
        api.train(_cfg(tmp_path, epochs=1))
    assert "--resume" not in str(err.value)  # Python callers set keys, not flags
    from cifarlab.cli import main

    args = ["train", "--recipe", "scratch", "--out", str(tmp_path / "runs"), "--epochs", "1",
            *[a for k, v in BASE.items() if k != "epochs" for a in (f"--{k.replace('_', '-')}", str(v))]]
    assert main(args) == 2
    assert "with --resume it returns its result (nothing is left to train); --overwrite trains it again; --name NEW" \
        in capsys.readouterr().err
    assert api.train(_cfg(tmp_path, epochs=1, overwrite=True)).summary["status"] == "complete"


def test_bad_data_leaves_only_a_failed_status_and_the_retry_replaces_it(tmp_path, capsys):
    with pytest.raises(DataError, match="does not exist"):
        api.train(_cfg(tmp_path, dataset=f"folder:{tmp_path / 'missing'}", name="retry"))
    run_dir = tmp_path / "runs" / "retry"
    assert [p.name for p in run_dir.iterdir()] == ["summary.json"]
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "failed" and "does not exist" in s["error"]
    # the run never trained: the next try replaces it (no --resume/--overwrite needed) and says why
    again = api.train(_cfg(tmp_path, epochs=1, name="retry"))
    assert again.summary["status"] == "complete"
    assert "its last attempt ended before training" in capsys.readouterr().err


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from cifarlab.objectives import classification

    real = classification.Classification.train_step
    calls = {"n": 0}

    def poisoned(self, *a):
        loss, c, k = real(self, *a)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 20 else loss), c, k

    monkeypatch.setattr(classification.Classification, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite at step 19 \(epoch 2\).*checkpoint \(epoch 1\) is kept"):
        api.train(_cfg(tmp_path))
    run_dir = next((tmp_path / "runs").iterdir())
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["epoch"] == 1
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "diverged" and "step 19" in s["error"]


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    from cifarlab.cli import main

    assert main(["train", "--model", "resnet81", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: unknown model 'resnet81'; choose from:")
    assert not any(tmp_path.iterdir())


def test_out_of_memory_fails_early_with_a_batch_size_to_try(tmp_path, monkeypatch):
    from cifarlab.objectives import classification

    def oom(self, *a):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(classification.Classification, "train_step", oom)
    with pytest.raises(CifarlabError, match=r"batch_size=32 does not fit in cpu memory \(at step 0\); try "
                                            r"--batch-size 16"):
        api.train(_cfg(tmp_path))
    run_dir = next((tmp_path / "runs").iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (run_dir / "checkpoints").exists()


def test_tta_accuracy_is_its_own_column_and_equals_the_mean_of_the_views_logits(tmp_path):
    from cifarlab.data.augment import TTA_VIEWS, tta_view
    from cifarlab.models import create_model

    result = api.train(_cfg(tmp_path, tta="on", epochs=2))
    s = result.summary
    pred = np.load(result.path / "predictions.npz")
    assert s["test_acc"] == pytest.approx((pred["preds"] == pred["labels"]).mean())  # plain accuracy untouched
    # recompute the TTA prediction by hand from the selected weights: mean logits over the six views
    model = create_model("cnn_small", num_classes=10)
    model.load_state_dict(checkpoint.load(result.path / "checkpoints" / "best.pt")["model"])
    model.eval()
    from cifarlab.data import load_dataset

    data = load_dataset("synthetic:10:60:30", None, 16)
    cfg = json.loads((result.path / "config.json").read_text())
    mean, std = cfg["normalisation_data"]["mean"], cfg["normalisation_data"]["std"]
    from cifarlab.data.augment import normalize

    with torch.no_grad():
        logits = torch.stack([model(normalize(tta_view(data.test_x, v), mean, std)) for v in TTA_VIEWS]).mean(0)
    by_hand = (logits.argmax(1) == data.test_y).float().mean().item()
    assert s["test_acc_tta"] == pytest.approx(by_hand, abs=1 / 300 + 1e-9)
    assert "6 views" in s["tta"]
    assert "test_acc_tta" not in api.train(_cfg(tmp_path, tta="off", epochs=1, name="plain")).summary


def test_summary_times_the_start_up_in_parts_and_the_first_epoch_against_the_median(tmp_path, monkeypatch):
    import csv
    import statistics
    import time

    import cifarlab.recipes.scratch as scratch

    real_create = scratch.create_model

    def slow_create(*args, **kwargs):  # a known cost between the data and the first step
        time.sleep(0.4)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(scratch, "create_model", slow_create)
    api.train(_cfg(tmp_path, name="first"))  # this process's later runs start at execute(), not at its start
    s = api.train(_cfg(tmp_path, name="second", epochs=4)).summary
    parts = s["startup_parts_s"]
    assert set(parts) == {"imports", "prepare", "model_to_first_step"}
    assert s["memory_format"] == "nchw"  # channels_last is for CUDA only (engine.device.memory_format)
    assert parts["imports"] < 0.05  # not the first run of the process: no interpreter start or imports
    assert parts["model_to_first_step"] >= 0.4
    assert s["startup_s"] == pytest.approx(sum(parts.values()), abs=0.004)
    with open(tmp_path / "runs" / "second" / "metrics.csv") as f:
        walls = [float(r["wall_time_s"]) for r in csv.DictReader(f)]
    assert s["first_epoch_s"] == pytest.approx(walls[0], abs=1e-3)
    assert s["median_epoch_s"] == pytest.approx(statistics.median(walls[1:]), abs=1e-3)
    assert s["first_epoch_ratio"] == pytest.approx(walls[0] / statistics.median(walls[1:]), abs=2e-3)
    assert s["first_epoch_excess_s"] == pytest.approx(walls[0] - statistics.median(walls[1:]), abs=2e-3)
    marks = s["first_epoch_steps_s"]  # seconds into epoch 1 at the end of steps 1, 2, 5, 10, ... (as many as ran)
    steps = [int(k) for k in marks]
    assert steps[:3] == [1, 2, 5] and steps == sorted(steps)
    assert list(marks.values()) == sorted(marks.values()) and marks[str(steps[-1])] <= walls[0]


def test_the_test_subset_is_the_same_for_every_seed_and_follows_test_seed(tmp_path):
    """test_per_class draws its images with test_seed, not the run's seed: seeds vary the training only, and arms
    are compared on one test set (as on the whole test split)."""
    import numpy as np

    def test_rows(name, **kw):
        res = api.train(_cfg(tmp_path, epochs=1, test_per_class=10, embed_samples=0, name=name, **kw))
        with np.load(res.path / "split.npz") as z:
            return z["test"], z["train"]

    t0, tr0 = test_rows("a", seed=0)
    t1, tr1 = test_rows("b", seed=1)
    t2, _ = test_rows("c", seed=0, test_seed=1)
    assert len(t0) == 100 and np.array_equal(t0, t1) and not np.array_equal(tr0, tr1)
    assert len(t2) == 100 and not np.array_equal(t0, t2)


def test_split_seed_fixes_the_train_subset_across_seeds(tmp_path):
    """split_seed=N: every seed trains on the same per_class subset (and validation split); -1 (the default): each
    seed draws its own."""
    import numpy as np

    def split(name, **kw):
        res = api.train(_cfg(tmp_path, epochs=1, per_class=20, embed_samples=0, name=name, **kw))
        with np.load(res.path / "split.npz") as z:
            return z["train"], z["val"]

    a, b = split("a", seed=0, split_seed=3), split("b", seed=1, split_seed=3)
    c = split("c", seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and len(a[0]) + len(a[1]) == 200
    assert not np.array_equal(a[0], c[0])
