"""Evaluation passes padded to power-of-two batches: a handful of shapes reach the model, and no output changes."""

import pytest
import torch
from torch import nn

from cifarlab.data import Augment
from cifarlab.engine.embed import CPU_ROWS_FIXED, Padded, RowTuner, embed, padded_size
from cifarlab.engine.loop import evaluate
from cifarlab.objectives import Classification, Rotation
from cifarlab.progress import Line


class _Recorder(nn.Module):
    """A conv + BatchNorm net that records the batch size of every call."""

    def __init__(self, out: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, out))
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return self.net(x.float() / 255)


def _trained_stats(model: _Recorder) -> _Recorder:
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8))  # non-trivial running statistics
    model.sizes.clear()
    return model.eval()


@pytest.mark.parametrize("n, size", [(1, 1), (2, 2), (3, 4), (904, 1024), (1024, 1024), (1025, 2048), (4000, 4096)])
def test_padded_size_is_the_next_power_of_two(n, size):
    assert padded_size(n) == size


def test_padded_call_returns_the_rows_of_the_unpadded_call_for_tensors_and_tuples():
    model = _trained_stats(_Recorder())
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        plain = model(x)
        padded = Padded(model)(x)
        pair = Padded(lambda t: (model(t), model(t) * 2))(x)
    assert model.sizes[1:] == [8, 8, 8]  # the padded calls saw 8 rows
    assert padded.shape == plain.shape and torch.allclose(padded, plain, atol=1e-6)
    assert len(pair) == 2 and torch.allclose(pair[1], 2 * plain, atol=1e-6)


def test_padded_embedding_equals_the_plain_one_and_sees_power_of_two_batches():
    model = _trained_stats(_Recorder(out=7))
    x = torch.randint(0, 256, (45, 3, 8, 8), dtype=torch.uint8)
    plain = embed(model, x, 16, torch.device("cpu"))
    assert model.sizes == [16, 16, 13]  # the last batch is a new shape without padding
    model.sizes.clear()
    padded = embed(model, x, 16, torch.device("cpu"), pad=True)
    assert model.sizes == [16, 16, 16]
    assert padded.shape == plain.shape and torch.allclose(padded, plain, atol=1e-5)


@pytest.mark.parametrize("task_name", ["classification", "rotation"])
def test_padded_evaluation_gives_the_same_loss_and_accuracy(task_name):
    aug = Augment("none", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    task = Classification(aug) if task_name == "classification" else Rotation(aug)
    model = _trained_stats(_Recorder(out=5 if task_name == "classification" else 4))
    x = torch.randint(0, 256, (37, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 5, (37,))
    plain = evaluate(model, task, x, y, 16, "off", pad=False)
    plain_sizes, model.sizes = model.sizes, []
    padded = evaluate(model, task, x, y, 16, "off", pad=True)
    per = 1 if task_name == "classification" else 4  # rotation evaluates 4 rotated copies per image
    assert plain_sizes == [16 * per, 16 * per, 5 * per]
    assert model.sizes == [16 * per, 16 * per, padded_size(5 * per)]  # one shape fewer
    assert padded["acc"] == pytest.approx(plain["acc"]) and padded["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    assert not model.training  # evaluate restores the mode it found (eval here)


def test_cpu_embedding_runs_in_timed_slices_with_the_same_outputs_and_whole_batches_for_batch_statistics():
    model = _trained_stats(_Recorder(out=6))
    x = torch.randint(0, 256, (700, 3, 8, 8), dtype=torch.uint8)
    whole = embed(model, x, 1024, torch.device("cpu"), cpu_rows=0)
    assert model.sizes == [700]
    model.sizes.clear()
    sliced = embed(model, x, 1024, torch.device("cpu"))
    # the trial: two rounds of (64, 256), then the faster of them for the rest, cut at the batch's end
    assert model.sizes[:4] == [64, 256, 64, 256] and all(r in (64, 256) for r in model.sizes[4:-1])
    assert sum(model.sizes) == 700 and torch.allclose(sliced, whole, atol=1e-5)
    model.sizes.clear()
    embed(model, x, 300, torch.device("cpu"), pad=False)  # batch statistics: the caller's batches reach fn whole
    assert model.sizes == [300, 300, 100]


def test_row_tuner_keeps_the_fastest_rows_per_image_timed_in_its_second_round():
    tuner = RowTuner((32, 128))
    per_row = {32: 1.0, 128: 0.5}  # seconds per row in the timed round: 128 rows per call is faster
    for i in range(4):
        rows = tuner.next()
        first_round = i < 2
        tuner.record(rows, rows, (100.0 if rows == 128 else 0.0) if first_round else per_row[rows] * rows)
    assert tuner.best == 128 and tuner.next() == 128  # the first round (shape warm-up) did not count


def test_deterministic_cpu_embedding_uses_fixed_slices(monkeypatch):
    model = _trained_stats(_Recorder())
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    embed(model, torch.randint(0, 256, (150, 3, 8, 8), dtype=torch.uint8), 1024, torch.device("cpu"))
    assert model.sizes == [CPU_ROWS_FIXED, CPU_ROWS_FIXED, 150 - 2 * CPU_ROWS_FIXED]


@pytest.mark.parametrize("mode", ["on", "off"])
def test_embedding_progress_line_on_stderr_only_when_on(capsys, mode):
    model = _trained_stats(_Recorder())
    embed(model, torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8), 16, torch.device("cpu"),
          progress=Line(mode, "embedding test"))
    err = capsys.readouterr().err
    if mode == "on":
        assert "embedding test" in err and "img/s" in err and "40" in err
    else:
        assert err == ""
