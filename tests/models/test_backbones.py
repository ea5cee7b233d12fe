"""Registry-wide interface checks, freezing (BatchNorm included), partial blocks, parameter counts."""

import pytest
import torch

from cifarlab.models import MODELS, create_model

ALL = MODELS.names() + ["timm:resnet18"]


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return {name: create_model(name, num_classes=0, weights="none") for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_shared_interface(built, name):
    m = built[name]
    m.eval()
    size = 32 if m.data_config.cifar_stem else 64
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, m.num_features)
        assert torch.equal(m.forward_head(f, pre_logits=True), f)
        m.reset_classifier(7)
        assert m(x).shape == (2, 7)
        m.reset_classifier(0)
    names = m.block_names()
    assert len(names) >= 3 and m.partial_from in names
    owned = [n for n, _ in m.trunk.named_parameters()]
    assert sum(len(list(m.block_parameters(b))) for b in names) == len(owned)  # each param in exactly one block


@pytest.mark.parametrize("name", ALL)
def test_partial_unfreezes_exactly_the_named_blocks(built, name):
    m = built[name]
    m.reset_classifier(10)
    m.set_trainable(m.partial_blocks())
    trainable = {n for n, p in m.trunk.named_parameters() if p.requires_grad}
    expected = {n for b in m.partial_blocks() for n, _ in m.block_parameters(b)}
    assert trainable == expected and trainable
    assert all(p.requires_grad for p in m.head.parameters())
    m.set_trainable("all")
    m.reset_classifier(0)


EXPECTED_PARTIAL = {"resnet18_imagenet": ["layer4"], "vgg16": ["conv5", "fc"], "alexnet": ["conv4", "conv5", "fc"],
                    "efficientnet_b0": ["stage7", "head_conv"], "efficientnet_lite0": ["blocks.6"],
                    "resnet18": ["layer4"], "convnext_tiny": ["stage4", "norm"]}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARTIAL))
def test_partial_blocks_per_backbone(built, name):
    assert built[name].partial_blocks() == EXPECTED_PARTIAL[name]


def test_lite0_last_group_holds_the_head_conv(built):
    params = [n for n, _ in built["efficientnet_lite0"].block_parameters("blocks.6")]
    assert any(n.startswith("conv_head") for n in params) and any(n.startswith("bn2") for n in params)


def test_trainable_counts_resnet18_linear_probe():
    m = create_model("resnet18_imagenet", num_classes=10, weights="none")
    m.set_trainable("none")
    assert m.param_counts() == {"params_total": 11_181_642, "params_trainable": 5_130, "params_frozen": 11_176_512}


def test_frozen_blocks_do_not_move_parameters_or_batchnorm_statistics():
    torch.manual_seed(0)
    m = create_model("resnet18", num_classes=10)
    m.set_trainable(m.partial_blocks())
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(m(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = m.state_dict()
    for k in before:
        block_name = k.split(".")[1] if k.startswith("trunk.") else "head"
        moved = not torch.equal(before[k], after[k])
        if block_name in ("layer4", "head"):
            if k.endswith(("weight", "running_mean")):
                assert moved, f"{k} should train"
        elif block_name in ("conv1", "bn1", "layer1", "layer2", "layer3"):
            assert not moved, f"{k} is frozen but changed"
    assert not m.trunk.layer1[0].bn1.training and m.trunk.layer4[0].bn1.training


def test_unknown_block_is_a_clear_error(built):
    from cifarlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown block\(s\) \['layer9'\] of resnet18; choose from: stem"):
        built["resnet18"].set_trainable(["layer9"])
