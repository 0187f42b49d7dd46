"""``synthetic``: random uint8 images with random labels, for timing the training step (``ssl-bench bench train``).

There is nothing to learn in them; they stand in for CIFAR-10's shape (32x32 RGB, 10 classes) on machines without
its files. 4,000 training and 1,000 test images drawn from a fixed seed, so every machine times the same data.
"""

from __future__ import annotations

import torch

from ssl_bench.config import DataConfig
from ssl_bench.data.images import ImageDataset
from ssl_bench.registry import DATASETS

SYNTHETIC_TRAIN, SYNTHETIC_TEST, SYNTHETIC_SIDE, SYNTHETIC_CLASSES = 4000, 1000, 32, 10


@DATASETS.register("synthetic")
def load_synthetic(cfg: DataConfig) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    n = SYNTHETIC_TRAIN + SYNTHETIC_TEST
    images = torch.randint(0, 256, (n, 3, SYNTHETIC_SIDE, SYNTHETIC_SIDE), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, SYNTHETIC_CLASSES, (n,), generator=g)
    return ImageDataset(
        name="synthetic",
        train_images=images[:SYNTHETIC_TRAIN],
        train_labels=labels[:SYNTHETIC_TRAIN],
        test_images=images[SYNTHETIC_TRAIN:],
        test_labels=labels[SYNTHETIC_TRAIN:],
        num_classes=SYNTHETIC_CLASSES,
        hflip=True,
    )
