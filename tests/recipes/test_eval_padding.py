"""Every recipe gives the same results with its evaluation batches padded to power-of-two shapes (what CUDA runs do,
``engine.embed.pads``) as without: padding is forced on here, on the CPU."""

import pytest

from cifarlab import api
from cifarlab.engine import embed as embedding

BASE = {"dataset": "synthetic:4:60:20", "model": "cnn_small", "epochs": 2, "batch_size": 32, "lr": 0.05,
        "image_size": 16, "progress": "off", "deterministic": True, "eval_batch_size": 20, "embed_samples": 40}
RECIPES = {
    "scratch": {"tta": "on"},
    "linear": {"weights": "none", "flip_features": "on"},
    # random init: BatchNorm on batch statistics, so the LP-FT probe must not be padded (its result would change)
    "finetune": {"weights": "none", "tta": "on"},
    "rotation": {},
    "supcon": {"linear_epochs": 3},
}
# the summary figures each recipe's evaluation produces
FIGURES = {"scratch": ("test_acc", "test_acc_tta", "best_val_acc"), "linear": ("test_acc", "best_val_acc"),
           "finetune": ("test_acc", "test_acc_tta", "best_val_acc"),
           "rotation": ("rotation_test_acc", "best_val_acc", "best_val_loss"),
           "supcon": ("linear_acc", "knn_acc", "best_val_acc")}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_padded_evaluation_changes_no_result(tmp_path, monkeypatch, recipe):
    def run(name: str) -> dict:  # own data root each: the linear probe's embedding cache must not be shared
        over = {**BASE, **RECIPES[recipe], "out": str(tmp_path / "runs"), "data_root": str(tmp_path / name),
                "name": name}
        return api.train(api.make_config(recipe, overrides=over)).summary

    plain = run("plain")
    calls = []
    original = embedding.Padded.__call__

    def counting(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(embedding, "pads", lambda device: True)
    monkeypatch.setattr(embedding.Padded, "__call__", counting)
    padded = run("padded")
    assert any(n & (n - 1) for n in calls), "no partial batch was padded: the test does not exercise padding"
    for key in FIGURES[recipe]:
        # one image's prediction may flip on a near-tie (a batch's size can change the last bits of a convolution)
        assert padded[key] == pytest.approx(plain[key], abs=0.026), key


def test_the_lp_ft_probe_on_batch_statistics_is_never_padded(tmp_path, monkeypatch):
    """From random init the LP-FT probe embeds with every BatchNorm on batch statistics: padding rows would change
    those statistics, so its embedding passes ``pad=False`` even where evaluation pads (forced on here)."""
    import cifarlab.recipes.linear_eval as linear_eval

    seen = []
    real = linear_eval.embed

    def recording(fn, x, *args, **kwargs):
        seen.append(kwargs.get("pad"))
        return real(fn, x, *args, **kwargs)

    monkeypatch.setattr(embedding, "pads", lambda device: True)
    monkeypatch.setattr(linear_eval, "embed", recording)
    over = {**BASE, **RECIPES["finetune"], "out": str(tmp_path / "runs"), "epochs": 1}
    s = api.train(api.make_config("finetune", overrides=over)).summary
    assert s["norm_stats"] == "train" and s["head_init"] == "linear"
    assert seen and all(p is False for p in seen), seen
