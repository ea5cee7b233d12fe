"""torchvision ImageNet backbones with their block boundaries.

``weights="default"`` downloads torchvision's DEFAULT weights (cached under torch's hub directory) and takes the
normalisation from the weights' own transforms; ``weights=FILE`` loads a torchvision state dict saved on disk.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cifarlab.data.augment import IMAGENET_MEAN, IMAGENET_STD
from cifarlab.models.backbone import MODELS, Backbone, DataConfig
from cifarlab.models.weights import apply_state_dict, load_file, torchvision_state_dict


def _load(net: nn.Module, arch: str, weights: str, classifier: str) -> tuple[DataConfig, str]:
    """Load ``weights`` into ``net``; returns what they expect and where they came from (``weights_source``)."""
    if weights == "none":
        return DataConfig(None, None, 224, cifar_stem=False), "none"
    if weights == "default":
        state, enum = torchvision_state_dict(arch)
        apply_state_dict(net, state, f"torchvision {enum}")
        tf = enum.transforms()
        return DataConfig(tuple(tf.mean), tuple(tf.std), int(tf.crop_size[0]), cifar_stem=False), \
            f"imagenet:torchvision {enum}"
    apply_state_dict(net, load_file(weights), weights, allow_missing=(classifier,))
    return DataConfig(IMAGENET_MEAN, IMAGENET_STD, 224, cifar_stem=False), f"file:{weights}"


def _blocks_split_at_pools(seq: nn.Sequential, prefix: str, names: list[str]) -> dict[str, tuple[str, ...]]:
    """Group a conv Sequential's parametrised layers into blocks that end at each max-pool."""
    blocks, current, i = {}, [], 0
    for idx, layer in enumerate(seq):
        if any(True for _ in layer.parameters()):
            current.append(f"{prefix}.{idx}")
        if isinstance(layer, nn.MaxPool2d) and current:
            blocks[names[i]] = tuple(current)
            current, i = [], i + 1
    if current:
        blocks[names[i]] = tuple(current)
    return blocks


def _tv_backbone(name: str, arch: str, classifier: str, cut: Callable[[nn.Module], int],
                 blocks: Callable[[nn.Module], dict[str, tuple[str, ...]]], partial_from: str, num_classes: int,
                 weights: str) -> Backbone:
    from torchvision.models import get_model  # here, not at import: torchvision pulls in torch._dynamo (2-4 s)

    net = get_model(arch, weights=None)
    data, source = _load(net, arch, weights, classifier)
    num_features = cut(net)  # drop the ImageNet classifier; returns the feature dimension
    model = Backbone(name, net, num_features, blocks(net), partial_from, data, num_classes)
    model.weights_source = source
    return model


def _cut_fc(net: nn.Module) -> int:
    n = net.fc.in_features
    net.fc = nn.Identity()
    return n


def _cut_last_linear(net: nn.Module) -> int:
    n = net.classifier[-1].in_features
    net.classifier[-1] = nn.Identity()
    return n


def _cut_classifier(net: nn.Module) -> int:
    n = net.classifier[-1].in_features
    net.classifier = nn.Identity()
    return n


def _resnet_blocks(net: nn.Module) -> dict[str, tuple[str, ...]]:
    return {"stem": ("conv1", "bn1"), **{f"layer{i}": (f"layer{i}",) for i in range(1, 5)}}


@MODELS.register()
def resnet18_imagenet(num_classes: int = 0, weights: str = "default") -> Backbone:
    """torchvision ResNet18 (ImageNet stem); partial unfreezes layer4."""
    return _tv_backbone("resnet18_imagenet", "resnet18", "fc.", _cut_fc, _resnet_blocks, "layer4", num_classes,
                        weights)


@MODELS.register()
def resnet50(num_classes: int = 0, weights: str = "default") -> Backbone:
    """torchvision ResNet50; partial unfreezes layer4."""
    return _tv_backbone("resnet50", "resnet50", "fc.", _cut_fc, _resnet_blocks, "layer4", num_classes, weights)


@MODELS.register()
def vgg16(num_classes: int = 0, weights: str = "default") -> Backbone:
    """torchvision VGG16 (fc6 and fc7 kept, 4096 features); partial unfreezes conv5 and the fc layers after it."""

    def blocks(net: nn.Module) -> dict[str, tuple[str, ...]]:
        convs = _blocks_split_at_pools(net.features, "features", [f"conv{i}" for i in range(1, 6)])
        return {**convs, "fc": ("classifier",)}

    return _tv_backbone("vgg16", "vgg16", "classifier.6", _cut_last_linear, blocks, "conv5", num_classes, weights)


@MODELS.register()
def alexnet(num_classes: int = 0, weights: str = "default") -> Backbone:
    """torchvision AlexNet (fc6 and fc7 kept, 4096 features); partial unfreezes conv4, conv5 and the fc layers."""

    def blocks(net: nn.Module) -> dict[str, tuple[str, ...]]:
        convs = [f"features.{i}" for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
        return {**{f"conv{i}": (c,) for i, c in enumerate(convs, 1)}, "fc": ("classifier",)}

    return _tv_backbone("alexnet", "alexnet", "classifier.6", _cut_last_linear, blocks, "conv4", num_classes,
                        weights)


def _efficientnet_blocks(net: nn.Module) -> dict[str, tuple[str, ...]]:
    n = len(net.features)  # stem, 7 MBConv stages, head conv
    return {"stem": ("features.0",), **{f"stage{i}": (f"features.{i}",) for i in range(1, n - 1)},
            "head_conv": (f"features.{n - 1}",)}


@MODELS.register()
def efficientnet_b0(num_classes: int = 0, weights: str = "default") -> Backbone:
    """torchvision EfficientNet-B0 (1280 features); partial unfreezes the last stage and the head conv."""
    return _tv_backbone("efficientnet_b0", "efficientnet_b0", "classifier.", _cut_classifier, _efficientnet_blocks,
                        "stage7", num_classes, weights)


@MODELS.register()
def convnext_tiny(num_classes: int = 0, weights: str = "default") -> Backbone:
    """torchvision ConvNeXt-Tiny (768 features); partial unfreezes the last stage (with its downsampling) and
    the final norm."""

    def blocks(net: nn.Module) -> dict[str, tuple[str, ...]]:
        return {"stem": ("features.0",), "stage1": ("features.1",), "stage2": ("features.2", "features.3"),
                "stage3": ("features.4", "features.5"), "stage4": ("features.6", "features.7"),
                "norm": ("classifier.0",)}

    return _tv_backbone("convnext_tiny", "convnext_tiny", "classifier.2", _cut_last_linear, blocks, "stage4",
                        num_classes, weights)
