"""Recipes: each regime is a small ``run(cfg, run_dir) -> summary fields`` composed from the shared pieces."""

from cifarlab.recipes import rotation, scratch, supcon, transfer  # noqa: F401  (registers the recipes)
from cifarlab.recipes.common import RECIPES, RunResult, execute

__all__ = ["RECIPES", "RunResult", "execute"]
