"""Model registry: ``ferkit.models.create(name, num_classes=...)``; one file per architecture."""

from . import di_fernet, lite_cnn, mini_xception, pcnn, vgg, zhu_cnn  # noqa: F401  (each registers itself)
from .registry import ModelSpec, count_params, create, get_spec, list_models, register

__all__ = ["ModelSpec", "create", "get_spec", "list_models", "register", "count_params"]
