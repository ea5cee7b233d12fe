"""Objectives: what turns a batch into a loss (classification, rotation prediction, contrastive)."""

from cifarlab.objectives.classification import Classification, FeatureClassification
from cifarlab.objectives.rotation import Rotation, rotate_all, rotate_random
from cifarlab.objectives.supcon import Contrastive, ContrastiveModel, SupConLoss

__all__ = ["Classification", "Contrastive", "ContrastiveModel", "FeatureClassification", "Rotation", "SupConLoss",
           "rotate_all", "rotate_random"]
