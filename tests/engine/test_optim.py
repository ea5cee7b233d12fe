import pytest
import torch

from cifarlab.engine.optim import lr_factor, param_groups


def test_onecycle_warms_up_then_decays_to_zero():
    f = [lr_factor(s, 100, 10, "onecycle") for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.02


def test_cosine_and_multistep():
    assert lr_factor(0, 100, 0, "cosine") == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(49, 100, 0, "multistep", [0.5, 0.75]) == 1.0
    assert lr_factor(50, 100, 0, "multistep", [0.5, 0.75]) == pytest.approx(0.1)
    assert lr_factor(80, 100, 0, "multistep", [0.5, 0.75]) == pytest.approx(0.01)


def test_no_weight_decay_on_norms_and_biases():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    groups = param_groups(m.named_parameters(), 5e-4)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(m[0].weight), id(m[2].weight)}
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
