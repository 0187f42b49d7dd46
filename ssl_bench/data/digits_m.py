"""digits_m: an MNIST-M-style colour target built offline from scikit-learn's digits (this project's construction).

The blend is MNIST-M's (Ganin et al., arXiv 1505.07818, Section 5.2); the photographs are scikit-learn's sample images,
so every machine builds the same images without a download.
"""

from __future__ import annotations

import numpy as np
import torch

from ssl_bench.config import DataConfig
from ssl_bench.data.array_cache import cache_path, cached_arrays
from ssl_bench.data.digits import DIGIT_CLASSES, digits_arrays
from ssl_bench.data.images import ImageDataset, resize_images, to_uint8_nchw
from ssl_bench.registry import DATASETS

DIGITS_M_SEED = 0
DIGITS_M_SIZE = 32


# ----------------------------------------------------------------------------------------------------------
# digits_m: an MNIST-M-style target built offline from scikit-learn's digits


def make_digits_m(pixels: np.ndarray, seed: int = DIGITS_M_SEED, size: int = DIGITS_M_SIZE) -> np.ndarray:
    """Colour versions of grey digits (N, 8, 8) as uint8 (N, size, size, 3), reproducible from ``seed``.

    Each digit is enlarged to size x size (bilinear) and combined with a patch of one of the two photographs that
    ship with scikit-learn (``load_sample_images``: china.jpg, flower.jpg) by the absolute difference
    |patch - digit| per channel, the blend MNIST-M uses (Ganin et al., arXiv 1505.07818, Section 5.2). The patch is a
    random square of side size..4*size at a random place, shrunk to size x size with PIL's bilinear filter. One
    ``numpy.random.default_rng(seed)`` draws, per image in order: the photo, the side, the corner.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(img) for img in load_sample_images().images]
    digits = resize_images(torch.from_numpy(pixels[:, None]), size)[:, 0].numpy().astype(np.int16)
    rng = np.random.default_rng(seed)
    out = np.empty((len(pixels), size, size, 3), dtype=np.uint8)
    for i, digit in enumerate(digits):
        photo = photos[int(rng.integers(len(photos)))]
        side = int(rng.integers(size, 4 * size + 1))
        top = int(rng.integers(photo.shape[0] - side + 1))
        left = int(rng.integers(photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        patch = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), dtype=np.int16)
        out[i] = np.abs(patch - digit[:, :, None]).astype(np.uint8)
    return out


def digits_m_images(pixels: np.ndarray, root: str) -> np.ndarray:
    """``make_digits_m(pixels)``, built once per version of the libraries it uses and cached below ``root``
    (``array_cache``; the construction's seed and size are in the file's name)."""
    name = f"digits_m-seed{DIGITS_M_SEED}-{DIGITS_M_SIZE}px"
    path = cache_path(root, name, "scikit-learn", "pillow", "torch", "numpy")
    shape = (len(pixels), DIGITS_M_SIZE, DIGITS_M_SIZE, 3)

    def check(a: dict[str, np.ndarray]) -> bool:
        return "images" in a and a["images"].dtype == np.uint8 and a["images"].shape == shape

    return cached_arrays(path, lambda: {"images": make_digits_m(pixels)}, check)["images"]


@DATASETS.register("digits_m")
def load_digits_m(cfg: DataConfig) -> ImageDataset:
    """This project's MNIST-M-style colour digits (32x32 RGB), made offline by ``make_digits_m`` with seed 0.

    Not the official MNIST-M (which blends MNIST with BSDS500 photographs): it is built from scikit-learn's
    digits and sample photographs, image i from digit i, with the train/test split of the ``digits`` dataset.
    """
    pixels, labels, train_idx, test_idx = digits_arrays(cfg.root)
    images = digits_m_images(pixels, cfg.root)
    return ImageDataset(
        name="digits_m",
        train_images=to_uint8_nchw(images[train_idx], "NHWC"),
        train_labels=torch.from_numpy(labels[train_idx]),
        test_images=to_uint8_nchw(images[test_idx], "NHWC"),
        test_labels=torch.from_numpy(labels[test_idx]),
        num_classes=10,
        hflip=False,
        classes=DIGIT_CLASSES,
    )
