"""Recipes: each regime is a small ``build(cfg, num_classes)`` + ``run(ctx, model) -> summary fields`` composed
from the shared pieces; ``execute`` runs one into its run directory."""

from cifarlab.recipes import rotation, scratch, supcon, transfer  # noqa: F401  (registers the recipes)
from cifarlab.recipes.execute import RECIPES, RunResult, execute

__all__ = ["RECIPES", "RunResult", "execute"]
