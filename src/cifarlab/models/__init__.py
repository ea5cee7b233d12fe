"""Models: the shared backbone interface, the registry, and the weight sources."""

from cifarlab.models import cifar, imagenet, timm_models  # noqa: F401  (registers the models)
from cifarlab.models.backbone import CARDS, MODELS, Backbone, DataConfig, ModelCard, check_model_name, create_model
from cifarlab.models.heads import ProjectionHead

__all__ = ["CARDS", "MODELS", "ModelCard", "Backbone", "DataConfig", "ProjectionHead", "check_model_name",
           "create_model"]
