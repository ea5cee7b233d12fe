import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cifarlab import api, config
from cifarlab.config import ScratchConfig, TransferConfig
from cifarlab.errors import ConfigError


def test_defaults_then_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('epochs = 7\nlr = 0.05\nmodel = "cnn_small"\n')
    cfg = api.make_config("scratch", str(f), {"lr": 0.2}, ["batch_size=32"])
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.model) == (7, 0.2, 32, "cnn_small")


@pytest.mark.parametrize("recipe, given, meant", [
    ("scratch", "learning_rate", "lr"), ("scratch", "lr_rate", "lr"), ("scratch", "batchsize", "batch_size"),
    ("scratch", "bs", "batch_size"), ("scratch", "num_epochs", "epochs"), ("scratch", "n_epochs", "epochs"),
    ("scratch", "wd", "weight_decay"), ("scratch", "Weight-Decay-Rate", "weight_decay"),
    ("scratch", "momentun", "momentum"), ("scratch", "beta1", "momentum"), ("finetune", "pretrained", "weights"),
])
def test_an_unknown_key_suggests_the_key_it_means_first(recipe, given, meant):
    """Names other libraries use (and misspellings) are answered with our key, first, and the command listing every
    key, not the list of 80 keys."""
    with pytest.raises(ConfigError) as err:
        api.make_config(recipe, sets=[f"{given}=1"])
    message = str(err.value)
    assert message.startswith(f"unknown config key {given.replace('-', '_')!r}; did you mean: {meant}")
    assert message.endswith(f"(every key of {recipe}: cifarlab keys --recipe {recipe})")
    assert "valid keys" not in message and "eval_batch_size, lr, base_lr" not in message


def test_an_unknown_key_in_a_config_file_gets_the_same_suggestion(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("learning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"^unknown config key 'learning_rate'; did you mean: lr\? \(every key"):
        api.make_config("scratch", str(f))


def test_a_key_with_no_likely_meaning_points_to_the_list():
    with pytest.raises(ConfigError, match=r"^unknown config key 'xyzzy' \(every key of rotation: cifarlab keys "
                                          r"--recipe rotation\)$"):
        api.make_config("rotation", sets=["xyzzy=1"])


def test_the_help_of_image_size_states_the_sizing_rule():
    """`cifarlab keys` says what data.sizing does with mixed sizes: the median shorter side within its bounds."""
    import dataclasses

    import numpy as np

    from cifarlab.data import sizing

    text = {f.name: f.metadata["help"] for f in dataclasses.fields(ScratchConfig)}["image_size"]
    assert f"else the median shorter side clamped to {sizing.MIXED_MIN_SIDE}-{sizing.MIXED_MAX_SIDE} px" in text
    assert sizing.choose_side(np.array([[64, 64], [72, 90], [100, 80]])) == 72  # the median shorter side
    assert sizing.choose_side(np.array([[32, 32], [32, 32]])) == 32  # one square size: kept


def test_key_of_another_recipe_is_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'head_init'"):
        api.make_config("scratch", overrides={"head_init": "random"})
    assert api.make_config("linear", overrides={"head_init": "random"}).head_init == "random"
    # resolution is a key of every recipe
    assert all(api.make_config(r, overrides={"resolution": 64}).resolution == 64 for r in api.recipe_names())


@pytest.mark.parametrize("pair, message", [
    ("lr=-0.1", r"lr=-0.1 is out of range; allowed: >= 0.0"),
    ("base_lr=0", r"base_lr=0.0 is out of range; allowed: > 0.0"),
    ("train_fraction=1.5", r"train_fraction=1.5 is out of range; allowed: <= 1.0"),
    ("optimizer=lamb", r"optimizer='lamb' is not allowed; choose from: sgd, adam, adamw, muon"),
    ("epochs=three", r"epochs='three': expected int"),
    ("nesterov=maybe", r"nesterov='maybe': expected bool"),
    ("milestones=0.5,1.5", r"milestones=.*strictly between 0 and 1"),
])
def test_bad_values_name_the_key_and_the_allowed_values(pair, message):
    with pytest.raises(ConfigError, match=message):
        api.make_config("scratch", sets=[pair])


def test_contradictory_options():
    with pytest.raises(ConfigError, match="per_class=10 and train_fraction=0.5 both select"):
        api.make_config("scratch", sets=["per_class=10", "train_fraction=0.5"])
    with pytest.raises(ConfigError, match="resume=true and overwrite=true"):
        api.make_config("scratch", overrides={"resume": True, "overwrite": True})


def test_unknown_recipe_and_model_list_choices():
    with pytest.raises(ConfigError, match=r"unknown recipe 'scrach'; choose from: .*scratch"):
        api.make_config("scrach")
    with pytest.raises(ConfigError, match=r"unknown model 'resnet81'; choose from: alexnet, .*resnet18"):
        api.make_config("scratch", overrides={"model": "resnet81"})


def test_bad_toml_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        api.make_config(config_file=str(f))
    with pytest.raises(ConfigError, match="does not exist"):
        api.make_config(config_file=str(tmp_path / "missing.toml"))


def test_env_dataset_is_a_default_that_flags_override(monkeypatch):
    monkeypatch.setenv("CIFARLAB_DATASET", "synthetic")
    assert api.make_config("scratch").dataset == "synthetic"
    assert api.make_config("scratch", overrides={"dataset": "cifar100"}).dataset == "cifar100"


_KEYS = config.keys(TransferConfig)


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.sampled_from(_KEYS), st.text(min_size=1, max_size=12)), value=st.text(max_size=12))
def test_parser_never_crashes_and_accepts_only_valid_values(key, value):
    """Property: any key=value either yields a config that passes validation or raises ConfigError."""
    try:
        cfg = config.build(TransferConfig, config.parse_overrides([f"{key}={value}"]))
    except ConfigError:
        return
    config.validate(cfg)
    # an accepted key holds the value given, converted to its type
    assert getattr(cfg, key.strip().replace("-", "_")) == config._coerce(TransferConfig, key.strip().replace("-", "_"),
                                                                           value)


@settings(max_examples=200, deadline=None)
@given(lr=st.floats(allow_nan=True, allow_infinity=True), frac=st.floats(-2, 3))
def test_numeric_ranges_hold_for_every_accepted_config(lr, frac):
    try:
        cfg = config.build(ScratchConfig, {"lr": lr, "train_fraction": frac})
    except ConfigError:
        return
    # lr 0 is the documented "derive from base_lr" value; anything else is a real rate in (0, 100]
    assert 0 <= cfg.lr <= 100 and 0 < cfg.train_fraction <= 1
    assert cfg.lr == lr


def test_a_preset_sets_its_keys_under_anything_the_user_sets(tmp_path):
    from cifarlab.config import SCRATCH_PRESETS

    make_config = api.make_config
    fast = make_config("scratch", overrides={"preset": "fast"})
    for key, value in SCRATCH_PRESETS["fast"].items():
        assert getattr(fast, key) == value, key
    assert make_config("scratch").epochs == 30 and make_config("scratch").ema == 0.0  # the plain defaults
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "fast"\nema = 0.0\n')
    mixed = make_config("scratch", config_file=str(toml), sets=["epochs=4"])
    assert (mixed.epochs, mixed.ema, mixed.warmup_epochs) == (4, 0.0, SCRATCH_PRESETS["fast"]["warmup_epochs"])
    with pytest.raises(ConfigError, match="preset='turbo' is not allowed; choose from: default, fast"):
        make_config("scratch", overrides={"preset": "turbo"})


def test_a_warmup_the_user_sets_is_kept_uncapped_unless_the_cap_is_set_too(tmp_path):
    make_config = api.make_config
    assert make_config("scratch").warmup_max_fraction == 0.3  # the default warm-up adapts to a short run
    toml = tmp_path / "c.toml"
    toml.write_text("warmup_epochs = 2.0\n")
    assert make_config("scratch", config_file=str(toml)).warmup_max_fraction == 1.0
    assert make_config("supcon", sets=["warmup_min_steps=5"]).warmup_max_fraction == 1.0
    both = make_config("scratch", overrides={"warmup_epochs": 2.0}, sets=["warmup_max_fraction=0.5"])
    assert both.warmup_max_fraction == 0.5
    assert make_config("scratch", overrides={"preset": "fast"}).warmup_max_fraction == 0.3  # a preset is no user
