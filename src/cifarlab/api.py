"""The Python API behind every CLI action, for notebooks and scripts.

Example::

    from cifarlab import api
    cfg = api.make_config("scratch", overrides={"dataset": "synthetic", "epochs": 2})
    result = api.train(cfg)
    print(result.summary["test_acc"])
"""

from __future__ import annotations

from typing import Any

from cifarlab import config as config_mod
from cifarlab.config import RunConfig
from cifarlab.recipes import RECIPES, RunResult, execute


def recipe_names() -> list[str]:
    return RECIPES.names()


def model_names() -> list[str]:
    from cifarlab.models import MODELS

    return MODELS.names()


def make_config(recipe: str | None = None, config_file: str | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None) -> RunConfig:
    """Resolve a config: the recipe's defaults, then ``config_file`` (TOML), then ``overrides``, then ``sets``
    (``"key=value"`` strings). Unknown keys and bad values raise :class:`cifarlab.errors.ConfigError`."""
    file_layer = config_mod.load_toml(config_file) if config_file else {}
    name = recipe or file_layer.get("recipe") or (overrides or {}).get("recipe") or "scratch"
    cls = RECIPES.get(str(name)).config_class
    cfg = config_mod.build(cls, file_layer, {**(overrides or {}), "recipe": name},
                           config_mod.parse_overrides(sets or []))
    check_model_name(cfg.model)
    return cfg


def check_model_name(name: str) -> None:
    """Unknown model names fail before any data is loaded or any directory is written."""
    from cifarlab.models import MODELS
    from cifarlab.models.timm_models import is_timm_name

    if not is_timm_name(name):
        MODELS.get(name)


def train(cfg: RunConfig) -> RunResult:
    """Run one regime into ``cfg.out/<name>``; returns the run directory and its summary."""
    return execute(cfg)


def report(runs_dir: str, out: str = "report.html", fmt: str = "html", embedding: str = "tsne") -> str:
    """Write an HTML (self-contained) or Markdown report of every run under ``runs_dir``."""
    from cifarlab.analysis.report import build

    return str(build(runs_dir, fmt, out, embedding))


def study(study_file: str, out: str, report: bool = True) -> tuple[list[str], str | None]:
    """Run a study file into ``out`` (skipping complete runs, resuming interrupted ones), then report."""
    from cifarlab.recipes.study import run_study

    failed, path = run_study(study_file, out, report)
    return failed, str(path) if path else None


def keys_help(recipe: str) -> str:
    return config_mod.help_table(RECIPES.get(recipe).config_class)


def recipes_help() -> str:
    return "\n".join(f"  {name:<10} {RECIPES.get(name).description}" for name in RECIPES.names())
