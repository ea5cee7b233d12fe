"""Data-parallel training with torch.distributed (gloo, 2 processes on loopback) equals single-process training
on the same global batch; the gathered SupCon loss and its gradients equal the single-process ones."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cifarlab import api
from cifarlab.engine import checkpoint

from tests.conftest import stopping_fit

CFG = {"dataset": "synthetic:4:32:8", "model": "cnn_small_gn", "image_size": 16, "epochs": 2, "batch_size": 16,
       "lr": 0.05, "augment": "none", "progress": "off", "embed_samples": 10, "num_threads": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _train_worker(rank: int, world: int, port: int, overrides: dict) -> None:
    _init(rank, world, port)
    try:
        api.train(api.make_config("scratch", overrides=overrides))
    finally:
        dist.destroy_process_group()


def _spawn(fn, *args, world=2):
    mp.spawn(fn, args=(world, _free_port(), *args), nprocs=world, join=True)


def _weights(path):
    return checkpoint.load(path / "checkpoints" / "last.pt")["model"]


def test_two_processes_equal_one_on_the_global_batch(tmp_path):
    single = api.train(api.make_config("scratch", overrides={**CFG, "out": str(tmp_path), "name": "single"}))
    _spawn(_train_worker, {**CFG, "out": str(tmp_path), "name": "ddp"})
    a, b = _weights(single.path), _weights(tmp_path / "ddp")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    ha = checkpoint.load(single.path / "checkpoints" / "last.pt")["history"]
    hb = checkpoint.load(tmp_path / "ddp" / "checkpoints" / "last.pt")["history"]
    assert [round(r["train_loss"], 4) for r in ha] == [round(r["train_loss"], 4) for r in hb]
    assert not (tmp_path / "ddp" / ".lock").exists()


def _interrupted_worker(rank: int, world: int, port: int, overrides: dict) -> None:
    """Train under DDP and stop (as a Ctrl-C would) once epoch 1's checkpoint is on disk."""
    _init(rank, world, port)
    import cifarlab.recipes.scratch as scratch

    scratch.fit = stopping_fit(scratch.fit, at_epoch=1)
    try:
        api.train(api.make_config("scratch", overrides=overrides))
    except KeyboardInterrupt:
        pass
    finally:
        dist.destroy_process_group()


def test_resume_with_a_different_number_of_processes(tmp_path):
    """Two processes train epoch 1 of 2 and stop; one process resumes and finishes: the result equals an
    uninterrupted single-process run of 2 epochs (the shuffles and augmentation are seeded per epoch, and each
    rank's shard is a slice of the same global batch)."""
    import json

    single = api.train(api.make_config("scratch", overrides={**CFG, "out": str(tmp_path), "name": "single"}))
    _spawn(_interrupted_worker, {**CFG, "out": str(tmp_path), "name": "mixed"})
    mixed = tmp_path / "mixed"
    assert checkpoint.load(mixed / "checkpoints" / "last.pt")["epoch"] == 1
    assert json.loads((mixed / "summary.json").read_text())["status"] == "interrupted"
    resumed = api.train(api.make_config("scratch", overrides={**CFG, "out": str(tmp_path), "name": "mixed",
                                                              "resume": True}))
    assert resumed.summary["status"] == "complete"
    assert checkpoint.load(mixed / "checkpoints" / "last.pt")["epoch"] == 2
    a, b = _weights(single.path), _weights(mixed)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    assert resumed.summary["test_acc"] == pytest.approx(single.summary["test_acc"])


def _supcon_worker(rank: int, world: int, port: int, out: str) -> None:
    _init(rank, world, port)
    from cifarlab.engine.distributed import gather_with_grad
    from cifarlab.objectives import SupConLoss

    torch.manual_seed(0)
    x, y = torch.randn(8, 2, 6), torch.tensor([0, 1, 0, 2, 1, 3, 3, 0])
    w = torch.randn(6, 5, requires_grad=True)
    local = slice(rank * 4, rank * 4 + 4)
    loss = SupConLoss(0.1, gather=gather_with_grad)(x[local] @ w, y[local])
    loss.backward()
    grad = w.grad.clone()
    dist.all_reduce(grad)
    grad /= world  # what DDP's gradient averaging does
    if rank == 0:
        torch.save({"loss": loss.detach(), "grad": grad}, out)
    dist.destroy_process_group()


def test_gathered_supcon_loss_and_gradients_equal_single_process(tmp_path):
    from cifarlab.objectives import SupConLoss

    out = str(tmp_path / "r.pt")
    _spawn(_supcon_worker, out)
    got = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    x, y = torch.randn(8, 2, 6), torch.tensor([0, 1, 0, 2, 1, 3, 3, 0])
    w = torch.randn(6, 5, requires_grad=True)
    loss = SupConLoss(0.1)(x @ w, y)
    loss.backward()
    assert got["loss"].item() == pytest.approx(loss.item(), abs=1e-6)
    torch.testing.assert_close(got["grad"], w.grad, rtol=1e-5, atol=1e-6)


def test_sync_batchnorm_keeps_parameters_and_frozen_blocks_and_refuses_the_cpu():
    from torch import nn

    from cifarlab.engine import distributed
    from cifarlab.errors import ConfigError
    from cifarlab.models import create_model

    model = create_model("resnet18", num_classes=10, weights="none")
    model.set_trainable(model.partial_blocks())
    before = dict(model.state_dict())
    params = {n: id(p) for n, p in model.named_parameters()}
    with pytest.raises(ConfigError, match="cnn_small_gn"):
        distributed.sync_batchnorm(model, torch.device("cpu"))
    # the conversion itself needs no GPU (only SyncBatchNorm's forward does)
    out = distributed.sync_batchnorm(model, torch.device("cuda"))
    assert out is model
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, nn.SyncBatchNorm) for m in bns)
    assert list(model.state_dict()) == list(before)
    assert {n: id(p) for n, p in model.named_parameters()} == params  # the optimizer's references stay valid
    model.train()
    frozen = [m for m in bns if not m.weight.requires_grad]
    trained = [m for m in bns if m.weight.requires_grad]
    assert frozen and trained
    assert not any(m.training for m in frozen) and all(m.training for m in trained)  # frozen blocks keep their stats
