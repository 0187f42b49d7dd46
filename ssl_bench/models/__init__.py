"""Backbones: WRN-28-k as in the reference code, a small CNN for small images, and any timm model by name."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from ssl_bench.config import ModelConfig
from ssl_bench.errors import ConfigError
from ssl_bench.models.backbone import Backbone
from ssl_bench.registry import MODELS, did_you_mean


def create_model(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> Backbone:
    """Build the backbone named in ``cfg.name``: a registered name, or ``timm:<model>`` (no weight download).

    Every model is a ``Backbone``: it maps float images (N, C, H, W) in [-1, 1] to logits (N, num_classes) and
    offers ``embed(x) -> (N, embed_dim)`` (the pooled features the classifier ``head`` reads) and ``embed_dim``.
    """
    if cfg.name.startswith("timm:"):
        from ssl_bench.models.timm_models import create_timm_model

        return create_timm_model(cfg, num_classes, in_channels, image_size)
    if cfg.name not in MODELS:
        hint = did_you_mean(cfg.name, MODELS.names())
        raise ConfigError(
            f"unknown model {cfg.name!r}{hint}; valid choices: {', '.join(MODELS.names())}, "
            "or timm:<name> for any timm model"
        )
    return MODELS.get(cfg.name)(cfg, num_classes, in_channels, image_size)


class _NoInitOnMeta(TorchFunctionMode):
    """In-place ops (a weight initialiser's ``normal_``, ``zero_``, ...) on meta tensors do nothing: their shapes
    are all that is wanted, and meta ``normal_`` would import torch._dynamo (about 1.7 s) to trace its reference."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes its tensor by keyword
        if name.endswith("_") and not name.startswith("__") and getattr(target, "is_meta", False):
            return target
        return func(*args, **kwargs)


def parameter_bytes(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> int:
    """Bytes of the model's parameters, from their shapes on the meta device: nothing is allocated."""
    with torch.device("meta"), _NoInitOnMeta():
        model = create_model(cfg, num_classes, in_channels, image_size)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def model_names() -> list[str]:
    return [*MODELS.names(), "timm:<name>"]


# populate the registry
from ssl_bench.models import small, wrn  # noqa: E402,F401
