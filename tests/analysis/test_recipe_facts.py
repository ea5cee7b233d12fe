"""What each arm did, read from real run directories: every fact is the value the run resolved and recorded
(config.json's resolved block, the split, summary.json), shown in the report's arm table."""

import json

import pytest

from cifarlab import api
from cifarlab.analysis.recipe_facts import arm_facts, run_facts
from cifarlab.analysis.report import build
from cifarlab.analysis.runs import find_runs

COMMON = {"dataset": "synthetic:4:20:10", "model": "cnn_small", "image_size": 16, "progress": "off",
          "embed_samples": 0, "batch_size": 8}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("facts")
    for seed in (0, 1):  # the course rotation recipe: Adam at a constant 1e-3, no warm-up, one random rotation
        api.train(api.make_config("rotation", overrides={
            **COMMON, "out": str(out), "name": f"rot-s{seed}", "seed": seed, "epochs": 2, "optimizer": "adam",
            "lr": 0.001, "schedule": "constant", "warmup_epochs": 0.0, "rotations": "random", "weight_decay": 0.0}))
    api.train(api.make_config("partial", overrides={
        **COMMON, "out": str(out), "name": "part", "init": str(out / "rot-s0"), "epochs": 1, "head_init": "random",
        "val_fraction": 0.0, "selection": "last"}))
    api.train(api.make_config("scratch", overrides={**COMMON, "out": str(out), "name": "scr", "epochs": 1}))
    # a study run with --set: the runner records the keys in each run's config.json
    cfg = json.loads((out / "scr" / "config.json").read_text())
    (out / "scr" / "config.json").write_text(json.dumps({**cfg, "study": {"file": "s.toml",
                                                                          "overrides": {"epochs": "1"}}}))
    return out


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_each_fact_is_what_the_run_recorded(runs_dir):
    runs = {r.name: r for r in find_runs(runs_dir)}
    rot, part, scr = run_facts(runs["rot-s0"]), run_facts(runs["part"]), run_facts(runs["scr"])
    res = _config(runs_dir / "rot-s0")["resolved"]
    split = _config(runs_dir / "rot-s0")["split"]
    assert rot["epochs"] == f"2 ({2 * res['steps_per_epoch']} steps)"
    assert rot["images"] == f"{split['num_train']} (+{split['num_val']} validation)"
    assert rot["optimiser"] == "adam 0.001" and rot["schedule"] == "constant, no warm-up"
    assert rot["augment"] == f"{res['augment']} at 16 px, one random rotation per image"
    assert rot["trained"] == "all layers"
    assert part["trained"] == "block4 + head"  # the summary's trainable blocks, and the head
    assert part["images"].endswith("(no validation split)")
    scr_res = _config(runs_dir / "scr")["resolved"]
    assert scr_res["warmup_steps"] > 0 and scr["schedule"] == f"onecycle, warm-up {scr_res['warmup_steps']} steps"
    assert scr["optimiser"] == f"sgd {scr_res['lr']:.4g} (momentum 0.9, Nesterov), wd 0.0005"


def test_an_arm_lists_its_seeds_and_the_set_keys_it_ran_with(runs_dir):
    runs = find_runs(runs_dir)
    rot = arm_facts([r for r in runs if r.name.startswith("rot-")])
    assert rot["seeds"] == "0, 1" and rot["overrides"] == "" and " / " not in rot["epochs"]
    assert arm_facts([r for r in runs if r.name == "scr"])["overrides"] == "epochs=1"


def test_the_report_arm_tables_say_what_each_arm_did(runs_dir, tmp_path):
    text = build(runs_dir, "md", tmp_path / "r.md", embedding="none", progress="off").read_text()
    headers = [line for line in text.splitlines() if line.startswith("| arm |") and "(mean ± sd)" in line]
    assert len(headers) >= 2
    for header in headers:
        for label in ("epochs (steps)", "train images", "optimiser, rate", "schedule", "augmentation",
                      "trained layers"):
            assert f" {label} |" in header, header
    row = next(line for line in text.splitlines() if line.startswith("| ") and "one random rotation" in line)
    assert "| 2 (0, 1) |" in row and "adam 0.001" in row and "constant, no warm-up" in row and "all layers" in row
    scratch = next(line for line in text.splitlines() if line.startswith("| ") and "onecycle, warm-up" in line)
    assert scratch.rstrip().endswith("| epochs=1 |")  # the --set column, shown where a run recorded one
