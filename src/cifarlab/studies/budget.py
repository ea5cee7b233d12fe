"""A smaller budget for a study's runs (a course study on a laptop, a notebook in CI): the study's recipes stay its own
(rates, optimisers, unfrozen blocks, heads, references, ``@run`` starts); only the data, the epochs and the image
side shrink. Pass one as ``adjust``: ``api.study(FILE, OUT, adjust=Budget(per_class=50, epochs=2))``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarlab.config import keys as config_keys
from cifarlab.recipes.execute import RECIPES

# registry name -> torchvision architecture of the ImageNet models (what a stand-in state dict is built as)
TORCHVISION_ARCH = {"alexnet": "alexnet", "vgg16": "vgg16", "resnet18_imagenet": "resnet18", "resnet50": "resnet50",
                    "efficientnet_b0": "efficientnet_b0", "convnext_tiny": "convnext_tiny"}
SMALLEST = {"alexnet": 64}  # sides below which the model's stem leaves nothing to pool
EPOCH_KEYS = ("epochs", "linear_epochs", "head_init_epochs")  # capped together: the probes are epochs too


@dataclass(frozen=True)
class Budget:
    """Caps on a study's runs; 0 or "" leaves the study's own value.

    Attributes:
        dataset: every run's dataset (``synthetic``, ``folder:PATH``, ``cifar10``).
        per_class: at most this many labelled train images per class (replaces a ``train_fraction``).
        test_per_class: at most this many test images per class (replaces a ``test_fraction``).
        epochs: at most this many epochs, also of SupCon's linear evaluation and of the LP-FT head.
        max_steps_per_epoch: at most this many optimizer steps per epoch.
        resolution: at most this input side for ImageNet-weight models (224 px in the course studies).
        embed_samples: at most this many test embeddings saved for the t-SNE.
        weights: registry model name -> a state dict file used instead of downloading its ImageNet weights.
    """

    dataset: str = ""
    per_class: int = 0
    test_per_class: int = 0
    epochs: int = 0
    max_steps_per_epoch: int = 0
    resolution: int = 0
    embed_samples: int = 0
    weights: dict[str, str] = field(default_factory=dict)

    def __call__(self, keys: dict[str, Any]) -> dict[str, Any]:
        """The run's keys under this budget (only keys its recipe has are set)."""
        cls = RECIPES.get(keys["recipe"]).config_class
        valid = set(config_keys(cls))
        out = dict(keys)

        def cap(key: str, limit: int) -> None:
            if limit and key in valid:
                default = cls.__dataclass_fields__[key].default
                current = out.get(key, default) or 0
                out[key] = min(current, limit) if current else limit

        if self.dataset:
            out["dataset"] = self.dataset
        if self.per_class:
            out.pop("train_fraction", None)
            cap("per_class", self.per_class)
        if self.test_per_class:
            out.pop("test_fraction", None)
            cap("test_per_class", self.test_per_class)
        for key in EPOCH_KEYS:
            cap(key, self.epochs)
        cap("max_steps_per_epoch", self.max_steps_per_epoch)
        cap("embed_samples", self.embed_samples)
        model = str(out.get("model", cls.__dataclass_fields__["model"].default))
        if self.resolution and "resolution" in valid and _imagenet_sized(model):
            side = out.get("resolution") or 224
            out["resolution"] = max(min(side, self.resolution), SMALLEST.get(model, 0))
        if model in self.weights and "weights" in valid and not out.get("init") \
                and out.get("weights", "default") == "default":
            out["weights"] = self.weights[model]
        return out


def _imagenet_sized(model: str) -> bool:
    """Models whose native side is the ImageNet weights' 224 px (CIFAR-stem models run at the data's side)."""
    from cifarlab.models import CARDS

    return model in TORCHVISION_ARCH or model.startswith("timm:") or bool(getattr(CARDS.get(model), "weights", None))


def stand_in_weights(models: list[str], folder: str | Path) -> dict[str, str]:
    """A randomly initialised torchvision state dict per ImageNet model, for a machine that cannot download the real
    ones (CI, an offline laptop): runs then go through the transfer paths, but what they measure is not transfer."""
    import torch
    import torchvision

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for model in models:
        path = folder / f"{model}-random.pth"
        if not path.is_file():
            torch.manual_seed(0)
            torch.save(torchvision.models.get_model(TORCHVISION_ARCH[model], weights=None).state_dict(), path)
        files[model] = str(path)
    return files
