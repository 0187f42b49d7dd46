"""Dataset registry: every loader returns uint8 images (N, C, H, W) and int64 labels, held once in memory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ssl_bench.config import DataConfig
from ssl_bench.errors import DataError
from ssl_bench.registry import DATASETS


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


_CACHE: dict[tuple, ImageDataset] = {}


def load_dataset(cfg: DataConfig) -> ImageDataset:
    """Load (once per process) the dataset named in ``cfg``, resized to ``cfg.image_size`` if set."""
    loader = DATASETS.get(cfg.dataset)
    key = (cfg.dataset, cfg.root, cfg.extra, cfg.image_size)
    if key not in _CACHE:
        ds = loader(cfg)
        ds = replace(ds, source_fingerprint=ds.fingerprint())
        if cfg.image_size:
            ds = replace(
                ds,
                train_images=resize_images(ds.train_images, cfg.image_size),
                test_images=resize_images(ds.test_images, cfg.image_size),
                unlabeled=None if ds.unlabeled is None else resize_images(ds.unlabeled, cfg.image_size),
            )
        ds.validate()
        _CACHE[key] = ds
    return _CACHE[key]


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


DIGITS_TEST_SIZE = 500
DIGITS_SPLIT_SEED = 0


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as (pixels uint8 (1797, 8, 8) scaled 0..255, labels, train indices, test indices).

    The train/test split is fixed: ``sklearn.model_selection.train_test_split`` with ``test_size=500``,
    ``stratify=labels`` and ``random_state=0`` -> 1,297 train and 500 test images, each kept in file order.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    return pixels, labels, np.sort(train_idx), np.sort(test_idx)


DIGIT_CLASSES = tuple(str(d) for d in range(10))


@DATASETS.register("digits")
def load_digits(cfg: DataConfig) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels scaled to 0..255), offline; split as in
    ``digits_arrays``."""
    pixels, labels, train_idx, test_idx = digits_arrays()
    return ImageDataset(
        name="digits",
        train_images=to_uint8_nchw(pixels[train_idx], "NHW"),
        train_labels=torch.from_numpy(labels[train_idx]),
        test_images=to_uint8_nchw(pixels[test_idx], "NHW"),
        test_labels=torch.from_numpy(labels[test_idx]),
        num_classes=10,
        hflip=False,
        classes=DIGIT_CLASSES,
    )
