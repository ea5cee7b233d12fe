import json

import pytest
from mini_study import rotation_then_finetune

from cifarlab import api
from cifarlab.errors import ConfigError
from cifarlab.studies.plan import load_study

STUDY = rotation_then_finetune("ft-pc{per_class}-s{seed}", "[5, 10]")


def test_study_runs_skips_complete_and_resumes(tmp_path, capsys):
    f = tmp_path / "mini.toml"
    f.write_text(STUDY)
    out = tmp_path / "out"
    meta, planned = load_study(f, out)
    assert [p.name for p in planned] == ["rot-s0", "rot-s1", "ft-pc5-s0", "ft-pc10-s0", "ft-pc5-s1", "ft-pc10-s1"]
    failed, report = api.study(str(f), str(out))
    assert failed == [] and (out / "report.html").is_file()
    assert json.loads((out / "ft-pc5-s1" / "summary.json").read_text())["study_series"] == "rotation + finetune"
    assert "Low-label curve" in (out / "report.html").read_text()
    # mark one run as interrupted: a second study run resumes it and skips the others
    s = json.loads((out / "rot-s1" / "summary.json").read_text())
    (out / "rot-s1" / "summary.json").write_text(json.dumps({**s, "status": "running"}))
    before = {p.name: (p / "metrics.csv").stat().st_mtime for p in out.iterdir() if p.is_dir()}
    failed, _ = api.study(str(f), str(out), report=False)
    after = {p.name: (p / "metrics.csv").stat().st_mtime for p in out.iterdir() if p.is_dir()}
    assert failed == [] and json.loads((out / "rot-s1" / "summary.json").read_text())["status"] == "complete"
    assert all(before[n] == after[n] for n in before if n != "rot-s1")
    # the dry run lists every run with its status and runs nothing
    from cifarlab.cli import main

    (out / "ft-pc10-s1" / "summary.json").unlink()
    assert main(["study", str(f), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"study mini: 6 runs into {out}"
    assert lines[1].startswith("  1. [complete] rot-s0 (rotation") and "init=rot-s1" in lines[6]
    assert lines[6].startswith("  6. [new] ft-pc10-s1 (finetune")
    assert not (out / "ft-pc10-s1" / "summary.json").exists()


def test_study_errors_name_the_run_and_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[[runs]]\nrecipe = "scratch"\nlearning_rate = 1\n')
    with pytest.raises(ConfigError, match=r"bad.toml: run 1 \(scratch\): unknown config key 'learning_rate'"):
        load_study(f, tmp_path)


def test_seed_offset_shifts_seeds_names_and_references_and_is_recorded(tmp_path, capsys):
    f = tmp_path / "mini.toml"
    f.write_text(STUDY)
    _, planned = load_study(f, tmp_path / "o", seed_offset=10)
    assert [p.name for p in planned] == ["rot-s10", "rot-s11", "ft-pc5-s10", "ft-pc10-s10", "ft-pc5-s11",
                                         "ft-pc10-s11"]
    ft = planned[3]
    assert ft.keys["seed"] == 10 and ft.keys["init"] == str(tmp_path / "o" / "rot-s10")
    from cifarlab.cli import main

    assert main(["study", str(f), "--out", str(tmp_path / "o"), "--dry-run", "--seed-offset", "10"]) == 0
    assert "(seed offset 10)" in capsys.readouterr().out
    one = tmp_path / "one.toml"
    one.write_text(STUDY.split("[[runs]]")[0] + '[[runs]]\nrecipe = "scratch"\nname = "sc-s{seed}"\n')
    failed, _ = api.study(str(one), str(tmp_path / "o"), report=False, seed_offset=3)
    assert failed == [] and json.loads((tmp_path / "o" / "study.json").read_text())["seed_offset"] == 3
    assert json.loads((tmp_path / "o" / "sc-s3" / "config.json").read_text())["config"]["seed"] == 3
    assert "sc-s3: complete test_acc" in capsys.readouterr().err  # its headline, as it ended


def test_a_study_goes_on_after_a_diverged_run_and_lists_it(tmp_path, capsys):
    from cifarlab.errors import CheckpointError

    f = tmp_path / "bad.toml"
    f.write_text(STUDY.replace("seeds = [0, 1]\n\n[[runs]]", "seeds = [0, 1]\nlr = 100.0\n\n[[runs]]", 1)
                 .replace("per_class = [5, 10]\nseeds = [0, 1]", "per_class = [5]\nseeds = [0]")
                 + '\n[[runs]]\nrecipe = "scratch"\nname = "fine"\n')
    out = tmp_path / "out"
    failed, report = api.study(str(f), str(out))
    assert sorted(failed) == ["ft-pc5-s0", "rot-s0", "rot-s1"]
    assert json.loads((out / "fine" / "summary.json").read_text())["status"] == "complete"
    assert json.loads((out / "rot-s0" / "summary.json").read_text())["status"] == "diverged"
    assert not (out / "ft-pc5-s0").exists()  # skipped: it starts from a diverged run
    assert report and (out / "report.html").is_file()
    err = capsys.readouterr().err
    assert "3 of 4 runs did not complete" in err and "ft-pc5-s0 (skipped): it starts from a run" in err
    with pytest.raises(CheckpointError, match=r"init=.*rot-s0: that run's status is diverged, not complete"):
        api.train(api.make_config("finetune", overrides={"dataset": "synthetic:4:30:10", "model": "cnn_small",
                                                         "image_size": 16, "init": str(out / "rot-s0"),
                                                         "out": str(out), "epochs": 1}))
