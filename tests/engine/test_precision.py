"""Mixed precision by hardware: amp=auto resolves by the card's compute capability; fp16 trains with a loss scaler
that skips inf steps (counted, never divergence) and is checkpointed so a resumed run is bit-exact."""

import json

import pytest
import torch

from cifarlab import api
from cifarlab.engine import checkpoint
from cifarlab.engine.device import autocast, grad_scaler, resolve_amp
from cifarlab.engine.loop import train_step
from cifarlab.errors import ConfigError

TINY = {"dataset": "synthetic:4:64:16", "model": "cnn_small", "image_size": 16, "batch_size": 16, "lr": 0.05,
        "embed_samples": 10, "progress": "off", "num_threads": 1, "deterministic": True}


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"),
                                                  ((9, 0), "bf16")])
def test_auto_follows_the_cuda_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    amp, why = resolve_amp("auto", torch.device("cuda"))
    assert amp == expected and f"{capability[0]}.{capability[1]}" in why


@pytest.mark.parametrize("name", ["cpu", "mps"])
def test_auto_is_off_on_cpu_and_mps(name):
    assert resolve_amp("auto", torch.device(name))[0] == "off"


def test_explicit_choices_are_kept_and_fp16_has_a_scaler_bf16_none():
    cpu = torch.device("cpu")
    assert resolve_amp("fp16", cpu)[0] == "fp16" and resolve_amp("bf16", cpu)[0] == "bf16"
    assert resolve_amp("off", torch.device("cuda"))[0] == "off"
    assert isinstance(grad_scaler(cpu, "fp16"), torch.amp.GradScaler)
    assert grad_scaler(cpu, "bf16") is None and grad_scaler(cpu, "off") is None
    with autocast(cpu, "fp16"):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float16


def test_fp16_refused_in_one_line_where_the_cpu_cannot_autocast_it(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(ConfigError, match="cannot autocast fp16 on the CPU"):
        resolve_amp("fp16", torch.device("cpu"))


class Overflow:
    """A task whose loss overflows to inf (as an fp16 forward pass can)."""

    def __init__(self, task):
        self.task = task

    def train_step(self, model, x, y, gen):
        loss, c, k = self.task.train_step(model, x, y, gen)
        return loss * float("inf"), c, k


@pytest.mark.parametrize("where", ["gradient", "loss"])
def test_an_inf_gradient_is_skipped_by_the_scaler_and_counted_not_diverged(tmp_path, monkeypatch, where):
    """An inf gradient (a finite loss), or an fp16 overflow of the loss itself: the step is skipped, counted and the
    run completes (without the scaler's skip, an inf loss would end the run as diverged)."""
    from cifarlab.engine import loop

    calls = {"n": 0}

    def inf_on_third_step(model, task, optimizer, x, y, gen, amp, scaler=None):
        calls["n"] += 1
        if calls["n"] != 3:
            return train_step(model, task, optimizer, x, y, gen, amp, scaler)
        params = [p for p in model.parameters() if p.requires_grad]
        hook = params[0].register_hook(lambda g: torch.full_like(g, float("inf")) if where == "gradient" else g)
        if where == "loss":
            task = Overflow(task)
        before = [p.detach().clone() for p in params]
        try:
            out = train_step(model, task, optimizer, x, y, gen, amp, scaler)
        finally:
            hook.remove()
        assert all(torch.equal(a, p) for a, p in zip(before, params))  # the step changed no weight
        return out

    monkeypatch.setattr(loop, "train_step", inf_on_third_step)
    cfg = api.make_config("scratch", overrides={**TINY, "epochs": 1, "amp": "fp16", "out": str(tmp_path)})
    result = api.train(cfg)
    assert calls["n"] >= 3
    assert result.summary["amp_skipped_steps"] == 1
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["status"] != "diverged" and summary["amp_skipped_steps"] == 1


def test_fp16_interrupted_and_resumed_equals_an_uninterrupted_run_bit_exact(tmp_path, monkeypatch):
    from cifarlab.engine import resume
    from cifarlab.recipes.execute import execute

    keys = {**TINY, "epochs": 3, "amp": "fp16", "out": str(tmp_path)}
    whole = execute(api.make_config("scratch", overrides={**keys, "name": "whole"}))
    assert json.loads((whole.path / "config.json").read_text())["resolved"]["amp"] == "fp16"
    save = resume.save

    def save_then_interrupt(run, model, updater, ema, state, is_best):
        save(run, model, updater, ema, state, is_best)
        if state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        execute(api.make_config("scratch", overrides={**keys, "name": "split"}))
    monkeypatch.undo()
    execute(api.make_config("scratch", overrides={**keys, "name": "split", "resume": True}))
    a = checkpoint.load(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = checkpoint.load(tmp_path / "split" / "checkpoints" / "last.pt")
    # the growth tracker counts steps since the last skip: a scaler not restored would restart it at 0
    assert a["scaler"]["_growth_tracker"] > a["history"][0]["epoch"] and a["scaler"] == b["scaler"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_cli_train_with_amp_fp16_completes_on_the_cpu_and_records_it(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cifarlab.cli", "train", "--recipe", "scratch", "--dataset",
                          "synthetic:4:32:16", "--model", "cnn_small", "--image-size", "16", "--set", "amp=fp16",
                          "--epochs", "1", "--progress", "off", "--set", "embed_samples=10", "--out", str(tmp_path),
                          "--name", "r"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "amp fp16 (asked (amp=fp16))" in out.stderr.splitlines()[0] + out.stdout
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["resolved"]["amp"] == "fp16" and config["resolved"]["amp_reason"] == "asked (amp=fp16)"
