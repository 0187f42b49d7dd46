"""Pre-activation WideResNet-28-k as in the authors' libml ``ResNet.classifier`` (and objax ``WideResNet``).

Zagoruyko & Komodakis, "Wide Residual Networks", arXiv:1605.07146; the variant, initialisation and BatchNorm
settings follow the MixMatch/FixMatch reference code as described in docs/reference/common.md#wrn-28-k.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ssl_bench.config import ModelConfig
from ssl_bench.errors import ConfigError
from ssl_bench.models.backbone import Backbone
from ssl_bench.registry import MODELS


def init_weights(module: nn.Module) -> None:
    """Reference initialisation (docs/reference/common.md#wrn-28-k) of every conv, linear and BatchNorm layer inside
    ``module``.

    Conv kernels: He normal over fan_out, std = sqrt(2 / (k*k*out_channels)); linear kernels: Glorot normal
    truncated at two standard deviations (TF1 ``glorot_normal_initializer``, objax Xavier truncated normal);
    all biases 0; BatchNorm gamma 1, beta 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            k_h, k_w = m.kernel_size
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / (k_h * k_w * m.out_channels)))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            std = math.sqrt(2.0 / (m.in_features + m.out_features))
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def batch_norm(channels: int, cfg: ModelConfig) -> nn.BatchNorm2d:
    """BatchNorm with the reference's TF settings: decay 0.999 is PyTorch momentum 0.001, eps 1e-3
    (docs/reference/common.md#wrn-28-k)."""
    return nn.BatchNorm2d(channels, momentum=cfg.bn_momentum, eps=cfg.bn_eps)


def wrn_scales(cfg: ModelConfig, image_size: int) -> int:
    """Number of stages: ``cfg.scales`` or the reference default ceil(log2(side)) - 2 (3 at 32 px), at least 1."""
    if cfg.scales > 0:
        # each stage after the first halves the side (rounding up), until one pixel is left
        most = (max(image_size, 1) - 1).bit_length() + 1
        if cfg.scales > most:
            raise ConfigError(
                f"model.scales = {cfg.scales} halves the {image_size}-px images {cfg.scales - 1} times: at most "
                f"{most} stages at {image_size} px (0 = from the image size)"
            )
        return cfg.scales
    return max(1, math.ceil(math.log2(max(image_size, 1))) - 2)


class PreActBlock(nn.Module):
    """One pre-activation residual block: BN-act-conv3x3-BN-act-conv3x3 plus a (projected) shortcut."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, activate_before_residual: bool, cfg: ModelConfig
    ) -> None:
        super().__init__()
        self.activate_before_residual = activate_before_residual
        self.bn1 = batch_norm(in_channels, cfg)
        # padding=1 as in typical PyTorch ports; TF 'same' pads a stride-2 conv only on the bottom/right
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=cfg.conv_bias)
        self.bn2 = batch_norm(out_channels, cfg)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=cfg.conv_bias)
        self.act = nn.LeakyReLU(cfg.leaky_slope)
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=cfg.conv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.bn1(x))
        # the reference takes the shortcut from the activated input only in the very first block
        x0 = a if self.activate_before_residual else x
        h = self.conv2(self.act(self.bn2(self.conv1(a))))
        if self.shortcut is not None:
            x0 = self.shortcut(x0)
        return x0 + h


class WideResNet(Backbone):
    """WRN-28-k: stem conv, ``scales`` stages of ``repeat`` pre-activation blocks, BN-act, pool, linear head."""

    def __init__(
        self, cfg: ModelConfig, num_classes: int, in_channels: int, scales: int, filters: int, repeat: int = 4
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=cfg.conv_bias)
        blocks: list[nn.Module] = []
        channels = 16
        for s in range(scales):
            width = filters << s
            blocks.append(PreActBlock(channels, width, 1 if s == 0 else 2, s == 0, cfg))
            blocks.extend(PreActBlock(width, width, 1, False, cfg) for _ in range(repeat - 1))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = batch_norm(channels, cfg)
        self.act = nn.LeakyReLU(cfg.leaky_slope)
        self.embed_dim = channels
        self.head = nn.Linear(channels, num_classes)
        init_weights(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Final activated feature map (N, embed_dim, h, w), before global average pooling."""
        return self.act(self.bn(self.blocks(self.stem(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, embed_dim) that the classifier ``head`` reads."""
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@MODELS.register("wrn28")
def wrn28(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> WideResNet:
    """WRN-28-k with k = ``cfg.width`` (16k channels in the first stage: 32 for the papers' WRN-28-2)."""
    return WideResNet(cfg, num_classes, in_channels, wrn_scales(cfg, image_size), filters=16 * cfg.width)
