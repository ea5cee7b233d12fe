"""The local executors: K runs at once per device as separate processes give the same results as one after another
in this process, respect ``@name`` dependencies, skip complete runs and print each run's headline as it ends."""

import json

import pytest
import torch
from mini_study import HEADER, rotation_then_finetune

from cifarlab.engine import checkpoint
from cifarlab.errors import CifarlabError
from cifarlab.studies import local as executors
from cifarlab.studies.runner import run_study

STUDY = rotation_then_finetune("ft-s{seed}", "5")
NAMES = ["rot-s0", "rot-s1", "ft-s0", "ft-s1"]


def _summary(out, name):
    return json.loads((out / name / "summary.json").read_text())


def test_two_jobs_per_device_equal_one_at_a_time_and_respect_dependencies(tmp_path):
    f = tmp_path / "mini.toml"
    f.write_text(STUDY)
    logs: dict[int, list[str]] = {1: [], 2: []}
    for k in (1, 2):
        failed, _ = run_study(f, tmp_path / f"k{k}", report=False, log=logs[k].append, jobs_per_device=k)
        assert failed == [], logs[k]
    one, two = tmp_path / "k1", tmp_path / "k2"
    for name in NAMES:
        a, b = _summary(one, name), _summary(two, name)
        assert a["status"] == b["status"] == "complete"
        metric = "rotation_test_acc" if name.startswith("rot") else "test_acc"
        assert a[metric] == b[metric], name
        wa = checkpoint.load(one / name / "checkpoints" / "best.pt")["model"]
        wb = checkpoint.load(two / name / "checkpoints" / "best.pt")["model"]
        assert all(torch.equal(wa[key], wb[key]) for key in wa), name
    for seed in (0, 1):  # a fine-tune started after its rotation run had finished
        assert _summary(two, f"ft-s{seed}")["started"] >= _summary(two, f"rot-s{seed}")["finished"]
    assert _summary(two, "ft-s0")["study_series"] == "rotation + finetune"
    log = logs[2]
    started = [i for i, line in enumerate(log) if " started " in line]
    first_end = next(i for i, line in enumerate(log) if ": complete " in line)
    assert len([i for i in started if i < first_end]) == 2, log  # two runs ran at once
    for name in NAMES:  # each run's headline, as it ended
        s = _summary(two, name)
        metric = "rotation_test_acc" if name.startswith("rot") else "test_acc"
        assert f"[study mini] {name}: complete {metric} {100 * s[metric]:.2f}% (train {s['train_time_s']:.1f}s)" in log
    assert json.loads((two / "study.json").read_text())["runs"]["ft-s1"]["state"] == "complete"
    logs[2].clear()
    failed, _ = run_study(f, two, report=False, log=logs[2].append, jobs_per_device=2)
    assert failed == [] and not any(" started " in line for line in logs[2])  # all complete: nothing rerun


def test_device_slots_and_their_environment(monkeypatch):
    assert executors.device_slots(["0", "1"], 2) == [("0", 0), ("0", 1), ("1", 0), ("1", 1)]
    assert executors.device_slots(None, 3) == [(None, 0), (None, 1), (None, 2)]
    with pytest.raises(CifarlabError, match="jobs_per_device=0: must be 1 or more"):
        executors.device_slots(None, 0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 8)
    assert executors._env("1", 0)["CUDA_VISIBLE_DEVICES"] == "1"
    assert executors._env(None, 4)["OMP_NUM_THREADS"] == "2" and "OMP_NUM_THREADS" not in executors._env(None, 1)


def test_headline_names_the_first_metric_a_run_has():
    assert executors.headline({"status": "complete", "linear_acc": 0.81, "knn_acc": 0.7, "train_time_s": 2.04}) == \
        "complete linear_acc 81.00% (train 2.0s)"
    assert executors.headline({"status": "diverged"}) == "diverged"
    assert executors.headline({}) == "not started"  # e.g. a job cancelled because its dependency failed


def test_a_missing_weight_is_reported_once_with_the_study_level_way_to_supply_it(tmp_path, monkeypatch, capsys):
    from mini_study import HEADER

    from cifarlab import api
    from cifarlab.errors import CheckpointError
    from cifarlab.models import imagenet

    def unreachable(arch):  # the message weights.torchvision_state_dict gives when the file is not cached
        raise CheckpointError(f"cannot download the ImageNet weights for {arch} (URLError); fetch URL and put it at "
                              "HUB, or pass --weights FILE [no connection]")

    monkeypatch.setattr(imagenet, "torchvision_state_dict", unreachable)
    runs = "".join(f'\n[[runs]]\nrecipe = "linear"\nmodel = "resnet18_imagenet"\nname = "{n}"\n' for n in "abc")
    f = tmp_path / "w.toml"
    f.write_text(HEADER + runs)
    failed, _ = api.study(str(f), str(tmp_path / "out"), report=False)
    err = capsys.readouterr().err
    assert failed == ["a", "b", "c"]
    assert err.count("cannot download the ImageNet weights") == 2  # once as it happens, once in the closing list
    assert "run b did not complete: the same error as run a" in err
    assert "  a, b, c (failed): cannot download" in err
    assert "--set weights=FILE" in err and "--weights FILE" not in err
def test_ctrl_c_stops_the_study_and_the_same_command_resumes_it(tmp_path, monkeypatch, capsys):
    """Ctrl-C in a run stops the whole study with that run 'interrupted' (the terminal line says so); running the
    same study again resumes that run from its checkpoint and completes the study."""
    from cifarlab import api
    from cifarlab.engine import resume

    f = tmp_path / "s.toml"
    f.write_text(HEADER.replace("epochs = 1", "epochs = 2") + '[[runs]]\nrecipe = "scratch"\nseeds = [0, 1]\n')
    out = tmp_path / "out"
    save = resume.save

    def save_then_interrupt(run, model, optimizer, ema, state, is_best):
        save(run, model, optimizer, ema, state, is_best)
        if state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        api.study(str(f), str(out), report=False)
    first = next(p for p in sorted(out.iterdir()) if p.is_dir())
    assert json.loads((first / "summary.json").read_text())["status"] == "interrupted"
    assert f"[study mini] {first.name}: interrupted" in capsys.readouterr().err
    assert len([p for p in out.iterdir() if p.is_dir()]) == 1  # the study stopped: the second run never started
    monkeypatch.undo()
    failed, _ = api.study(str(f), str(out), report=False)
    assert failed == []
    assert "resuming" in capsys.readouterr().err
    assert all(json.loads((p / "summary.json").read_text())["status"] == "complete" for p in out.iterdir()
               if p.is_dir())
