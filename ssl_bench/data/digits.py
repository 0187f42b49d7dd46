"""scikit-learn's handwritten digits: the offline default dataset (8x8 grey, 1,297 train / 500 test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssl_bench.config import DataConfig
from ssl_bench.data.array_cache import cache_path, cached_arrays
from ssl_bench.data.images import ImageDataset, to_uint8_nchw
from ssl_bench.registry import DATASETS

DIGITS_TEST_SIZE = 500
DIGITS_SPLIT_SEED = 0
DIGITS_N = 1797


def _build_digits_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    return {"pixels": pixels, "labels": labels, "train_idx": np.sort(train_idx), "test_idx": np.sort(test_idx)}


def _is_digits(a: dict[str, np.ndarray]) -> bool:
    """The cached arrays have the shapes, types and split sizes of ``_build_digits_arrays``."""
    try:
        n, n_test = len(a["labels"]), DIGITS_TEST_SIZE
        return (
            a["pixels"].shape == (n, 8, 8)
            and a["pixels"].dtype == np.uint8
            and a["labels"].dtype == np.int64
            and n == DIGITS_N
            and a["train_idx"].shape == (n - n_test,)
            and a["test_idx"].shape == (n_test,)
            and np.array_equal(np.union1d(a["train_idx"], a["test_idx"]), np.arange(n))
        )
    except (KeyError, AttributeError):
        return False


def digits_arrays(root: str | Path = DataConfig.root) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as (pixels uint8 (1797, 8, 8) scaled 0..255, labels, train indices, test indices).

    The train/test split is fixed: ``sklearn.model_selection.train_test_split`` with ``test_size=500``,
    ``stratify=labels`` and ``random_state=0`` -> 1,297 train and 500 test images, each kept in file order.
    Built once per scikit-learn version and cached below ``root`` (``array_cache``).
    """
    a = cached_arrays(cache_path(root, "digits", "scikit-learn"), _build_digits_arrays, _is_digits)
    return a["pixels"], a["labels"], a["train_idx"], a["test_idx"]


DIGIT_CLASSES = tuple(str(d) for d in range(10))


@DATASETS.register("digits")
def load_digits(cfg: DataConfig) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels scaled to 0..255), offline; split as in
    ``digits_arrays``."""
    pixels, labels, train_idx, test_idx = digits_arrays(cfg.root)
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
