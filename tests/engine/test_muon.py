import copy

import pytest
import torch
from torch import nn

from cifarlab.engine.muon import MuonSGD, make_muon
from cifarlab.engine.optim import param_groups, set_lr


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def _data(n: int = 64):
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.5
    x[torch.arange(n), y % 3] += 1.5  # the class shows in one channel: learnable
    return x, y


def _train(net: nn.Module, opt: torch.optim.Optimizer, x, y, steps: int, start: int = 0, lr: float = 0.05):
    losses = []
    for t in range(start, start + steps):
        set_lr(opt, lr, 1.0 - t / 100)  # as the fit loop: every group's lr each step
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_groups_split_by_shape_and_keep_their_keys():
    net = _net()
    opt = make_muon(param_groups(net.named_parameters(), 5e-4, lr_scale=0.5), 0.9, True, muon_lr_scale=2.0)
    assert isinstance(opt, torch.optim.Optimizer)
    muon = [g for g in opt.param_groups if g["muon"]]
    rest = [g for g in opt.param_groups if not g["muon"]]
    assert all(p.ndim >= 2 for g in muon for p in g["params"]) and all(p.ndim < 2 for g in rest for p in g["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    assert {g["lr_scale"] for g in muon} == {1.0} and {g["lr_scale"] for g in rest} == {0.5}
    assert {g["weight_decay"] for g in muon} == {5e-4}
    # the head's group (named as transfer.optimizer_groups names it) stays whole on SGD, as in airbench
    head = param_groups(net[-1].named_parameters(), 0.0, name="head")
    trunk = param_groups(net[:-1].named_parameters(), 0.0, name="trunk")
    opt = make_muon(head + trunk, 0.9, True)
    assert [(g["name"], g["muon"]) for g in opt.param_groups] == [("head", False), ("head", False), ("trunk", True),
                                                                  ("trunk", False)]
    marked = {"params": list(net[0].parameters()), "weight_decay": 0.0, "lr_scale": 1.0, "muon": False}
    assert [g["muon"] for g in make_muon([marked], 0.9, True).param_groups] == [False]


def test_a_conv_net_trains_and_the_conv_weights_move_by_muon():
    net = _net()
    x, y = _data()
    opt = make_muon(param_groups(net.named_parameters(), 5e-4), 0.9, True)
    w0 = net[0].weight.detach().clone()
    losses = _train(net, opt, x, y, 40)
    assert losses[-1] < 0.5 * losses[0], losses[::8]
    # the filters moved by torch's own Muon step on the flattened (out, in*kh*kw) matrix, through the alias
    assert not torch.equal(w0, net[0].weight)
    probe = copy.deepcopy(net)
    opt2 = make_muon([{"params": [probe[3].weight], "weight_decay": 0.0, "lr_scale": 1.0}], 0.0, False)
    before = probe[3].weight.detach().clone()
    set_lr(opt2, 0.01, 1.0)
    nn.functional.cross_entropy(probe(x), y).backward()
    ref = nn.Parameter(before.reshape(16, -1).clone())
    ref.grad = probe[3].weight.grad.reshape(16, -1).clone()
    torch.optim.Muon([ref], lr=0.01, weight_decay=0.0, momentum=0.0, nesterov=False).step()
    opt2.step()
    assert not torch.equal(before, probe[3].weight)
    torch.testing.assert_close(probe[3].weight.detach().reshape(16, -1), ref.detach(), atol=0, rtol=0)


def test_channels_last_weights_get_the_same_update():
    """A channels_last filter bank is aliased in (out, kh, kw, in) column order; the orthogonalised step is the same
    matrix with its columns permuted, so two steps from the same start give the same filters in either layout (up
    to bf16 rounding in Newton-Schulz; the pre-BatchNorm conv bias gets a zero gradient and is left out)."""
    x, y = _data()
    a, b = _net(), _net().to(memory_format=torch.channels_last)
    assert not b[0].weight.is_contiguous()
    start = [p.detach().clone() for p in a.parameters()]
    oa = make_muon(param_groups(a.named_parameters(), 5e-4), 0.9, True)
    ob = make_muon(param_groups(b.named_parameters(), 5e-4), 0.9, True)
    _train(a, oa, x, y, 2)
    _train(b, ob, x.contiguous(memory_format=torch.channels_last), y, 2)
    for (name, pa), pb, p0 in zip(a.named_parameters(), b.parameters(), start):
        if pa.ndim >= 2:
            assert ((pa - pb).norm() / (pa - p0).norm()).item() < 1e-2, name


def test_resume_from_state_dict_is_exact_and_hooks_fire_once_per_step(tmp_path):
    x, y = _data()
    net = _net()
    opt = make_muon(param_groups(net.named_parameters(), 5e-4), 0.9, True)
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    _train(net, opt, x, y, 6)
    assert len(calls) == 6
    torch.save({"model": net.state_dict(), "opt": opt.state_dict()}, tmp_path / "ck.pt")
    ref = _train(net, opt, x, y, 6, start=6)
    final = copy.deepcopy(net.state_dict())

    net2 = _net()  # a fresh process: new model, new optimizer, then the checkpoint (as fit's _restore)
    opt2 = make_muon(param_groups(net2.named_parameters(), 5e-4), 0.9, True)
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    net2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["opt"])
    assert _train(net2, opt2, x, y, 6, start=6) == ref
    for k, v in final.items():
        assert torch.equal(v, net2.state_dict()[k]), k


def test_a_state_dict_of_another_optimizer_is_refused():
    net = _net()
    opt = make_muon(param_groups(net.named_parameters(), 0.0), 0.9, True)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not a MuonSGD state dict"):
        opt.load_state_dict(sgd.state_dict())
    assert isinstance(opt, MuonSGD)


def test_the_muon_lr_scale_key_reaches_the_run_and_its_record(tmp_path):
    """`muon_lr_scale` (a config key) multiplies the Muon-updated weights' rate in a real run, and the summary's
    `lr_groups` lists Muon's part of the trunk beside its SGD part."""
    from cifarlab import api

    cfg = api.make_config("scratch", overrides={
        "dataset": "synthetic:4:24:8", "model": "cnn_small", "image_size": 16, "epochs": 1, "batch_size": 16,
        "lr": 0.05, "optimizer": "muon", "muon_lr_scale": 4.0, "progress": "off", "embed_samples": 8,
        "out": str(tmp_path), "name": "m"})
    rates = api.train(cfg).summary["lr_groups"]
    assert rates["trunk (muon)"] == pytest.approx(4 * rates["trunk"]) and rates["head"] == pytest.approx(0.05)
