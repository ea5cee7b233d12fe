"""The study cost estimate: calibration cached and reused, work counted as the recipes spend it, the FLOP table
where nothing was measured, the question above an hour, and the suggested overrides."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from cifarlab import cli
from cifarlab.config import make_config
from cifarlab.studies import calibration, cost

REPO = Path(__file__).resolve().parents[2]
ROTNET = REPO / "configs" / "studies" / "course" / "rotnet.toml"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test starts with an empty calibration cache."""
    monkeypatch.setenv("CIFARLAB_CACHE", str(tmp_path / "cache"))


def small_study(tmp_path: Path, epochs: int = 2) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f"""
[study]
name = "small"
[defaults]
dataset = "synthetic:4:40:10"
model = "cnn_small"
epochs = {epochs}
batch_size = 16
device = "cpu"
progress = "off"
[[runs]]
recipe = "scratch"
[[runs]]
recipe = "rotation"
""")
    return path


@pytest.fixture
def flat_rate(monkeypatch):
    """Every pass at 1 ms per input (train), 0.5 ms (partial), 0.25 ms (forward): no measurement is made."""
    per = {"train": 1e-3, "partial": 5e-4, "forward": 2.5e-4}

    def fake(model, resolution, kind, batch, device, machine=None, measure_missing=True):
        return calibration.Rate(per[kind], "measured")

    monkeypatch.setattr(calibration, "rate", fake)
    return per


def test_calibration_is_cached_and_reused(monkeypatch):
    first = calibration.rate("cnn_small", 16, "forward", 8, CPU)
    assert first.source == "measured" and first.seconds_per_input > 0
    key = calibration.entry_key("cnn_small", 16, "forward", 8, CPU)
    assert calibration.read_cache()[key]["seconds_per_input"] == first.seconds_per_input

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although the cache holds it")

    monkeypatch.setattr(calibration, "_step_fn", no_measuring)
    again = calibration.rate("cnn_small", 16, "forward", 8, CPU)
    assert again.seconds_per_input == first.seconds_per_input
    # another batch of the same model, resolution and kind reuses the nearest measurement too
    assert calibration.rate("cnn_small", 16, "forward", 32, CPU).seconds_per_input == first.seconds_per_input


def test_training_work_scales_with_epochs_images_and_inputs_per_image():
    shape = cost.dataset_shape("cifar10")

    def train_inputs(recipe: str, **keys) -> float:
        work = cost.run_work(make_config(recipe, overrides={"model": "cnn_small", **keys}), shape)
        return sum(p[4] for p in work.passes if p[2] == "train")

    base = train_inputs("scratch", epochs=2, per_class=100, batch_size=50)
    assert base == 2 * 900  # 1,000 images, 100 held out for validation, whole batches
    assert train_inputs("scratch", epochs=4, per_class=100, batch_size=50) == 2 * base
    assert train_inputs("scratch", epochs=2, per_class=200, batch_size=50) == 2 * base
    assert train_inputs("rotation", epochs=2, per_class=100, batch_size=50) == 4 * base  # all four rotations
    assert train_inputs("supcon", epochs=2, per_class=100, batch_size=50) == 2 * base  # two views


def test_linear_probe_embeds_once_whatever_the_epochs():
    shape = cost.dataset_shape("cifar10")
    works = [cost.run_work(make_config("linear", overrides={"model": "cnn_small", "epochs": e, "per_class": 10,
                                                            "test_per_class": 10}), shape) for e in (1, 50)]
    assert works[0].passes == works[1].passes == [("cnn_small", 32, "forward", 1024, 200.0)]


def test_estimate_follows_the_work(tmp_path, flat_rate):
    short = cost.estimate_study(small_study(tmp_path, epochs=2), tmp_path / "out", device=CPU)
    long = cost.estimate_study(small_study(tmp_path, epochs=4), tmp_path / "out", device=CPU)
    steps = (160 - 16) // 16  # 160 images, 16 held out, batch 16
    # scratch: 16 x 9 inputs per epoch; rotation: 4x that; each at 1 ms, plus a validation pass per epoch
    extra_epochs = 2 * (steps * 16 * 5 * flat_rate["train"] + 16 * 5 * flat_rate["forward"])
    assert long.total_s - short.total_s == pytest.approx(extra_epochs)


def test_flop_table_is_used_where_nothing_was_measured():
    got = calibration.rate("cnn_small", 16, "train", 8, CPU, measure_missing=False)
    assert got.source == "FLOPs: " + calibration.default_machine(CPU)
    m = calibration.machines()[calibration.default_machine(CPU)]
    assert got.seconds_per_input == pytest.approx(3 * calibration.forward_flops("cnn_small", 16) /
                                                  (m["train_tflops"] * 1e12))
    assert not any(k.endswith(calibration.machine_key(CPU)) for k in calibration.read_cache())  # nothing measured
    # a named machine prices from its row even where this device has a measurement
    calibration.measure("cnn_small", 16, "train", 8, CPU)
    assert calibration.rate("cnn_small", 16, "train", 8, CPU, machine="h100").source == "FLOPs: h100"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def hour_and_a_half() -> cost.StudyEstimate:
    return cost.StudyEstimate([cost.RunEstimate("a", "scratch", 5400.0, ("measured",), "")], "here")


@pytest.mark.parametrize("answer, goes_on", [("y\n", True), ("n\n", False), ("\n", False)])
def test_above_an_hour_asks_on_a_terminal(answer, goes_on):
    out = io.StringIO()
    assert cost.check_budget(hour_and_a_half(), ({"epochs": 1}, 300.0), False, FakeTTY(answer), out) is goes_on
    assert "[y/N]" in out.getvalue() and "--set epochs=1" in out.getvalue()


def test_above_an_hour_says_so_in_one_line_when_not_a_terminal():
    out = io.StringIO()
    assert cost.check_budget(hour_and_a_half(), ({"epochs": 1, "per_class": 10}, 300.0), False, io.StringIO(""), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "1.5 h" in lines[0] and "--set epochs=1 --set per_class=10" in lines[0]
    assert "[y/N]" not in lines[0]


def test_yes_and_short_studies_do_not_ask():
    tty = FakeTTY("n\n")
    assert cost.check_budget(hour_and_a_half(), None, True, tty, io.StringIO())
    short = cost.StudyEstimate([cost.RunEstimate("a", "scratch", 60.0, ("measured",), "")], "here")
    out = io.StringIO()
    assert cost.check_budget(short, None, False, tty, out) and out.getvalue() == ""


def test_suggested_overrides_bring_the_estimate_under_the_target(tmp_path, flat_rate):
    runs = cost.study_configs(ROTNET, tmp_path)
    assert cost.estimate_runs(runs, CPU).total_s > cost.CONFIRM_ABOVE_S
    sets, predicted = cost.suggest_overrides(runs, CPU)
    assert predicted < cost.TARGET_S
    # the same overrides through the study's own --set path (every run's keys), estimated afresh
    shrunk = cost.estimate_study(ROTNET, tmp_path, sets, device=CPU)
    assert shrunk.total_s == pytest.approx(predicted) and shrunk.total_s < cost.TARGET_S


def test_course_rotnet_as_shipped_is_many_hours_on_two_cores(tmp_path):
    est = cost.estimate_study(ROTNET, tmp_path, machine="cpu-2")
    assert est.total_s > 10 * 3600
    assert all(r.sources == ("FLOPs: cpu-2",) for r in est.runs)


def test_dry_run_prints_each_run_and_the_total(tmp_path, flat_rate, capsys):
    assert cli.main(["study", str(small_study(tmp_path)), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "estimated time on this machine" in out and "total:" in out and "assumes:" in out
    assert "scratch-cnn_small" in out.split("estimated time")[1] and "rotation-cnn_small" in out.split(
        "estimated time")[1]


def test_study_declined_at_the_prompt_runs_nothing(tmp_path, monkeypatch, capsys):
    def slow(model, resolution, kind, batch, device, machine=None, measure_missing=True):
        return calibration.Rate(10.0, "measured")  # ten seconds per input: hours

    monkeypatch.setattr(calibration, "rate", slow)
    monkeypatch.setattr("sys.stdin", FakeTTY("n\n"))
    out = tmp_path / "out"
    assert cli.main(["study", str(small_study(tmp_path)), "--out", str(out)]) == 1
    assert not out.exists() and "[y/N]" in capsys.readouterr().err
