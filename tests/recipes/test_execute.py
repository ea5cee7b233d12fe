"""The run lifecycle: Ctrl-C leaves a run 'interrupted' (not 'failed'), and resume continues it."""

import json

import pytest

from cifarlab import api
from cifarlab.engine import resume
from cifarlab.recipes.execute import INTERRUPTED, RunExists, execute

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
    with pytest.raises(RunExists, match=r"status interrupted\); set resume=True"):
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
