"""Registry of augmentation policies: callables mapping a uint8 batch and a generator to a uint8 batch."""

from __future__ import annotations

from typing import Protocol

import torch

from ssl_bench.augment.weak import weak_augment
from ssl_bench.config import AugmentConfig
from ssl_bench.errors import ConfigError
from ssl_bench.registry import AUGMENTATIONS


class Policy(Protocol):
    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"augmentation expects a uint8 image tensor (N, C, H, W), got {got}")
    if images.shape[1] not in (1, 3):
        raise ConfigError(f"augmentation expects 1 or 3 channels, got {images.shape[1]}")


class NoAugment:
    """The identity policy (evaluation-style images)."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(images)
        return images


class WeakPolicy:
    """Flip (where the dataset allows it) + reflect-pad translate by 12.5 % of the side (§1.4)."""

    def __init__(self, flip: bool, translate: float) -> None:
        self.flip, self.translate = flip, translate

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(images)
        return weak_augment(images, generator, self.flip, self.translate)


@AUGMENTATIONS.register("none")
def _none(cfg: AugmentConfig, hflip: bool) -> Policy:
    return NoAugment()


@AUGMENTATIONS.register("weak")
def _weak(cfg: AugmentConfig, hflip: bool) -> Policy:
    return WeakPolicy(flip=cfg.flip and hflip, translate=cfg.translate)


def create_policy(name: str, cfg: AugmentConfig, hflip: bool) -> Policy:
    """Build the policy registered as ``name``; ``hflip`` says whether the dataset allows horizontal flips."""
    return AUGMENTATIONS.get(name)(cfg, hflip)
