"""Weak augmentation: random horizontal flip and reflect-padded random translation, batched (reference
docs/reference/common.md#weak-augmentation)."""

from __future__ import annotations

import torch


def reflect_index(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Map integer positions outside [0, size) back inside by mirror reflection without edge repeat (np 'reflect')."""
    period = 2 * (size - 1)
    if period == 0:
        return torch.zeros_like(idx)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


def shift_gather(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
    """Per image: optional horizontal flip, then an integer shift (dx, dy) with reflected fill; exact on uint8.

    Equivalent to flipping, reflect-padding by max|d| and cropping at offset (pad - d), done as one gather of
    precomputed source indices (no padded copy, no Python loop).
    """
    n, c, h, w = images.shape
    rows = reflect_index(torch.arange(h, device=images.device)[None, :] - dy[:, None], h)  # (N, H)
    cols = reflect_index(torch.arange(w, device=images.device)[None, :] - dx[:, None], w)  # (N, W)
    if flip is not None:
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)


def translate_reflect(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Shift every image by its own integer (dx, dy), filling with the reflected image."""
    return shift_gather(images, dx, dy, None)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def weak_augment(images: torch.Tensor, generator: torch.Generator, flip: bool, translate: float) -> torch.Tensor:
    """Per sample: optional flip (p=0.5), then a uniform integer shift in [-pad, pad] on each axis.

    ``pad = round(translate * side)``: 4 px at 32 px, 12 px at 96 px for the reference's 12.5 %.
    """
    n, _, h, w = images.shape
    flips = torch.rand(n, generator=generator, device=images.device) < 0.5 if flip else None
    pad_y, pad_x = round(translate * h), round(translate * w)
    if pad_x == 0 and pad_y == 0:
        return images if flips is None else torch.where(flips[:, None, None, None], images.flip(-1), images)
    dy = torch.randint(-pad_y, pad_y + 1, (n,), generator=generator, device=images.device)
    dx = torch.randint(-pad_x, pad_x + 1, (n,), generator=generator, device=images.device)
    return shift_gather(images, dx, dy, flips)
