"""What every backbone offers the algorithms and the trainer besides its logits: pooled features and their width.

A ``nn.Module`` base class rather than a Protocol, so that a backbone stays what an algorithm's ``model`` and the
EMA copy expect while the type checker knows ``embed`` and ``embed_dim`` (ReMixMatch's rotation head reads both).
"""

from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    """Maps float images (N, C, H, W) in [-1, 1] to logits (N, num_classes); subclasses set ``embed_dim``."""

    embed_dim: int  # the width of ``embed``'s features, which the classifier ``head`` reads

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, embed_dim) that the classifier ``head`` reads."""
        raise NotImplementedError

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled features: (N, D, h, w) for convolutional models, (N, tokens, D) for token models."""
        raise NotImplementedError
