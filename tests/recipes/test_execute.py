"""The run lifecycle (recipes/execute.py): train into an existing run directory and --resume with changed keys are
refused naming the key, before anything is trained or rewritten; Ctrl-C leaves a run 'interrupted' (not 'failed'),
and resume continues it."""

import json

import numpy as np
import pytest
from PIL import Image

from cifarlab import api
from cifarlab.engine import resume
from cifarlab.recipes.execute import INTERRUPTED, RunChanged, RunExists, execute

from tests.conftest import write_folder

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


KEYS = {"dataset": "synthetic:4:20:10", "model": "cnn_small", "image_size": 16, "epochs": 3, "batch_size": 16,
        "progress": "off", "num_threads": 1, "embed_samples": 10, "name": "r"}


def _ctrl_c_after_epoch(monkeypatch, stop_epoch: int) -> None:
    """Ctrl-C right after epoch ``stop_epoch``'s checkpoint is written (where a terminal's SIGINT lands in Python)."""
    save = resume.save

    def save_then_interrupt(run, model, optimizer, ema, state, is_best):
        save(run, model, optimizer, ema, state, is_best)
        if state.epoch == stop_epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "save", save_then_interrupt)


def test_ctrl_c_leaves_status_interrupted_and_resume_finishes(tmp_path, monkeypatch):
    cfg = api.make_config("scratch", overrides={**KEYS, "out": str(tmp_path)})
    _ctrl_c_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("interrupted", INTERRUPTED)
    monkeypatch.undo()
    with pytest.raises(RunExists, match=r"status interrupted\) with the same config and data; with resume=True it "
                                        r"continues"):
        execute(cfg)  # an interrupted run with a checkpoint is kept until the user says resume or overwrite
    logs: list[str] = []
    done = execute(api.make_config("scratch", overrides={**KEYS, "out": str(tmp_path), "resume": True}), logs.append)
    assert done.summary["status"] == "complete" and done.summary["epochs"] == 3
    assert any(line.startswith(f"resuming {tmp_path / 'r'} after epoch 1/3") for line in logs)


def test_a_run_interrupted_before_its_first_checkpoint_starts_over(tmp_path, monkeypatch):
    import sys

    execute_mod = sys.modules["cifarlab.recipes.execute"]  # the package exports a function of the same name
    cfg = api.make_config("scratch", overrides={**KEYS, "out": str(tmp_path)})

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute_mod, "load", ctrl_c)  # while the data loads: nothing trained, nothing to keep
    with pytest.raises(KeyboardInterrupt):
        execute(cfg)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    logs: list[str] = []
    assert execute(cfg, logs.append).summary["status"] == "complete"  # no --resume needed
    assert any(line.startswith(f"replacing {tmp_path / 'r'}: its last attempt ended before training") for line in logs)


def test_the_recipes_help_states_partials_batchnorm_rule():
    """`cifarlab recipes` says what partial does with BatchNorm statistics: kept from pretrained weights,
    re-estimated from random weights or --init. The behaviour itself is proven by tests/recipes/test_transfer.py
    (test_partial_regime_trains_only_the_last_block_and_head: statistics unmoved from a weights file;
    test_partial_from_random_init_re_estimates_every_batchnorm: every block's statistics move)."""
    line = next(row for row in api.recipes_help().splitlines() if row.strip().startswith("partial "))
    assert "BatchNorm included" not in line
    assert "BatchNorm statistics per norm_stats: kept from pretrained weights, re-estimated from each batch (frozen " \
           "blocks too) from random weights or --init" in line
