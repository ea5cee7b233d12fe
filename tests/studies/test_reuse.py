"""A study reuses a run directory only for the same run (fingerprint), stops naming what changed, and
--rerun-changed re-runs the changed runs and their dependents while keeping the old ones."""

import json
import re

import numpy as np
import pytest
from mini_study import HEADER
from PIL import Image

from cifarlab import api
from cifarlab.analysis.runs import find_runs
from cifarlab.studies.reuse import StudyChanged

from tests.conftest import write_folder

ONE_RUN = HEADER.replace('dataset = "synthetic:4:30:10"\n', "") + """
[[runs]]
recipe = "scratch"
name = "a"
"""

ROT_FT = HEADER + """
[[runs]]
recipe = "rotation"
name = "rot"
epochs = {rot_epochs}

[[runs]]
recipe = "finetune"
init = "@rot"
name = "ft"
lr = {ft_lr}
"""


def _study(tmp_path, text):
    f = tmp_path / "s.toml"
    f.write_text(text)
    return str(f)


def _config(out, name):
    return json.loads((out / name / "config.json").read_text())


def test_an_edited_study_stops_before_training_and_names_the_run_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLAB_DATASET", "synthetic:4:30:10")
    f, out = _study(tmp_path, ONE_RUN), tmp_path / "out"
    api.study(f, str(out), report=False)
    before = (out / "a" / "metrics.csv").stat().st_mtime_ns
    _study(tmp_path, ONE_RUN.replace("epochs = 1", "epochs = 2"))
    with pytest.raises(StudyChanged) as err:
        api.study(f, str(out), report=False)
    assert "run a: epochs 1 -> 2" in str(err.value) and "--rerun-changed" in str(err.value)
    # nothing was trained or rewritten: the directory still holds the 1-epoch run, never reported as the new one
    assert _config(out, "a")["config"]["epochs"] == 1
    assert (out / "a" / "metrics.csv").stat().st_mtime_ns == before


def test_a_changed_dataset_is_named_whether_its_name_or_only_its_content_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARLAB_DATASET", "synthetic:4:30:10")
    f, out = _study(tmp_path, ONE_RUN), tmp_path / "out"
    api.study(f, str(out), report=False)
    monkeypatch.setenv("CIFARLAB_DATASET", "synthetic:4:40:10")
    with pytest.raises(StudyChanged, match=r"run a: dataset synthetic:4:30:10 -> synthetic:4:40:10"):
        api.study(f, str(out), report=False)
    # the same spec, other pixels: only the content hash can tell, and it does, before training
    ds = write_folder(tmp_path / "ds", per_class=4, size=16)
    monkeypatch.setenv("CIFARLAB_DATASET", f"folder:{ds}")
    out2 = tmp_path / "out2"
    api.study(f, str(out2), report=False)
    img = ds / "train" / "cat" / "0.png"
    Image.fromarray(255 - np.asarray(Image.open(img))).save(img)
    with pytest.raises(StudyChanged) as err:
        api.study(f, str(out2), report=False)
    assert "run a: dataset content changed" in str(err.value) and "epochs" not in str(err.value)


def test_rerun_changed_reruns_exactly_the_changed_runs_and_keeps_the_old_ones(tmp_path):
    f, out = _study(tmp_path, ROT_FT.format(rot_epochs=1, ft_lr=0.05)), tmp_path / "out"
    api.study(f, str(out), report=False)
    rot_mtime = (out / "rot" / "metrics.csv").stat().st_mtime_ns
    old_ft = {p.name: p.read_bytes() for p in (out / "ft").rglob("*") if p.is_file() and p.name != ".lock"}
    _study(tmp_path, ROT_FT.format(rot_epochs=1, ft_lr=0.02))
    with pytest.raises(StudyChanged, match=r"run ft: lr 0.05 -> 0.02") as err:
        api.study(f, str(out), report=False)
    assert "run rot" not in str(err.value)
    failed, _ = api.study(f, str(out), report=False, rerun_changed=True)
    assert failed == []
    # the old fine-tune is whole under a name that says so; the new one ran with the new rate; rot was reused
    kept = out / "ft.replaced-1"
    assert {p.name: p.read_bytes() for p in kept.rglob("*") if p.is_file()} == old_ft
    assert _config(out, "ft")["config"]["lr"] == 0.02 and _config(out, "ft.replaced-1")["config"]["lr"] == 0.05
    assert (out / "rot" / "metrics.csv").stat().st_mtime_ns == rot_mtime
    assert sorted(r.name for r in find_runs(out)) == ["ft", "rot"]  # the report never mixes the two
    assert json.loads((out / "study.json").read_text())["replaced"] == {"ft": ["ft.replaced-1"]}


def test_a_changed_init_run_changes_the_runs_that_start_from_it_and_they_rerun(tmp_path, capsys):
    from cifarlab.cli import main

    f, out = _study(tmp_path, ROT_FT.format(rot_epochs=1, ft_lr=0.05)), tmp_path / "out"
    api.study(f, str(out), report=False)
    _study(tmp_path, ROT_FT.format(rot_epochs=2, ft_lr=0.05))
    assert main(["study", f, "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  1. [changed: epochs 1 -> 2] rot (rotation")
    assert lines[2].startswith("  2. [changed: its init run rot changed] ft (finetune")
    failed, _ = api.study(f, str(out), report=False, rerun_changed=True)
    assert failed == [] and sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "ft", "ft.replaced-1", "rot", "rot.replaced-1"]
    # the new fine-tune records the new rotation run it started from
    rot_hash = _config(out, "rot")["fingerprint"]["hash"]
    assert _config(out, "ft")["fingerprint"]["components"]["init"] == f"run {rot_hash}"
    assert _config(out, "ft.replaced-1")["fingerprint"]["components"]["init"] != f"run {rot_hash}"
    # and the study is now the same as its folder: nothing left to re-run
    assert main(["study", f, "--out", str(out), "--dry-run"]) == 0
    assert {ln.split("]")[0].split("[")[1] for ln in _plan(capsys.readouterr().out)} == {"complete"}


def _plan(out: str) -> list[str]:
    """The plan's run lines of a dry run (the cost estimate follows them)."""
    return [ln for ln in out.splitlines() if re.match(r"\s+\d+\. \[", ln)]


def test_dry_run_shows_complete_changed_and_new(tmp_path, capsys):
    from cifarlab.cli import main

    f, out = _study(tmp_path, ROT_FT.format(rot_epochs=1, ft_lr=0.05)), tmp_path / "out"
    assert main(["study", f, "--out", str(out), "--dry-run"]) == 0
    assert [ln.split("]")[0] for ln in _plan(capsys.readouterr().out)] == ["  1. [new", "  2. [new"]
    api.study(f, str(out), report=False)
    _study(tmp_path, ROT_FT.format(rot_epochs=1, ft_lr=0.02))
    assert main(["study", f, "--out", str(out), "--dry-run"]) == 0
    lines = _plan(capsys.readouterr().out)
    assert lines[0].startswith("  1. [complete] rot") and lines[1].startswith("  2. [changed: lr 0.05 -> 0.02] ft")
