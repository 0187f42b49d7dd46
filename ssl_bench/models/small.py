"""A small, fast VGG-style CNN for 8x8 to 32x32 images (digits, MNIST-sized data, smoke runs on CPU).

No paper defines it: it is this suite's cheap backbone, built from the same BatchNorm, LeakyReLU and
initialisation conventions as the reference WRN (docs/reference/common.md#wrn-28-k).
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.config import ModelConfig
from ssl_bench.models.backbone import Backbone
from ssl_bench.models.wrn import batch_norm, init_weights
from ssl_bench.registry import MODELS


def _conv_bn_act(in_channels: int, out_channels: int, cfg: ModelConfig) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=cfg.conv_bias),
        batch_norm(out_channels, cfg),
        nn.LeakyReLU(cfg.leaky_slope),
    ]


class SmallCNN(Backbone):
    """conv(c) - pool - conv(2c) - pool - conv(4c) - global average pool - linear, with c = 16 * width.

    Every conv is conv3x3-BN-LeakyReLU. Each 2x2 max-pool is applied only while the map is at least 8 px wide,
    so 8 px inputs keep a 4x4 map. Three convs rather than deeper stages because a second conv at each of the
    first two resolutions doubled the CPU step time; ~95k parameters at width 2.
    """

    def __init__(self, cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        c = 16 * cfg.width
        layers: list[nn.Module] = []
        size = image_size
        channels = in_channels
        for width in (c, 2 * c):
            layers += _conv_bn_act(channels, width, cfg)
            channels = width
            if size >= 8:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        layers += _conv_bn_act(channels, 4 * c, cfg)
        self.features = nn.Sequential(*layers)
        self.embed_dim = 4 * c
        self.head = nn.Linear(self.embed_dim, num_classes)
        init_weights(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Final activated feature map (N, embed_dim, h, w), before global average pooling."""
        return self.features(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, embed_dim) that the classifier ``head`` reads."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@MODELS.register("small_cnn")
def small_cnn(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> SmallCNN:
    """The small CNN; ``cfg.width`` scales the base channel count c = 16 * width (32 at the default 2)."""
    return SmallCNN(cfg, num_classes, in_channels, image_size)
