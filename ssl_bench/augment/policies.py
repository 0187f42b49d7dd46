"""Registry of augmentation policies: callables mapping a uint8 batch and a generator to a uint8 batch."""

from __future__ import annotations

from typing import Protocol

import torch

from ssl_bench.augment.ops import check_images
from ssl_bench.augment.weak import weak_augment
from ssl_bench.config import FLIP_CHOICES, AugmentConfig
from ssl_bench.errors import ConfigError
from ssl_bench.registry import AUGMENTATIONS


class Policy(Protocol):
    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


class NoAugment:
    """The identity policy (evaluation-style images)."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(images)
        return images


def effective_flip(cfg: AugmentConfig, hflip: bool) -> bool:
    """Whether the weak policy flips: ``augment.flip`` "always" / "never", or "dataset" = the dataset's ``hflip``.

    "always" is AdaMatch's ``sm``, which flips every dataset, digits included
    (docs/reference/common.md#weak-augmentation).
    """
    if cfg.flip not in FLIP_CHOICES:
        raise ConfigError(f"augment.flip must be one of {', '.join(FLIP_CHOICES)}; got {cfg.flip!r}")
    return hflip if cfg.flip == "dataset" else cfg.flip == "always"


class WeakPolicy:
    """Flip (p = 0.5, when ``flip``) + reflect-pad translate by 12.5 % of the side
    (docs/reference/common.md#weak-augmentation)."""

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
    return WeakPolicy(flip=effective_flip(cfg, hflip), translate=cfg.translate)


@AUGMENTATIONS.register("randaugment")
def _randaugment(cfg: AugmentConfig, hflip: bool) -> Policy:
    """FixMatch's RandAugment (docs/reference/augmentation.md#randaugment-fixmatch), applied after the weak
    flip-and-translate as in ``d.d.rac``."""
    from ssl_bench.augment.strong import RandAugment

    weak = WeakPolicy(effective_flip(cfg, hflip), cfg.translate)
    return Chain(weak, RandAugment(cfg.ra_ops, cfg.ra_prob, cfg.cutout))


@AUGMENTATIONS.register("randaugment_usb")
def _randaugment_usb(cfg: AugmentConfig, hflip: bool) -> Policy:
    """TorchSSL / USB RandAugment(3, 5) + cutout (docs/reference/common.md#torchssl-and-usb) after the weak
    flip-and-translate, in USB's order (TorchSSL applies it before flip and crop); ``augment.cutout`` bounds the cutout
    side fraction. ``augment.ra_ops`` / ``ra_prob`` are FixMatch's RandAugment's: this policy always applies 3 ops."""
    from ssl_bench.augment.usb import RandAugmentUSB

    return Chain(WeakPolicy(effective_flip(cfg, hflip), cfg.translate), RandAugmentUSB(cfg.cutout))


@AUGMENTATIONS.register("ctaugment")
def _ctaugment(cfg: AugmentConfig, hflip: bool) -> Policy:
    """CTAugment (docs/reference/augmentation.md#ctaugment) after the weak flip-and-translate; its bin weights learn
    from probe feedback."""
    from ssl_bench.augment.strong import CTAugment

    cta = CTAugment(
        cfg.cta_depth,
        cfg.cta_threshold,
        cfg.cta_decay,
        cfg.cta_sampling,
        cfg.cta_cutout,
        cfg.cta_translate,
        cfg.cta_rescale,
    )
    return Chain(WeakPolicy(effective_flip(cfg, hflip), cfg.translate), cta)


class Chain:
    """Policies applied one after another; exposes the stateful/feedback part (CTAugment) as ``.feedback``."""

    def __init__(self, *parts: Policy) -> None:
        self.parts = parts
        self.feedback = next((p for p in parts if hasattr(p, "update")), None)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for part in self.parts:
            images = part(images, generator)
        return images


def check_policies(cfg: AugmentConfig) -> None:
    """The weak and strong roles' policies build from [augment] (registered names, values their constructors take),
    whichever roles the recipe's algorithm asks for: switching algorithm never meets a broken policy."""
    for role in ("weak", "strong"):
        create_policy(getattr(cfg, role), cfg, hflip=True)


def create_policy(name: str, cfg: AugmentConfig, hflip: bool) -> Policy:
    """Build the policy registered as ``name``; ``hflip`` says whether the dataset allows horizontal flips (what
    ``augment.flip = "dataset"`` follows)."""
    return AUGMENTATIONS.get(name)(cfg, hflip)
