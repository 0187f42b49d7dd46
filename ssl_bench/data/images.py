"""The one in-memory image format every loader returns, and the conversions into it (layout, size, channels)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ssl_bench.errors import DataError


@dataclass(frozen=True)
class ImageDataset:
    """Train and test arrays of one dataset; ``unlabeled`` holds images that come without labels (STL-10)."""

    name: str
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    hflip: bool  # whether a horizontal flip keeps the label (not for digits, SVHN, MNIST)
    unlabeled: torch.Tensor | None = None  # uint8 (M, C, H, W), extra images with no label at all
    source_fingerprint: str | None = None  # fingerprint of the arrays as loaded, before any resize (set on load)
    classes: tuple[str, ...] | None = None  # class names in label order, where the files name them
    n_source: int = 0  # domain pairs: the first n_source training images are the source domain's, the rest target's

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def nbytes(self) -> int:
        arrays = (self.train_images, self.train_labels, self.test_images, self.test_labels, self.unlabeled)
        return sum(a.numel() * a.element_size() for a in arrays if a is not None)

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def fingerprint(self) -> str:
        """sha256 over shapes and bytes of every array as loaded: changes whenever the data a split indexes changes.

        A resize at load time (``data.image_size``) does not change it: splits index the same images at any size.
        """
        if self.source_fingerprint is not None:
            return self.source_fingerprint
        h = hashlib.sha256()
        for t in (self.train_images, self.train_labels, self.test_images, self.test_labels, self.unlabeled):
            if t is None:
                h.update(b"none")
                continue
            h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()

    def validate(self) -> None:
        for part, images, labels in (
            ("train", self.train_images, self.train_labels),
            ("test", self.test_images, self.test_labels),
        ):
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise DataError(
                    f"{self.name} {part} images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise DataError(
                    f"{self.name} {part} labels must be int64 (N,), got {labels.dtype} {tuple(labels.shape)}"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise DataError(f"{self.name} {part} labels must lie in [0, {self.num_classes})")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a uint8 batch to size x size, in chunks to bound memory."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(4096):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], size, size))


def to_uint8_nchw(images: np.ndarray, layout: str) -> torch.Tensor:
    """Convert a numpy image array in layout 'NHWC', 'NCHW' or 'NHW' to a contiguous uint8 (N, C, H, W) tensor."""
    arr = np.asarray(images)
    if layout == "NHW":
        arr = arr[:, None]
    elif layout == "NHWC":
        arr = arr.transpose(0, 3, 1, 2)
    elif layout != "NCHW":
        raise ValueError(f"unknown layout {layout}")
    if arr.dtype != np.uint8:
        raise DataError(f"expected uint8 pixels, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) to ``channels``: grey -> RGB repeats the channel; RGB -> grey is PIL's ``convert("L")``
    (ITU-R 601-2 luma in 16-bit fixed point: (19595 R + 38470 G + 7471 B + 2^15) >> 16), bit for bit."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        luma = ((images.to(torch.int32) * weights).sum(1, keepdim=True) + (1 << 15)) >> 16
        return luma.to(torch.uint8)
    raise DataError(f"cannot convert {have}-channel images to {channels} channels")


CACHE_BYTES = 2**30


def evict(cache: dict, keep: int) -> None:
    """Trim a least-recently-used-first dataset cache: the newest ``keep`` entries always stay, older ones only while
    the whole cache fits in ``CACHE_BYTES`` (so small datasets stay loaded, and a long-lived worker moving through a
    grid of large ones holds only those of its current run)."""
    while len(cache) > keep and sum(ds.nbytes for ds in cache.values()) > CACHE_BYTES:
        del cache[next(iter(cache))]
