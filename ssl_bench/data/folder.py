"""The ``folder`` dataset: a user's ``<root>/<class>/*.png|jpg|jpeg`` tree read with PIL into uint8 arrays.

Layout follows torchvision's ImageFolder convention (one sub-folder per class, sorted names -> label ids 0..C-1);
the fixed stratified split mirrors the ``digits`` loader in ssl_bench/data/digits.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_bench.config import DataConfig
from ssl_bench.data.images import ImageDataset, to_uint8_nchw
from ssl_bench.errors import DataError
from ssl_bench.registry import DATASETS

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})  # matched case-insensitively
FOLDER_TEST_SIZE = 0.2
FOLDER_SPLIT_SEED = 0
# Modes whose pixels are one grey value: kept as 1 channel when every image of the tree is one of them.
GREY_MODES = frozenset({"1", "L", "LA"})


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _visible(path: Path) -> bool:
    # dot-entries are editor/OS metadata (.DS_Store, macOS "._x.png" forks), never data
    return not path.name.startswith(".")


def scan_class_tree(root: Path) -> tuple[list[str], list[list[Path]]]:
    """Sorted class names under ``root`` and, per class, its image files sorted by name."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    if not classes:
        raise DataError(f"folder: no class folders in {root}; expected {root}/<class name>/<image>.png|jpg|jpeg")
    files = []
    for name in classes:
        found = sorted(
            p for p in (root / name).iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            raise DataError(f"folder: class folder {root / name} holds no .png/.jpg/.jpeg images")
        files.append(found)
    return classes, files


def _read_image(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """Decode ``path``, convert it to L (greyscale modes) or RGB, resize to size x size; return (pixels, is_grey)."""
    try:
        with Image.open(path) as img:
            grey = img.mode in GREY_MODES
            # convert before resizing: palette/1-bit images would otherwise be resized with nearest-neighbour
            converted = img.convert("L" if grey else "RGB")
            # BILINEAR in PIL widens its kernel when shrinking (antialiased), like images.resize_images
            resized = converted.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(resized, dtype=np.uint8), grey
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"folder: cannot read image {path} ({_one_line(exc)})") from None


def _read_tree(files: list[list[Path]], size: int) -> tuple[list[np.ndarray], list[bool], np.ndarray]:
    pixels, grey, labels = [], [], []
    for label, paths in enumerate(files):
        for path in paths:
            arr, is_grey = _read_image(path, size)
            pixels.append(arr)
            grey.append(is_grey)
            labels.append(label)
    return pixels, grey, np.asarray(labels, dtype=np.int64)


def _stack(pixels: list[np.ndarray], as_grey: bool) -> torch.Tensor:
    if as_grey:
        return to_uint8_nchw(np.stack(pixels), "NHW")
    # a grey image among colour ones: replicate its channel, exactly what PIL's L -> RGB conversion does
    rgb = [p if p.ndim == 3 else np.repeat(p[:, :, None], 3, axis=2) for p in pixels]
    return to_uint8_nchw(np.stack(rgb), "NHWC")


@DATASETS.register("folder")
def load_folder(cfg: DataConfig) -> ImageDataset:
    """Images of ``<root>/<class>/`` (class names sorted -> labels 0..C-1), resized to ``data.image_size``.

    * Train/test: if ``<root>/train`` and ``<root>/test`` both exist, each is a class tree and they are used as given
      (both must have the same class folders). Otherwise all images form one tree and a fixed stratified split
      holds out 20%: ``sklearn.model_selection.train_test_split(test_size=0.2, stratify=labels, random_state=0)``,
      each part kept in tree order (classes sorted, then file names sorted).
    * Pixels: every image is converted to RGB (alpha dropped, palettes expanded), or kept as one grey channel when
      every image of the dataset has a greyscale mode (1, L, LA); then resized to image_size x image_size (bilinear,
      aspect ratio not kept).
    * ``hflip`` is False: nothing says a mirrored image keeps its label (it does not for digits or text), so the
      weak policy under the default ``augment.flip = "dataset"`` does not flip; flip photos of objects with
      ``augment.flip = "always"``. The run record's ``flip`` names the choice that was made.
    """
    from sklearn.model_selection import train_test_split

    size = cfg.image_size
    if size <= 0:
        raise DataError("folder dataset needs data.image_size (the side every image is resized to), e.g. 32")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"folder: data.root {root} is not a directory; expected {root}/<class name>/<image>.png")
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        present, absent = ("train", "test") if has_train else ("test", "train")
        raise DataError(
            f"folder: found {root / present} but no {root / absent}; provide both, or neither for a fixed 80/20 split"
        )

    if has_train:
        classes, train_files = scan_class_tree(root / "train")
        test_classes, test_files = scan_class_tree(root / "test")
        if test_classes != classes:
            differ = sorted(set(classes) ^ set(test_classes))
            raise DataError(
                f"folder: {root}/train and {root}/test must have the same class folders; differing: {', '.join(differ)}"
            )
        train_pixels, train_grey, train_labels = _read_tree(train_files, size)
        test_pixels, test_grey, test_labels = _read_tree(test_files, size)
        as_grey = all(train_grey) and all(test_grey)
        train_images, test_images = _stack(train_pixels, as_grey), _stack(test_pixels, as_grey)
    else:
        classes, files = scan_class_tree(root)
        pixels, grey, labels = _read_tree(files, size)
        try:
            train_idx, test_idx = train_test_split(
                np.arange(len(labels)), test_size=FOLDER_TEST_SIZE, stratify=labels, random_state=FOLDER_SPLIT_SEED
            )
        except ValueError as exc:
            raise DataError(
                f"folder: cannot hold out a stratified 20% test split of {root} ({_one_line(exc)}); add images "
                f"(at least 2 per class) or provide {root}/train and {root}/test"
            ) from None
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
        images = _stack(pixels, all(grey))
        train_images, test_images = images[train_idx], images[test_idx]
        train_labels, test_labels = labels[train_idx], labels[test_idx]

    return ImageDataset(
        name="folder",
        classes=tuple(classes),
        train_images=train_images,
        train_labels=torch.from_numpy(train_labels),
        test_images=test_images,
        test_labels=torch.from_numpy(test_labels),
        num_classes=len(classes),
        hflip=False,
    )
