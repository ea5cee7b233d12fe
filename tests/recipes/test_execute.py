"""train into an existing run directory, and --resume, with changed keys (recipes/execute.py): refused naming the
key, before anything is trained or rewritten."""

import json

import numpy as np
import pytest
from PIL import Image

from cifarlab import api
from cifarlab.recipes.execute import RunChanged
from conftest import write_folder

BASE = {"dataset": "synthetic:4:30:10", "model": "cnn_small", "epochs": 1, "batch_size": 16, "lr": 0.05,
        "image_size": 16, "embed_samples": 20, "progress": "off", "device": "cpu", "name": "r"}


def _cfg(tmp_path, **kw):
    return api.make_config("scratch", overrides={**BASE, "out": str(tmp_path / "runs"), **kw})


def test_train_into_a_directory_holding_another_run_names_the_key_and_never_says_resume(tmp_path, capsys):
    from cifarlab.cli import main

    api.train(_cfg(tmp_path))
    with pytest.raises(RunChanged, match=r"holds a different run \(status complete\): epochs 1 -> 2"):
        api.train(_cfg(tmp_path, epochs=2))
    args = ["train", "--recipe", "scratch", "--out", str(tmp_path / "runs"), "--epochs", "2",
            *[a for k, v in BASE.items() if k != "epochs" for a in (f"--{k.replace('_', '-')}", str(v))]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "epochs 1 -> 2" in err and "--overwrite to replace it" in err and "--name NEW" in err
    assert "resume to continue" not in err and "use --resume" not in err
    # a presentation key is not a change: the same run, complete, is returned by --resume
    assert api.train(_cfg(tmp_path, progress="on", resume=True)).summary["status"] == "complete"


def test_resume_of_a_finished_run_with_more_epochs_is_refused_saying_why(tmp_path):
    api.train(_cfg(tmp_path))
    summary = (tmp_path / "runs" / "r" / "summary.json").read_text()
    with pytest.raises(RunChanged, match=r"epochs 1 -> 3; resume=True continues only the same run \(epochs: the "
                                         r"learning-rate schedule spans every epoch"):
        api.train(_cfg(tmp_path, epochs=3, resume=True))
    assert (tmp_path / "runs" / "r" / "summary.json").read_text() == summary


def test_resume_on_changed_data_is_refused_before_the_first_step_and_keeps_the_run(tmp_path):
    ds = write_folder(tmp_path / "ds", per_class=4, size=16)
    api.train(_cfg(tmp_path, dataset=f"folder:{ds}", image_size=0))
    run = tmp_path / "runs" / "r"
    s = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**s, "status": "running"}))  # as a killed run leaves it
    before = (run / "checkpoints" / "last.pt").read_bytes()
    img = ds / "train" / "dog" / "1.png"
    Image.fromarray(255 - np.asarray(Image.open(img))).save(img)
    with pytest.raises(RunChanged, match=r"\(status running\): dataset content changed"):
        api.train(_cfg(tmp_path, dataset=f"folder:{ds}", image_size=0, resume=True))
    assert json.loads((run / "summary.json").read_text())["status"] == "running"
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
