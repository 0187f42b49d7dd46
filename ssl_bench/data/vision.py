"""Torchvision-backed loaders (CIFAR-10/100, SVHN, STL-10, MNIST, Fashion-MNIST, USPS) as uint8 (N, C, H, W) arrays.

Source: torchvision.datasets (cifar.py, svhn.py, stl10.py, mnist.py, usps.py of torchvision 0.29) for file names,
layouts and md5 checks; dataset sizes and label conventions from docs/reference/common.md#image-encoding-and-datasets.

Every loader reads its files below ``Path(cfg.root).expanduser()`` exactly where torchvision looks for them and
passes ``download=cfg.download`` on, so nothing is fetched unless asked. Missing, corrupted or undownloadable files
become a one-line :class:`DataError` naming the dataset, the directory torchvision reads and the fix.
"""

from __future__ import annotations

import bz2
import gzip
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_bench.config import DataConfig
from ssl_bench.data.digits import DIGIT_CLASSES
from ssl_bench.data.images import ImageDataset, to_uint8_nchw
from ssl_bench.errors import DataError
from ssl_bench.registry import DATASETS

DOWNLOAD_HINT = "pass --download (or set data.download = true)"

# Debian's package `dataset-fashion-mnist` ships the four official idx files (gzipped) here. They are recompressed,
# so their .gz md5s differ from the ones torchvision lists, but the decompressed idx data is the official release.
# Link them with `link_fashion_mnist(root)` (or copy/symlink the .gz files into <root>/FashionMNIST/raw/ by hand).
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# The four idx files every MNIST-family dataset has, named as torchvision expects them (uncompressed).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def data_root(cfg: DataConfig) -> Path:
    """The directory given as ``data.root``, with ``~`` expanded."""
    return Path(cfg.root).expanduser()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_torchvision(
    name: str,
    location: Path,
    expected: Sequence[str],
    download: bool,
    factory: Callable[[], Any],
    hint: str = "",
    md5_checked: bool = True,
) -> Any:
    """Build a torchvision dataset with ``factory``, turning every way it can fail into a one-line DataError.

    Without ``download`` the expected files are checked first, so a missing file never reaches torchvision (whose
    message would tell the user about ``download=True``, a Python argument they cannot pass). ``hint`` is appended
    to the missing-files message (another way to get the files); ``md5_checked`` says whether torchvision verifies
    checksums for this dataset (MNIST-family and USPS files have none to verify once present).
    """
    if not download:
        missing = [f for f in expected if not (location / f).is_file()]
        if missing:
            raise DataError(
                f"{name}: {len(missing)} of {len(expected)} dataset files missing in {location} "
                f"(first: {missing[0]}); {DOWNLOAD_HINT} to fetch them{hint}"
            )
    try:
        return factory()
    except MemoryError:
        raise
    except Exception as exc:  # torchvision raises RuntimeError, URLError, tarfile and pickle errors alike
        if download:
            raise DataError(
                f"{name}: could not download or read the files in {location} ({_one_line(exc)}); "
                "check the network connection, or place the official files there and run without --download"
            ) from None
        if md5_checked and isinstance(exc, RuntimeError):
            # the files exist (checked above), so torchvision's "not found or corrupted" means an md5 mismatch
            raise DataError(
                f"{name}: files in {location} failed torchvision's md5 integrity check (corrupted, truncated or not "
                f"the official release); delete them and {DOWNLOAD_HINT} to fetch them again"
            ) from None
        raise DataError(
            f"{name}: cannot read the files in {location} ({_one_line(exc)}); delete them and {DOWNLOAD_HINT} "
            "to fetch them again"
        ) from None


def _labels(values: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.int64).reshape(-1).copy())


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: python pickle batches, rows of 3,072 bytes (1,024 R, then G, then B, each row-major)


def _load_cifar(cfg: DataConfig, name: str, cls_name: str, num_classes: int) -> ImageDataset:
    # torchvision is imported inside each loader: it adds about a second to every start of the CLI otherwise
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = data_root(cfg)
    location = root / cls.base_folder
    expected = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    parts = {}
    for train in (True, False):
        ds = _open_torchvision(
            name, location, expected, cfg.download, partial(cls, root=root, train=train, download=cfg.download)
        )
        parts[train] = (to_uint8_nchw(ds.data, "NHWC"), _labels(ds.targets))
    return ImageDataset(
        name=name,
        train_images=parts[True][0],
        train_labels=parts[True][1],
        test_images=parts[False][0],
        test_labels=parts[False][1],
        num_classes=num_classes,
        hflip=True,
    )


@DATASETS.register("cifar10")
def load_cifar10(cfg: DataConfig) -> ImageDataset:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 RGB images, 10 classes, from ``<root>/cifar-10-batches-py``."""
    return _load_cifar(cfg, "cifar10", "CIFAR10", 10)


@DATASETS.register("cifar100")
def load_cifar100(cfg: DataConfig) -> ImageDataset:
    """CIFAR-100 (fine labels): 50k train / 10k test 32x32 RGB images, 100 classes, ``<root>/cifar-100-python``."""
    return _load_cifar(cfg, "cifar100", "CIFAR100", 100)


# ----------------------------------------------------------------------------------------------------------
# SVHN: MATLAB files <root>/{train,test,extra}_32x32.mat with X (32, 32, 3, N) and y (N, 1), digit 0 stored as 10


@DATASETS.register("svhn")
def load_svhn(cfg: DataConfig) -> ImageDataset:
    """SVHN: 73,257 train (+531,131 'extra' with ``data.extra``) / 26,032 test 32x32 RGB images, no flip.

    Labels are torchvision's: digit d is class d (the files store digit 0 as 10; torchvision maps it to 0). The TF
    reference repos use class (d - 1) mod 10 instead (docs/reference/common.md#image-encoding-and-datasets); remap only
    to reproduce their folds exactly. With ``data.extra`` the 'extra' images follow the 73,257 train images, in file
    order.
    """
    from torchvision.datasets import SVHN

    root = data_root(cfg)
    splits = ["train", "test"] + (["extra"] if cfg.extra else [])
    expected = [SVHN.split_list[s][1] for s in splits]
    parts = {}
    for split in splits:
        ds = _open_torchvision(
            "svhn", root, expected, cfg.download, partial(SVHN, root=root, split=split, download=cfg.download)
        )
        parts[split] = (to_uint8_nchw(ds.data, "NCHW"), _labels(ds.labels))
        del ds  # the extra split alone is 1.6 GB: free torchvision's copy before reading the next file
    train_images, train_labels = parts["train"]
    if cfg.extra:
        train_images = torch.cat([train_images, parts["extra"][0]])
        train_labels = torch.cat([train_labels, parts["extra"][1]])
    return ImageDataset(
        name="svhn",
        classes=DIGIT_CLASSES,
        train_images=train_images,
        train_labels=train_labels,
        test_images=parts["test"][0],
        test_labels=parts["test"][1],
        num_classes=10,
        hflip=False,
    )


# ----------------------------------------------------------------------------------------------------------
# STL-10: binary files in <root>/stl10_binary, images stored column-major, labels 1-based


@DATASETS.register("stl10")
def load_stl10(cfg: DataConfig) -> ImageDataset:
    """STL-10: 5,000 labeled train, 100,000 unlabeled and 8,000 test 96x96 RGB images, 10 classes.

    ``train`` is the 5,000 official labeled training images (all ten folds' pool), ``unlabeled`` the 100,000
    unlabeled images. Peak memory while reading is about twice the 2.8 GB of the unlabeled file.
    """
    from torchvision.datasets import STL10

    root = data_root(cfg)
    location = root / STL10.base_folder
    expected = [f for f, _ in STL10.train_list + STL10.test_list]
    # 'train+unlabeled' reads train and unlabeled in one pass: torchvision md5-checks every file (2.8 GB) per split
    both = _open_torchvision(
        "stl10",
        location,
        expected,
        cfg.download,
        lambda: STL10(root=root, split="train+unlabeled", download=cfg.download),
    )
    labels = np.asarray(both.labels, dtype=np.int64)
    n_train = int((labels >= 0).sum())
    if (labels[:n_train] < 0).any():
        raise DataError(f"stl10: unexpected record order in {location}: labeled train images must come first")
    images = to_uint8_nchw(both.data, "NCHW")
    del both
    train_images = images[:n_train].clone()  # own storage, so the labeled subset never pins the unlabeled buffer
    unlabeled = images[n_train:]
    test = _open_torchvision(
        "stl10", location, expected, cfg.download, lambda: STL10(root=root, split="test", download=cfg.download)
    )
    return ImageDataset(
        name="stl10",
        train_images=train_images,
        train_labels=torch.from_numpy(labels[:n_train].copy()),
        test_images=to_uint8_nchw(test.data, "NCHW"),
        test_labels=_labels(test.labels),
        num_classes=10,
        hflip=True,
        unlabeled=unlabeled,
    )


# ----------------------------------------------------------------------------------------------------------
# MNIST family: idx files in <root>/<ClassName>/raw, uncompressed (torchvision) or as the official .gz files


def decompress_idx_files(raw: Path) -> list[Path]:
    """Write ``raw/<name>`` from ``raw/<name>.gz`` for every idx file that exists only gzipped; return those written.

    torchvision reads only the uncompressed idx files (its download step extracts them). Decompressing next to the
    .gz files lets users copy or symlink the official downloads (or Debian's copies) into ``raw/`` unchanged. The
    output goes through a temporary file and a rename, so an interrupted run never leaves a truncated idx file.
    """
    written = []
    for name in IDX_FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        try:
            with gzip.open(packed, "rb") as src, tempfile.NamedTemporaryFile(dir=raw, delete=False) as dst:
                tmp = Path(dst.name)
                try:
                    shutil.copyfileobj(src, dst, length=1 << 20)
                except BaseException:
                    dst.close()
                    tmp.unlink(missing_ok=True)
                    raise
            os.replace(tmp, target)
        except (OSError, EOFError) as exc:  # BadGzipFile is an OSError; EOFError = truncated .gz
            raise DataError(f"cannot decompress {packed} into {raw} ({_one_line(exc)})") from None
        written.append(target)
    return written


def link_fashion_mnist(root: str | Path, source: Path = DEBIAN_FASHION_MNIST_DIR) -> Path:
    """Symlink the four official Fashion-MNIST .gz files from ``source`` into ``<root>/FashionMNIST/raw``.

    Default ``source`` is where Debian's ``dataset-fashion-mnist`` installs them. Returns the raw directory.
    """
    raw = Path(root).expanduser() / "FashionMNIST" / "raw"
    missing = [f"{n}.gz" for n in IDX_FILES if not (source / f"{n}.gz").is_file()]
    if missing:
        raise DataError(
            f"fashion_mnist: {missing[0]} not found in {source} (Debian: apt-get install dataset-fashion-mnist)"
        )
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        link = raw / f"{name}.gz"
        if not link.is_symlink() and not link.exists():
            link.symlink_to((source / f"{name}.gz").resolve())
    return raw


def _load_mnist_family(cfg: DataConfig, name: str, cls_name: str, hint: str = "") -> ImageDataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = data_root(cfg)
    raw = root / cls_name / "raw"  # torchvision's raw_folder: <root>/<class name>/raw
    if raw.is_dir():
        decompress_idx_files(raw)
    parts = {}
    for train in (True, False):
        ds = _open_torchvision(
            name,
            raw,
            IDX_FILES,
            cfg.download,
            partial(cls, root=root, train=train, download=cfg.download),
            hint,
            md5_checked=False,
        )
        parts[train] = (ds.data.unsqueeze(1).contiguous(), ds.targets.to(torch.int64))
    return ImageDataset(
        name=name,
        classes=DIGIT_CLASSES if name == "mnist" else None,
        train_images=parts[True][0],
        train_labels=parts[True][1],
        test_images=parts[False][0],
        test_labels=parts[False][1],
        num_classes=10,
        hflip=False,
    )


@DATASETS.register("mnist")
def load_mnist(cfg: DataConfig) -> ImageDataset:
    """MNIST: 60,000 train / 10,000 test 28x28 greyscale digits from ``<root>/MNIST/raw`` (idx files or .gz)."""
    return _load_mnist_family(cfg, "mnist", "MNIST", ", or copy/symlink the official .gz files there")


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(cfg: DataConfig) -> ImageDataset:
    """Fashion-MNIST: 60,000 train / 10,000 test 28x28 greyscale images, 10 classes, ``<root>/FashionMNIST/raw``.

    The official .gz files may be copied or symlinked there (see ``DEBIAN_FASHION_MNIST_DIR``, ``link_fashion_mnist``).
    """
    hint = (
        f", or copy/symlink the official .gz files there (Debian's dataset-fashion-mnist has them in "
        f"{DEBIAN_FASHION_MNIST_DIR}: ssl_bench.data.vision.link_fashion_mnist(root) links them)"
    )
    return _load_mnist_family(cfg, "fashion_mnist", "FashionMNIST", hint)


# ----------------------------------------------------------------------------------------------------------
# USPS: libsvm text files <root>/usps.bz2 and usps.t.bz2, "label idx:value ...", label 1..10, value in [-1, 1]


def read_usps_bz2(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a USPS libsvm .bz2 file into uint8 (N, 16, 16) images (0..255) and int64 labels 0..9.

    torchvision's USPS stores ``((x + 1) / 2 * 255).astype(uint8)``, which truncates: a value meant as grey level
    k often lands a float32 epsilon below k and becomes k - 1. Here every value is rounded to the nearest level.
    Features absent from a line are 0.0, as the libsvm format defines (torchvision assumes all 256 are present).
    """
    with bz2.open(path, "rt") as f:
        lines = [line.split() for line in f if line.strip()]
    values = np.zeros((len(lines), 256), dtype=np.float64)
    labels = np.empty(len(lines), dtype=np.int64)
    for i, tokens in enumerate(lines):
        labels[i] = int(float(tokens[0])) - 1
        if len(tokens) > 1:
            index, value = zip(*(t.split(":") for t in tokens[1:]), strict=True)
            values[i, np.asarray(index, dtype=np.int64) - 1] = np.asarray(value, dtype=np.float64)
    images = np.rint((values + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return images.reshape(-1, 16, 16), labels


@DATASETS.register("usps")
def load_usps(cfg: DataConfig) -> ImageDataset:
    """USPS: 7,291 train / 2,007 test 16x16 greyscale digits from ``<root>/usps.bz2`` and ``<root>/usps.t.bz2``.

    torchvision's USPS downloads the files (when asked); the pixels are then read by :func:`read_usps_bz2`, which
    rounds where torchvision truncates.
    """
    from torchvision.datasets import USPS

    root = data_root(cfg)
    expected = [USPS.split_list[s][1] for s in ("train", "test")]
    parts = {}
    for train, filename in ((True, expected[0]), (False, expected[1])):
        path = root / filename
        if not path.is_file():
            # without download this raises the missing-files error; with it, torchvision's USPS fetches the file
            # (and parses it, truncating: its pixels are discarded for read_usps_bz2's)
            _open_torchvision(
                "usps", root, expected, cfg.download, partial(USPS, root=root, train=train, download=cfg.download)
            )
        try:
            images, labels = read_usps_bz2(path)
        except (OSError, EOFError, ValueError, IndexError) as exc:
            raise DataError(f"usps: cannot read {path} ({_one_line(exc)}); delete it and {DOWNLOAD_HINT}") from None
        parts[train] = (to_uint8_nchw(images, "NHW"), torch.from_numpy(labels))
    return ImageDataset(
        name="usps",
        classes=DIGIT_CLASSES,
        train_images=parts[True][0],
        train_labels=parts[True][1],
        test_images=parts[False][0],
        test_labels=parts[False][1],
        num_classes=10,
        hflip=False,
    )
