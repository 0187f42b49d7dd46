"""Any timm backbone by name (``timm:<model>``), randomly initialised, behind the suite's model interface.

Wightman, "PyTorch Image Models" (https://github.com/huggingface/pytorch-image-models); weights are never
downloaded: runs must work offline and compare architectures trained from scratch like the reference WRN.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.models import get_pretrained_cfg
from torch import nn

from ssl_bench.config import ModelConfig
from ssl_bench.errors import ConfigError
from ssl_bench.models.backbone import Backbone


class TimmModel(Backbone):
    """Adapter giving a timm model ``embed``, ``head``, ``embed_dim`` and ``feature_map``.

    ``embed`` is timm's pre-logits output (pooled features plus whatever head layers precede the classifier),
    so ``forward(x) == head(embed(x))`` whenever head dropout is inactive (eval mode, or drop rate 0).
    """

    # a timm network: timm types it as nn.Module, though every one offers get_classifier, forward_features,
    # forward_head and num_features
    model: Any

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        head = self.model.get_classifier()
        if isinstance(head, nn.Linear):
            self.embed_dim = head.in_features
        else:
            self.embed_dim = getattr(model, "head_hidden_size", None) or self.model.num_features

    @property
    def head(self) -> nn.Module:
        """The timm classifier (an nn.Linear for most models); a property so its weights are stored only once."""
        return self.model.get_classifier()

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features: (N, D, h, w) for convolutional models, timm's (N, tokens, D) for token models."""
        features = self.model.forward_features(x)
        if features.ndim == 4 and getattr(self.model, "output_fmt", "NCHW") == "NHWC":
            features = features.permute(0, 3, 1, 2)
        return features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, embed_dim) that the classifier ``head`` reads."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def create_timm_model(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> TimmModel:
    """Build ``timm:<model>`` from ``cfg.name`` with random weights; the WRN-specific ``cfg`` fields are unused.

    Models with a fixed input size (ViT, Swin, ...) are built for ``image_size`` instead of their default.
    """
    name = cfg.name.removeprefix("timm:")
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm model {name!r}; see timm.list_models()")
    kwargs: dict[str, Any] = {}
    pretrained_cfg = get_pretrained_cfg(name)
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = image_size
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    return TimmModel(model)
