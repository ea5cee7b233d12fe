"""The fit loop: the learning rate follows the batch, warm-up has a floor, divergence is caught and told apart from
BatchNorm's lagging running statistics."""

import json
import math

import pytest
import torch
from torch import nn

from cifarlab import api
from cifarlab.data import Augment
from cifarlab.engine.health import HealthRule, batch_statistics_loss, check_health
from cifarlab.engine.loop import FitData, warmup_steps
from cifarlab.engine.optim import peak_lr
from cifarlab.errors import TrainingDiverged
from cifarlab.objectives import Classification
from cifarlab.recipes.context import fit_spec

TINY = {"dataset": "synthetic:10:60:30", "model": "cnn_small", "epochs": 2, "image_size": 16, "embed_samples": 50,
        "progress": "off"}


def _cfg(tmp_path, recipe="scratch", **kw):
    return api.make_config(recipe, overrides={**TINY, "out": str(tmp_path / "runs"), **kw})


def FitSpec(**changes):  # noqa: N802  (the scratch recipe's spec with these keys changed)
    return fit_spec(api.make_config("scratch"), **changes)


@pytest.mark.parametrize("batch, rule, expected", [(512, "capped", 0.4), (64, "capped", 0.05), (2048, "capped", 0.4),
                                                   (2048, "linear", 1.6), (128, "sqrt", 0.2), (2048, "sqrt", 0.8)])
def test_default_lr_follows_the_batch_size(tmp_path, batch, rule, expected):
    cfg = _cfg(tmp_path, batch_size=batch, lr_scaling=rule)
    lr, how = peak_lr(fit_spec(cfg), batch)
    assert lr == pytest.approx(expected) and f"{rule} to batch {batch}" in how


def test_an_explicit_lr_is_used_exactly(tmp_path):
    spec = fit_spec(_cfg(tmp_path, batch_size=32, lr=0.3))
    assert peak_lr(spec, 32) == (0.3, "set by lr")


def test_the_run_uses_and_records_the_effective_lr(tmp_path):
    result = api.train(_cfg(tmp_path, batch_size=32, epochs=1))
    s = result.summary
    assert s["peak_lr"] == pytest.approx(0.4 * 32 / 512) and s["batch_size"] == 32
    assert "capped to batch 32" in s["lr_rule"]
    rows = (result.path / "metrics.csv").read_text().splitlines()
    lrs = [float(r.split(",")[1]) for r in rows[1:]]
    assert max(lrs) <= s["peak_lr"] + 1e-9


def test_the_lr_follows_the_batch_actually_used_when_the_subset_is_smaller(tmp_path):
    # 6 images per class, 1 per class held out: 50 training images, so a batch of 512 becomes 50, and so does the rate
    s = api.train(_cfg(tmp_path, batch_size=512, epochs=1, per_class=6, val_fraction=0.2)).summary
    assert s["batch_size"] == 50 and s["peak_lr"] == pytest.approx(0.4 * 50 / 512)


def test_warmup_of_the_derived_rate_lasts_a_minimum_number_of_steps():
    spec = FitSpec(epochs=3, batch_size=64, lr=0.0, base_lr=0.1, ref_batch=64, warmup_epochs=1.0,
                   warmup_min_steps=30, warmup_max_fraction=1.0)
    assert warmup_steps(spec, steps_per_epoch=3) == 30  # uncapped, a 9-step run stays in its warm-up
    assert warmup_steps(spec, steps_per_epoch=10) == 30  # the floor over 1 epoch = 10 steps
    assert warmup_steps(spec, steps_per_epoch=100) == 100  # 1 epoch is longer than the floor
    assert warmup_steps(FitSpec(epochs=3, batch_size=64, lr=0.0, base_lr=0.1, warmup_epochs=0.0,
                                warmup_min_steps=30), 10) == 0


def test_an_explicit_lr_warms_up_for_exactly_the_epochs_asked():
    spec = FitSpec(epochs=3, batch_size=64, lr=0.1, warmup_epochs=1.0, warmup_min_steps=30, warmup_max_fraction=1.0)
    assert warmup_steps(spec, steps_per_epoch=3) == 3  # no floor: the rate given is the rate used
    assert warmup_steps(FitSpec(epochs=3, batch_size=64, lr=0.001, warmup_epochs=0.0, warmup_min_steps=30), 3) == 0


def test_the_default_warmup_is_capped_at_a_fraction_of_a_short_run_and_untouched_in_a_long_one():
    spec = FitSpec(epochs=3, batch_size=64, lr=0.0, base_lr=0.1, ref_batch=64, warmup_epochs=1.0,
                   warmup_min_steps=30)  # the defaults' cap, warmup_max_fraction 0.3
    assert spec.warmup_max_fraction == 0.3
    assert warmup_steps(spec, steps_per_epoch=3) == 2  # 9 steps: 30 asked, floor(0.3 x 9) used
    assert warmup_steps(FitSpec(epochs=30, warmup_epochs=1.0), steps_per_epoch=100) == 100  # 3% of the run: as asked


def test_a_run_shorter_than_its_warmup_caps_it_says_so_first_and_reaches_its_peak_rate(tmp_path, capsys):
    # 540 training images at batch 512: 1 step per epoch, 10 steps; the 30-step floor would hold the rate at a third
    result = api.train(_cfg(tmp_path, batch_size=512, epochs=10))
    s = result.summary
    assert s["warmup_steps"] == 3
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("resolved:") and "warm-up 3 steps (capped from 30: the run has 10 steps" in first
    lrs = [float(r.split(",")[1]) for r in (result.path / "metrics.csv").read_text().splitlines()[1:]]
    assert max(lrs) == pytest.approx(s["peak_lr"])  # the peak is reached (uncapped: 10/30 of it at most)


def test_an_explicit_warmup_longer_than_the_run_is_kept_and_warned_about(tmp_path, capsys):
    cfg = _cfg(tmp_path, batch_size=512, epochs=4, warmup_epochs=6.0)
    assert cfg.warmup_max_fraction == 1.0  # set by the user: kept as set
    s = api.train(cfg).summary
    assert s["warmup_steps"] == 30  # max(6 epochs x 1 step, the 30-step floor)
    first = capsys.readouterr().err.splitlines()[0]
    assert "warm-up 30 steps (WARNING: longer than the run's 4 steps" in first


def test_an_absurd_lr_ends_the_run_as_diverged_with_the_cause_and_a_fix(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"lr 50 at batch 16 is too high.*try --lr 5"):
        api.train(_cfg(tmp_path, batch_size=16, lr=50.0, name="boom"))
    s = json.loads((tmp_path / "runs" / "boom" / "summary.json").read_text())
    assert s["status"] == "diverged" and s["error"].startswith("diverged:") and "\n" not in s["error"]
    assert "test_acc" not in s


class _TinyBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _val_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return FitData(x=x, y=y, train_idx=torch.arange(n // 2), val_idx=torch.arange(n // 2, n))


def _row(model, task, data):
    from cifarlab.engine.loop import evaluate

    val = evaluate(model, task, data.x[data.val_idx], data.y[data.val_idx], 16, "off")
    return {"epoch": 1, "train_loss": 2.3, "val_loss": val["loss"], "val_acc": val["acc"]}


def test_lagging_batchnorm_statistics_are_told_apart_from_divergence():
    torch.manual_seed(0)
    model, data = _TinyBN(), _val_data()
    task = Classification(Augment("none", (0.5,) * 3, (0.25,) * 3))
    model.bn.running_mean.fill_(-50.0)  # running statistics far from the weights' activations: eval mode blows up
    model.bn.running_var.fill_(1e-4)
    before = {k: v.clone() for k, v in model.bn.named_buffers()}
    row = _row(model, task, data)
    rule = HealthRule(math.log(10), 10.0, 2.0, 0.1, 16)
    assert row["val_loss"] > rule.limit  # eval mode looks diverged
    health = check_health(row, model, task, data, rule, 16, "off")
    assert health["bn_lag"] and health["val_loss_batch_stats"] < rule.limit
    for k, v in model.bn.named_buffers():  # the diagnosis left the running statistics as they were
        assert torch.equal(v, before[k]), k


def test_exploded_weights_are_divergence_even_with_batch_statistics():
    torch.manual_seed(0)
    model, data = _TinyBN(), _val_data()
    task = Classification(Augment("none", (0.5,) * 3, (0.25,) * 3))
    with torch.no_grad():
        model.fc.weight.mul_(1e6)  # what a blown-up learning rate leaves behind
    row = _row(model, task, data)
    with pytest.raises(TrainingDiverged, match=r"validation loss .* with batch statistics.*try --lr 0.01"):
        check_health(row, model, task, data, HealthRule(math.log(10), 10.0, 2.0, 0.1, 16), 16, "off")


def test_batch_statistics_loss_is_finite_and_restores_the_training_mode():
    model, data = _TinyBN(), _val_data()
    model.eval()
    task = Classification(Augment("none", (0.5,) * 3, (0.25,) * 3))
    loss = batch_statistics_loss(model, task, data.x, data.y, 16, "off")
    assert math.isfinite(loss) and not model.training
    model.train()  # and from training mode back to training mode (the loop's case)
    batch_statistics_loss(model, task, data.x, data.y, 16, "off")
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.heavy
@pytest.mark.parametrize("batch", [32, 64, 128, 512])  # above 512 the capped rule keeps 512's rate
def test_resnet18_from_scratch_is_stable_at_any_batch_size_with_the_defaults(tmp_path, batch):
    """Product defaults, only the batch size set, trained past the warm-up: 60 steps, 42 of them at and after the
    default peak rate (the 30-step warm-up floor capped at 0.3 of the run), without divergence; the validation loss
    ends within a small factor of chance (ln 10)."""
    cfg = api.make_config("scratch", overrides={
        "dataset": f"synthetic:10:{23 * batch}:10", "image_size": 8, "model": "resnet18", "batch_size": batch,
        "epochs": 3, "max_steps_per_epoch": 20, "embed_samples": 20, "progress": "off",
        "out": str(tmp_path / "runs"), "val_fraction": 0.1})
    assert cfg.lr == 0  # the default: derived from base_lr and the batch
    result = api.train(cfg)
    from cifarlab.engine.rundir import read_metrics

    rows = read_metrics(result.path / "metrics.csv")
    s = result.summary
    assert s["status"] == "complete" and s["warmup_steps"] == 18 and 3 * 20 > 18
    assert s["peak_lr"] == pytest.approx(0.4 * min(batch, 512) / 512)
    assert rows[-1]["val_loss"] < 3 * math.log(10), rows


def _trajectory_and_ema(decay, tmp_path, name):
    """A 1-epoch scratch run with weight EMA at ``decay``; returns the parameters after every optimizer step (a
    hook registered before the loop's own) and the weights the run ended with."""
    import cifarlab.engine.fit as fit_mod

    steps: list[dict[str, torch.Tensor]] = []
    original = fit_mod.weight_average

    def recording(model, optimizer, d, warmup):
        optimizer.register_step_post_hook(lambda *_: steps.append(
            {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return original(model, optimizer, d, warmup)

    fit_mod.weight_average = recording
    try:
        result = api.train(_cfg(tmp_path, epochs=1, batch_size=16, ema=decay, name=name, deterministic=True))
    finally:
        fit_mod.weight_average = original
    from cifarlab.engine import checkpoint

    return steps, checkpoint.load(result.path / "checkpoints" / "best.pt")["model"], result


def test_weight_ema_is_the_exponential_average_of_the_step_trajectory(tmp_path):
    """The weights selected and saved as best are avg_1 = w_1, avg_t = d_t avg_(t-1) + (1 - d_t) w_t with
    d_t = min(decay, t / (t + 9)) over the parameters (and BatchNorm buffers) after every optimizer step, not the
    last step's weights."""
    decay = 0.75  # reached at step 27: the run covers the warm-up and the steady decay
    steps, best, result = _trajectory_and_ema(decay, tmp_path, "ema")
    assert len(steps) > 30, len(steps)
    expected = {k: v.float().clone() for k, v in steps[0].items()}
    for t, w in enumerate(steps[1:], start=2):
        d = min(decay, t / (t + 9))
        for k, v in w.items():
            if v.is_floating_point():
                expected[k].mul_(d).add_(v.float(), alpha=1 - d)
    for k, v in best.items():
        if v.is_floating_point():
            assert torch.allclose(v.float(), expected[k], rtol=1e-4, atol=1e-6), k
    assert not all(torch.equal(best[k], steps[-1][k]) for k in best if best[k].is_floating_point())
    assert result.summary["status"] == "complete"


def test_weight_ema_forgets_the_first_steps_even_when_its_horizon_is_the_run():
    """A decay close to 1 over a short run: the warm-up keeps the starting weights' share in the average small
    (without it, 0.998 over 1,320 steps kept 0.998^1319 = 7% of the first step's weights)."""
    from cifarlab.engine.averaging import WeightAverage

    model = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ema = WeightAverage(model, opt, decay=0.998)
    for t in range(1320):  # the weights are 0 after the first step and 1 after every later one
        with torch.no_grad():
            model.weight.fill_(0.0 if t == 0 else 1.0)
        model.weight.grad = torch.zeros_like(model.weight)
        opt.step()  # zero gradient: the weights stay as set; the hook averages them
    assert int(ema.n_averaged) == 1320
    share_of_first = 1.0 - float(ema.module.weight.mean())
    assert abs(share_of_first) < 1e-3  # a fixed 0.998 gives 0.07
    assert ema.decay_at(1320) < 0.998 and ema.decay_at(100_000) == 0.998


def test_weight_ema_resumed_from_its_state_continues_the_decay_warm_up():
    """A resumed run's EMA goes on from update n (its decay d_(n+1)), not from a fresh copy of the weights."""
    from cifarlab.engine.averaging import WeightAverage

    def run(ema, model, opt, values):
        for v in values:
            with torch.no_grad():
                model.weight.fill_(v)
            model.weight.grad = torch.zeros_like(model.weight)
            opt.step()

    model = torch.nn.Linear(3, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    whole = WeightAverage(model, opt, decay=0.9)
    run(whole, model, opt, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    whole.remove_hook()
    first = WeightAverage(model, opt, decay=0.9)
    run(first, model, opt, [1.0, 2.0, 3.0])
    state = first.state_dict()
    first.remove_hook()
    resumed = WeightAverage(model, opt, decay=0.9)
    resumed.load_state_dict(state)
    assert resumed.updates == 3
    run(resumed, model, opt, [4.0, 5.0, 6.0])
    assert torch.allclose(resumed.module.weight, whole.module.weight)


def test_weight_ema_off_keeps_the_last_step_weights(tmp_path):
    steps, best, _ = _trajectory_and_ema(0.0, tmp_path, "plain")
    for k, v in best.items():
        assert torch.equal(v, steps[-1][k]), k
