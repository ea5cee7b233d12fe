"""Resolving a run's config: the recipe's defaults, a TOML file, overrides, ``key=value`` strings; the model name is
checked before any data is loaded. Below the ``api`` facade, so recipes (studies) use it without a cycle."""

from __future__ import annotations

from typing import Any

from cifarlab import config as config_mod
from cifarlab.config import RunConfig
from cifarlab.recipes.common import RECIPES


def make_config(recipe: str | None = None, config_file: str | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None) -> RunConfig:
    """Resolve a config: the recipe's defaults, then ``config_file`` (TOML), then ``overrides``, then ``sets``
    (``"key=value"`` strings). Unknown keys and bad values raise :class:`cifarlab.errors.ConfigError`."""
    file_layer = config_mod.load_toml(config_file) if config_file else {}
    name = recipe or file_layer.get("recipe") or (overrides or {}).get("recipe") or "scratch"
    cls = RECIPES.get(str(name)).config_class
    cfg = config_mod.build(cls, file_layer, {**(overrides or {}), "recipe": name},
                           config_mod.parse_overrides(sets or []))
    from cifarlab.models import check_model_name

    check_model_name(cfg.model)  # an unknown model fails before any data is loaded
    return cfg
