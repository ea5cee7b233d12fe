"""The transfer recipes end to end on synthetic data: the cached linear probe against the re-run one, the embedding
cache's key, discriminative learning rates, the partial regime's frozen blocks."""

import pytest
import torch

from cifarlab import api
from cifarlab.engine import checkpoint
from cifarlab.models import create_model
from cifarlab.recipes.linear_eval import Embedded
from cifarlab.recipes.transfer import optimizer_groups

from tests.conftest import trained_keys

BASE = {"dataset": "synthetic:4:60:20", "model": "cnn_small", "epochs": 3, "batch_size": 32, "lr": 0.05,
        "image_size": 16, "progress": "off", "deterministic": True, "weights": "none"}


def _linear(tmp_path, name, **kw):
    over = {**BASE, "out": str(tmp_path / "runs"), "data_root": str(tmp_path / "data"), "name": name, **kw}
    return api.train(api.make_config("linear", overrides=over))


def _head(run):
    return checkpoint.load(run.path / "checkpoints" / "best.pt")["model"]


def test_cached_probe_equals_the_probe_that_reruns_the_frozen_backbone(tmp_path):
    cached = _linear(tmp_path, "cached")
    rerun = _linear(tmp_path, "rerun", cache_embeddings=False)
    assert cached.summary["embeddings"] == "cached" and rerun.summary["embeddings"] == "recomputed each epoch"
    head = _head(cached)
    full = _head(rerun)
    # the cached run trains the head alone; the re-run one saves the whole model. Both standardise the features and
    # fold the scaler into the head at the end (a division by std, which magnifies float32 rounding of features that
    # were computed in batches of different sizes): equal to 1e-4
    for k, v in head.items():
        torch.testing.assert_close(v, full[f"head.{k}"], rtol=1e-3, atol=1e-4)
    assert cached.summary["test_acc"] == rerun.summary["test_acc"]


def test_embedding_cache_is_reused_only_for_the_same_images(tmp_path):
    first = _linear(tmp_path, "first")
    cache = tmp_path / "data" / "cache" / "embeddings"
    assert len(list(cache.glob("*.pt"))) == 1 and first.summary["embedding_cache"] == "miss"
    again = _linear(tmp_path, "again")
    assert len(list(cache.glob("*.pt"))) == 1 and again.summary["embedding_cache"] == "hit"  # read, not recomputed
    assert again.summary["test_acc"] == first.summary["test_acc"]
    # another split (seed) and another test subset need other images: new entries, same result as a cold cache
    other = _linear(tmp_path, "other", seed=1)
    subset = _linear(tmp_path, "subset", test_per_class=5)
    assert len(list(cache.glob("*.pt"))) == 3
    assert other.summary["embedding_cache"] == subset.summary["embedding_cache"] == "miss"
    assert subset.summary["num_test"] == 20
    for f in cache.glob("*.pt"):
        f.unlink()
    cold = _linear(tmp_path, "cold", seed=1)
    for k, v in _head(other).items():
        torch.testing.assert_close(v, _head(cold)[k])


def test_embedded_rows_refuses_images_that_were_not_embedded():
    e = Embedded(torch.tensor([2, 5, 9]), torch.zeros(3, 4), torch.zeros(1, 4))
    assert e.rows(torch.tensor([9, 2])).tolist() == [2, 0]
    with pytest.raises(ValueError, match="not embedded"):
        e.rows(torch.tensor([5, 7]))


def test_discriminative_learning_rates():
    cfg = api.make_config("finetune", overrides={"model": "resnet18", "weights": "none", "lr": 0.1,
                                                 "backbone_lr_factor": 0.1, "layer_decay": 0.5})
    model = create_model("resnet18", num_classes=10, weights="none")
    model.set_trainable("all")
    scale_of = {}
    for g in optimizer_groups(model, cfg):
        for p in g["params"]:
            scale_of[id(p)] = g["lr_scale"]
    assert scale_of[id(model.head.weight)] == 1.0
    blocks = model.block_names()
    for depth, block in enumerate(reversed(blocks)):
        want = 0.1 * 0.5 ** depth
        scales = {scale_of[id(p)] for _, p in model.block_parameters(block)}
        assert len(scales) == 1 and scales.pop() == pytest.approx(want), block
    assert len(scale_of) == sum(1 for p in model.parameters() if p.requires_grad)  # nothing left out


def _trained_weights(tmp_path):
    """A "pretrained" weights file: the trunk of a short scratch run (its BatchNorm statistics match its weights, as
    real pretrained weights' do; a fresh model's mean-0/variance-1 statistics would not)."""
    scratch = {k: v for k, v in BASE.items() if k != "weights"}
    source = api.train(api.make_config("scratch", overrides={**scratch, "out": str(tmp_path / "runs"), "name": "src",
                                                             "epochs": 1}))
    model = checkpoint.load(source.path / "checkpoints" / "best.pt")["model"]
    state = {k.removeprefix("trunk."): v for k, v in model.items() if k.startswith("trunk.")}
    torch.save(state, tmp_path / "w.pt")
    return state, tmp_path / "w.pt"


def test_partial_regime_trains_only_the_last_block_and_head(tmp_path):
    """From given weights (norm_stats=auto -> frozen): the last block's weights move; its BatchNorm statistics and
    everything in the frozen blocks stay as loaded."""
    state, weights = _trained_weights(tmp_path)
    run = api.train(api.make_config("partial", overrides={**BASE, "out": str(tmp_path / "runs"), "lr": 0.01,
                                                          "weights": str(weights), "augment": "flip"}))
    assert run.summary["trainable_blocks"] == ["block4"] and run.summary["norm_stats"] == "frozen"
    assert run.summary["started_from"] == f"file:{weights}"  # what the report files it under
    after = checkpoint.load(run.path / "checkpoints" / "best.pt")["model"]
    for k, v in state.items():
        moved = not torch.equal(after[f"trunk.{k}"], v)
        statistic = "running_" in k or "num_batches" in k
        assert moved == (k.startswith("3.") and not statistic), k  # block4 is trunk index 3


def test_partial_from_random_init_re_estimates_every_batchnorm(tmp_path, trunk_at_fit_start):
    """From random init (norm_stats=auto -> train) the frozen blocks' weights stay, but their BatchNorm statistics
    follow the data (a random-init frozen block would otherwise normalise with mean 0, variance 1); the last block's
    weights train. Recorded as started from random init (never filed as pretrained)."""
    run = api.train(api.make_config("partial", overrides={**BASE, "out": str(tmp_path / "runs"), "init": "random",
                                                          "epochs": 1}))
    before = trunk_at_fit_start
    assert run.summary["norm_stats"] == "train" and run.summary["started_from"] == "none"
    after = checkpoint.load(run.path / "checkpoints" / "best.pt")["model"]
    fresh = create_model("cnn_small", num_classes=0, weights="none").trunk.state_dict()
    for k, v in fresh.items():
        if "running_mean" in k:
            assert not torch.equal(after[f"trunk.{k}"], v), k  # every block's statistics moved off the init
    assert trained_keys(before)
    for k in trained_keys(before):
        moved = not torch.equal(after[f"trunk.{k}"], before[k])
        assert moved == k.startswith("3."), k  # only block4 (trunk index 3) trains


def test_flip_features_trains_on_both_flips_and_tests_on_their_mean(tmp_path):
    run = _linear(tmp_path, "flips", flip_features="on")
    assert run.summary["status"] == "complete" and run.summary["embeddings"] == "cached"
    assert run.summary["flip_features"] is True
    (entry,) = (tmp_path / "data" / "cache" / "embeddings").glob("*.pt")
    saved = checkpoint.load(entry)
    assert saved["train"].shape[1] == 2 and saved["test"].shape[1] == 2  # (N, image/mirror, D)
    assert not torch.equal(saved["train"][:, 0], saved["train"][:, 1])
    assert _linear(tmp_path, "default").summary["flip_features"] is False  # auto: on for CUDA only


def test_finetune_defaults_to_cropflip_and_a_probe_initialised_head(tmp_path, monkeypatch):
    """LP-FT: the head starts from a linear probe on the frozen backbone (selected on validation, test untouched),
    so fine-tuning starts from the probe's accuracy instead of from chance."""
    # a "pretrained" encoder: a short scratch run (its BatchNorm statistics match its weights, as real ones do)
    scratch = {k: v for k, v in BASE.items() if k != "weights"}
    source = api.train(api.make_config("scratch", overrides={**scratch, "out": str(tmp_path / "runs"), "name": "src"}))
    common = {**BASE, "out": str(tmp_path / "runs"), "init": str(source.path), "epochs": 1, "lr": 1e-6}
    import cifarlab.recipes.linear_eval as linear_eval
    import cifarlab.recipes.transfer as transfer

    real_fit, real_split, probes, splits = linear_eval.fit, transfer.embed_split, [], []

    def probe_fit(head, task, data, *args, **kwargs):
        probes.append((data.train_idx.tolist(), data.val_idx.tolist()))
        return real_fit(head, task, data, *args, **kwargs)

    def split(ctx, fn, with_test=True, pad=None):
        splits.append(with_test)
        return real_split(ctx, fn, with_test, pad)

    monkeypatch.setattr(linear_eval, "fit", probe_fit)
    monkeypatch.setattr(transfer, "embed_split", split)
    lp = api.train(api.make_config("finetune", overrides={**common, "name": "lpft"}))
    (train_rows, val_rows), = probes  # the one probe: selected on rows it did not train on, test never embedded
    assert train_rows and val_rows and not set(train_rows) & set(val_rows) and splits == [False]
    rand = api.train(api.make_config("finetune", overrides={**common, "name": "rand", "head_init": "random"}))
    assert lp.summary["augment"] == "cropflip" and lp.summary["head_init"] == "linear"
    assert (lp.path / "head_init_metrics.csv").is_file() and not (rand.path / "head_init_metrics.csv").exists()
    # with a learning rate too small to move anything, the accuracy is the starting head's: the probe's selected
    # validation accuracy (not a random head's)
    from cifarlab.engine.rundir import read_metrics

    probe_best = max(r["val_acc"] for r in read_metrics(lp.path / "head_init_metrics.csv"))
    assert lp.summary["best_val_acc"] == pytest.approx(probe_best, abs=1.5 / lp.summary["num_val"])
    assert probe_best > 0.9
    assert api.make_config("linear").augment == "auto"


def test_a_resolution_too_small_for_the_backbone_is_a_config_error(tmp_path):
    from cifarlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"resolution=32 is too small for alexnet .*224 is its native size"):
        api.train(api.make_config("linear", overrides={**BASE, "model": "alexnet", "resolution": 32,
                                                       "out": str(tmp_path)}))


def test_a_corrupt_init_file_is_called_corrupt_on_the_command_line(tmp_path, capsys):
    """`cifarlab train --recipe finetune --init FILE` with FILE random bytes: one line calling it corrupt, exit 2."""
    import os

    from cifarlab.cli import main

    bad = tmp_path / "init.pt"
    bad.write_bytes(os.urandom(4096))
    code = main(["train", "--recipe", "finetune", "--model", "cnn_small", "--dataset", "synthetic:4:10:5",
                 "--image-size", "16", "--epochs", "1", "--init", str(bad), "--out", str(tmp_path), "--progress",
                 "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[-1] == (f"error: not a readable checkpoint (corrupt or truncated): {bad}; save it "
                                    "again, or point to another file")
    assert "Traceback" not in err and "objects other than tensors" not in err
def test_an_imagenet_stem_at_32px_is_noted_with_its_trade_off_not_told_to_change(tmp_path):
    """A course arm runs torchvision's ResNet18 at 32 px on purpose: the run states the trade-off as a note and does
    not tell the user to abandon the network or the resolution the config sets."""
    from cifarlab.recipes.execute import execute

    lines: list[str] = []
    over = {**BASE, "model": "resnet18_imagenet", "resolution": 32, "epochs": 1, "max_steps_per_epoch": 1,
            "head_init": "random", "out": str(tmp_path / "runs"), "name": "stem32", "embed_samples": 0}
    execute(api.make_config("partial", overrides=over), log=lines.append)
    notes = [line for line in lines if "ImageNet stem" in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "1x1 maps" in notes[0], lines
    assert "Use resolution" not in notes[0] and "128 px or more" in notes[0]
