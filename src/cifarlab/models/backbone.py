"""The one interface every model shares, and the model registry.

A :class:`Backbone` is a trunk (image -> pooled features) plus a head (features -> logits). Its trunk is cut into
named blocks, in depth order; freezing, partial fine-tuning and layer-wise learning rates are all expressed in
block names, so recipes never index into a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cifarlab.errors import ConfigError
from cifarlab.registry import Registry

MODELS: Registry[Callable[..., Backbone]] = Registry("model")
# name prefixes that build whole families by architecture name (``timm:ARCH``); filled by the family's module
PREFIXES: dict[str, Callable[..., Backbone]] = {}


@dataclass(frozen=True)
class DataConfig:
    """What the weights expect: normalisation (in [0, 1] units), native input side, and the stem type."""

    mean: tuple[float, ...] | None  # None: use the dataset's own statistics (random init)
    std: tuple[float, ...] | None
    input_size: int  # the side the weights were trained at (32 for the CIFAR stem)
    cifar_stem: bool  # True: 3x3 stride-1 stem for 32x32 inputs


class Backbone(nn.Module):
    """Trunk + head with named blocks.

    Args:
        name: registry name.
        trunk: module mapping (B, 3, H, W) images to (B, num_features) features.
        num_features: feature dimension.
        blocks: block name -> module names inside ``trunk``, in depth order; every trunk parameter belongs to
            exactly one block.
        partial_from: the first block unfrozen by the ``partial`` regime (that block and all after it).
        data_config: preprocessing the weights expect.
        num_classes: head outputs; 0 = no head (``forward`` returns features).
    """

    def __init__(self, name: str, trunk: nn.Module, num_features: int, blocks: dict[str, tuple[str, ...]],
                 partial_from: str, data_config: DataConfig, num_classes: int = 0) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.num_features = num_features
        self.blocks = dict(blocks)
        self.partial_from = partial_from
        self.data_config = data_config
        self.head: nn.Module = nn.Identity()
        # what the trunk's weights are: "imagenet:<source>", "file:<path>" or "none" (random init); the builder sets
        # it when it loads weights, a recipe when it loads a cifarlab run's encoder ("init:<run dir>")
        self.weights_source = "none"
        self._frozen_blocks: set[str] = set()
        self.reset_classifier(num_classes)
        self._check_blocks()

    # ---- forward ------------------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)  # (B, num_features)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh ``Linear(num_features, num_classes)`` (Identity when 0)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if self.trunk is not None:
            self.head.to(next(self.trunk.parameters()).device)

    # ---- blocks -------------------------------------------------------------------------------------------------
    def block_names(self) -> list[str]:
        return list(self.blocks)

    def partial_blocks(self) -> list[str]:
        names = self.block_names()
        return names[names.index(self.partial_from):]

    def block_of(self, param_name: str) -> str:
        """The block a trunk parameter (name relative to the trunk) belongs to."""
        for block, prefixes in self.blocks.items():
            if any(param_name == p or param_name.startswith(p + ".") for p in prefixes):
                return block
        raise KeyError(param_name)

    def block_parameters(self, block: str) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.trunk.named_parameters():
            if self.block_of(name) == block:
                yield name, p

    def _check_blocks(self) -> None:
        if self.partial_from not in self.blocks:
            raise ValueError(f"{self.name}: partial_from {self.partial_from!r} is not a block")
        for name, _ in self.trunk.named_parameters():
            self.block_of(name)  # raises KeyError for a parameter outside every block

    # ---- freezing -----------------------------------------------------------------------------------------------
    def set_trainable(self, blocks: Iterable[str] | str) -> None:
        """Make exactly ``blocks`` (or ``"all"`` / ``"none"``) of the trunk trainable; the head always is.

        Frozen blocks get ``requires_grad=False`` and are kept in ``eval()`` mode by :meth:`train`, so their
        BatchNorm statistics and dropout do not change either.
        """
        names = self.block_names()
        wanted = set(names) if blocks == "all" else set() if blocks == "none" else set(blocks)  # type: ignore[arg-type]
        unknown = wanted - set(names)
        if unknown:
            raise ConfigError(f"unknown block(s) {sorted(unknown)} of {self.name}; choose from: {', '.join(names)}")
        self._frozen_blocks = set(names) - wanted
        for name, p in self.trunk.named_parameters():
            p.requires_grad_(self.block_of(name) in wanted)
        for p in self.head.parameters():
            p.requires_grad_(True)
        self._frozen_modules = self._outermost_frozen_modules()
        self.train(self.training)

    def _outermost_frozen_modules(self) -> list[str]:
        """Trunk modules all of whose parameters are frozen (outermost only), e.g. a frozen stage with its
        BatchNorms and stochastic-depth layers inside."""
        frozen: list[str] = []
        for name, module in self.trunk.named_modules():
            if any(name.startswith(f + ".") for f in frozen if f) or (frozen and frozen[0] == ""):
                continue
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                frozen.append(name)
        return frozen

    @property
    def frozen_blocks(self) -> list[str]:
        return [b for b in self.block_names() if b in self._frozen_blocks]

    def set_norm_statistics(self, mode: str | None) -> None:
        """Where the trunk's BatchNorms take their statistics from in training. ``"frozen"``: their running
        statistics, in every block (their affine weights still train where their block does), so fine-tuning sees
        the features the backbone was trained with. ``"train"``: each batch, in every block, frozen blocks included
        (their running averages follow the new data; random-init frozen blocks then give normalised random
        features, not the never-estimated statistics of initialisation). ``None``: batches in trainable blocks,
        running statistics in frozen ones."""
        self._norm_mode = mode
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:
            for name in getattr(self, "_frozen_modules", []):
                self.trunk.get_submodule(name).eval()
            norm_mode = getattr(self, "_norm_mode", None)
            if norm_mode is not None:
                for m in self.trunk.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.train(norm_mode == "train")
        return self

    def param_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"params_total": total, "params_trainable": trainable, "params_frozen": total - trainable}


def create_model(name: str, num_classes: int = 0, weights: str = "default") -> Backbone:
    """Build a registered model.

    Args:
        name: a registry name (``cifarlab models`` lists them) or ``timm:ARCH`` for any timm architecture.
        num_classes: head outputs (0 = features only).
        weights: ``default`` (the model's pretrained weights; random for CIFAR-stem models), ``none`` (random
            init) or a state-dict file path.
    """
    check_model_name(name)
    prefix, sep, arch = name.partition(":")
    if sep:
        return PREFIXES[prefix](arch, num_classes=num_classes, weights=weights)
    return MODELS.get(name)(num_classes=num_classes, weights=weights)


def check_model_name(name: str) -> None:
    """The one place a model name is checked (before any data is loaded): a registry name, or ``PREFIX:ARCH`` for a
    registered family (``timm:``; whether ARCH exists there is checked when the model is built)."""
    prefix, sep, arch = name.partition(":")
    if not sep:
        MODELS.get(name)
    elif prefix not in PREFIXES or not re.fullmatch(r"[\w.\-]+", arch):
        raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(MODELS.names())}, or "
                          f"{' / '.join(p + ':ARCH' for p in PREFIXES)}")
