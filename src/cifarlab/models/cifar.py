"""Models for 32x32 inputs: ResNet18/34 with the CIFAR stem, and a small CNN for tests and demos."""

from __future__ import annotations

from torch import nn

from cifarlab.models.backbone import MODELS, Backbone, DataConfig
from cifarlab.models.weights import apply_state_dict, load_file

CIFAR_DATA = DataConfig(mean=None, std=None, input_size=32, cifar_stem=True)
RESNET_BLOCKS = {"stem": ("conv1", "bn1"), "layer1": ("layer1",), "layer2": ("layer2",), "layer3": ("layer3",),
                 "layer4": ("layer4",)}


def _cifar_resnet(name: str, num_classes: int, weights: str) -> Backbone:
    """torchvision's ResNet with the CIFAR stem: 3x3 stride-1 first conv and no max-pool, for 32x32 inputs."""
    from torchvision import models  # here, not at import: torchvision pulls in torch._dynamo (2-4 s)

    net = getattr(models, name)(weights=None)  # the same name in torchvision
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    model = Backbone(name, net, 512, RESNET_BLOCKS, "layer4", CIFAR_DATA, num_classes)
    _load_file(model, weights)
    return model


def _load_file(model: Backbone, weights: str) -> None:
    """A state-dict file into the trunk (``default`` and ``none`` are random init: no pretrained weights exist for
    the CIFAR stem)."""
    if weights not in ("none", "default"):
        apply_state_dict(model.trunk, load_file(weights), weights)
        model.weights_source = f"file:{weights}"


@MODELS.register()
def resnet18(num_classes: int = 0, weights: str = "none") -> Backbone:
    """ResNet18, CIFAR stem (11.2M parameters); no pretrained weights exist for this stem."""
    return _cifar_resnet("resnet18", num_classes, weights)


@MODELS.register()
def resnet34(num_classes: int = 0, weights: str = "none") -> Backbone:
    """ResNet34, CIFAR stem."""
    return _cifar_resnet("resnet34", num_classes, weights)


def _conv_norm(cin: int, cout: int, group_norm: bool) -> nn.Sequential:
    norm = nn.GroupNorm(8, cout) if group_norm else nn.BatchNorm2d(cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm, nn.ReLU(inplace=True))


def _cnn_small(name: str, num_classes: int, weights: str, group_norm: bool) -> Backbone:
    widths = (32, 64, 128, 128)
    layers, cin = {}, 3
    for i, w in enumerate(widths, 1):
        pool = nn.MaxPool2d(2) if i < len(widths) else nn.Identity()
        layers[f"block{i}"] = nn.Sequential(_conv_norm(cin, w, group_norm), pool)
        cin = w
    trunk = nn.Sequential(*layers.values(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    blocks = {name: (str(i),) for i, name in enumerate(layers)}
    model = Backbone(name, trunk, cin, blocks, "block4", CIFAR_DATA, num_classes)
    _load_file(model, weights)
    return model


@MODELS.register()
def cnn_small(num_classes: int = 0, weights: str = "none") -> Backbone:
    """A 4-block CNN (32-64-128-128 channels, ~0.3M parameters) that trains in seconds on a CPU."""
    return _cnn_small("cnn_small", num_classes, weights, group_norm=False)


@MODELS.register()
def cnn_small_gn(num_classes: int = 0, weights: str = "none") -> Backbone:
    """cnn_small with GroupNorm: independent of the batch, so data-parallel training equals single-process
    training on the global batch without SyncBatchNorm (and small per-GPU batches are safe)."""
    return _cnn_small("cnn_small_gn", num_classes, weights, group_norm=True)
