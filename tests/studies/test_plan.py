"""Study files into planned runs: --set overrides and init cycles (studies/plan.py)."""

import json

import pytest
from mini_study import HEADER, rotation_then_finetune

from cifarlab import api
from cifarlab.analysis.context import study_note
from cifarlab.errors import ConfigError
from cifarlab.studies.plan import load_study
from cifarlab.studies.reuse import StudyChanged


def _file(tmp_path, text):
    f = tmp_path / "s.toml"
    f.write_text(text)
    return f


def test_set_wins_over_defaults_and_run_tables_where_the_recipe_has_the_key(tmp_path):
    text = rotation_then_finetune("ft-s{seed}", "[5, 10]").replace('recipe = "rotation"\n',
                                                                    'recipe = "rotation"\nepochs = 4\n')
    f = _file(tmp_path, text)
    _, planned = load_study(f, tmp_path / "out", overrides={"epochs": "2", "per_class": "3", "weights": "none"})
    assert [p.name for p in planned] == ["rot-s0", "rot-s1", "ft-s0", "ft-s1"]  # the per_class sweep became one value
    assert all(api.make_config(p.recipe, overrides=p.keys).epochs == 2 for p in planned)  # over the run table's 4
    assert all(api.make_config(p.recipe, overrides=p.keys).per_class == 3 for p in planned)
    # `weights` is a key of the fine-tune only: the rotation runs never see it
    assert [p.keys.get("weights") for p in planned] == [None, None, "none", "none"]


def test_set_refuses_a_key_no_run_has_and_keys_the_study_owns(tmp_path):
    f = _file(tmp_path, rotation_then_finetune("ft-s{seed}", "5"))
    with pytest.raises(ConfigError, match=r"--set epochz: .*no run.s recipe has this key.*did you mean: epochs"):
        load_study(f, tmp_path / "out", overrides={"epochz": "1"})
    with pytest.raises(ConfigError, match=r"--set out=\.\.\.: a study's runs go to --out"):
        load_study(f, tmp_path / "out", overrides={"out": "x"})
    with pytest.raises(ConfigError, match=r"epochs='two': expected int"):
        load_study(f, tmp_path / "out", overrides={"epochs": "two"})


def test_set_is_recorded_and_stated_and_a_shrunk_rerun_never_mixes(tmp_path, capsys):
    from cifarlab.cli import main

    f, out = _file(tmp_path, HEADER.replace("epochs = 1", "epochs = 2") + '\n[[runs]]\nrecipe = "scratch"\nname = "a"\n'
                   ), tmp_path / "out"
    assert main(["study", str(f), "--out", str(out), "--set", "epochs=1", "--no-report"]) == 0
    study = json.loads((out / "study.json").read_text())
    config = json.loads((out / "a" / "config.json").read_text())
    assert study["overrides"] == {"epochs": "1"} and config["config"]["epochs"] == 1
    assert config["study"] == {"file": str(f), "overrides": {"epochs": "1"}}
    assert "--set epochs=1" in study_note(study)  # the report's note says the runs were changed from the file
    assert main(["study", str(f), "--out", str(out), "--dry-run", "--set", "epochs=1"]) == 0
    assert "[complete] a" in capsys.readouterr().out
    # the full-size study into the same folder is another run, never the shrunk one passed off as it
    with pytest.raises(StudyChanged, match=r"run a: epochs 1 -> 2"):
        api.study(str(f), str(out), report=False)


def test_an_init_cycle_is_named_before_anything_runs(tmp_path):
    text = HEADER + """
[[runs]]
recipe = "finetune"
name = "a"
init = "@b"

[[runs]]
recipe = "finetune"
name = "b"
init = "@c"

[[runs]]
recipe = "finetune"
name = "c"
init = "@a"
"""
    f, out = _file(tmp_path, text), tmp_path / "out"
    with pytest.raises(ConfigError, match=r"s.toml: init cycle: a -> b -> c -> a"):
        api.study(str(f), str(out))
    assert not out.exists()
