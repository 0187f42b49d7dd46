"""Writers of tiny fake datasets in the real on-disk formats torchvision reads (CIFAR, SVHN, STL-10, idx, USPS).

Formats from torchvision.datasets (cifar.py, svhn.py, stl10.py, mnist.py, usps.py) and the datasets' own pages:
cs.toronto.edu/~kriz/cifar.html, ufldl.stanford.edu/housenumbers, cs.stanford.edu/~acoates/stl10,
yann.lecun.com/exdb/mnist (idx), csie.ntu.edu.tw/~cjlin/libsvmtools/datasets (USPS, libsvm text).
Every writer returns what it wrote as uint8 (N, C, H, W) images and int64 labels in the loader's conventions, plus
the md5 of each written file, so tests can point torchvision's checksum tables at the fakes.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Written:
    """What a writer put on disk, in the loader's conventions (NCHW uint8, class ids 0..C-1)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    md5: dict[str, str] = field(default_factory=dict)  # file name -> md5 hex digest
    unlabeled: np.ndarray | None = None
    extra_images: np.ndarray | None = None
    extra_labels: np.ndarray | None = None


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _images(rng: np.random.Generator, n: int, c: int, h: int, w: int | None = None) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, h, w or h), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------
# CIFAR: pickled dicts; "data" is (N, 3072) uint8, each row 1,024 R then G then B values, each plane row-major


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), 3 * 32 * 32)


def _dump(path: Path, obj: dict) -> str:
    # protocol 2 like the official (Python 2) pickles; torchvision loads them with encoding="latin1"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return md5_of(path)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> Written:
    """``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    md5 = {}
    train_images, train_labels = [], []
    for b in range(1, 6):
        images, labels = _images(rng, per_batch, 3, 32), rng.integers(0, 10, per_batch)
        obj = {
            "batch_label": f"training batch {b} of 5",
            "labels": [int(v) for v in labels],
            "data": _cifar_rows(images),
            "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)],
        }
        md5[f"data_batch_{b}"] = _dump(folder / f"data_batch_{b}", obj)
        train_images.append(images)
        train_labels.append(labels)
    test_images, test_labels = _images(rng, n_test, 3, 32), rng.integers(0, 10, n_test)
    obj = {
        "batch_label": "testing batch 1 of 1",
        "labels": [int(v) for v in test_labels],
        "data": _cifar_rows(test_images),
        "filenames": [f"test_{i}.png" for i in range(n_test)],
    }
    md5["test_batch"] = _dump(folder / "test_batch", obj)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}
    md5["batches.meta"] = _dump(folder / "batches.meta", meta)
    return Written(
        np.concatenate(train_images), np.concatenate(train_labels).astype(np.int64), test_images,
        test_labels.astype(np.int64), md5,
    )  # fmt: skip


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 10, seed: int = 1) -> Written:
    """``<root>/cifar-100-python/{train, test, meta}`` with fine (0..99) and coarse (0..19) labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    md5 = {}
    parts = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = _images(rng, n, 3, 32)
        fine = rng.integers(0, 100, n)
        fine[0] = 99  # the top class id must survive the round trip
        coarse = fine // 5  # differs from fine, so reading the wrong key shows
        obj = {
            "filenames": [f"{split}_{i}.png" for i in range(n)],
            "batch_label": f"{split} batch",
            "fine_labels": [int(v) for v in fine],
            "coarse_labels": [int(v) for v in coarse],
            "data": _cifar_rows(images),
        }
        md5[split] = _dump(folder / split, obj)
        parts[split] = (images, fine.astype(np.int64))
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    md5["meta"] = _dump(folder / "meta", meta)
    return Written(*parts["train"], *parts["test"], md5)


# ----------------------------------------------------------------------------------------------------------
# SVHN: MATLAB v5 files, X (32, 32, 3, N) uint8 = (H, W, C, N), y (N, 1) with digit 0 stored as 10


def _svhn_mat(path: Path, images: np.ndarray, digits: np.ndarray) -> str:
    import scipy.io

    stored = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)), "y": stored})
    return md5_of(path)


def write_svhn(root: Path, n_train: int = 20, n_test: int = 10, n_extra: int = 6, seed: int = 2) -> Written:
    """``<root>/{train,test,extra}_32x32.mat``; labels returned as torchvision gives them (digit d = class d)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    md5 = {}
    parts = {}
    for split, n in (("train", n_train), ("test", n_test), ("extra", n_extra)):
        images = _images(rng, n, 3, 32)
        digits = np.arange(n) % 10  # every digit, 0 included, in every split
        rng.shuffle(digits)
        md5[f"{split}_32x32.mat"] = _svhn_mat(root / f"{split}_32x32.mat", images, digits)
        parts[split] = (images, digits.astype(np.int64))
    return Written(*parts["train"], *parts["test"], md5, extra_images=parts["extra"][0], extra_labels=parts["extra"][1])


# ----------------------------------------------------------------------------------------------------------
# STL-10: raw uint8 binaries; each image is 3 planes of 96x96 stored column-major; labels 1..10, one byte each


def stl10_bytes(images: np.ndarray) -> bytes:
    """(N, 3, 96, 96) -> the STL-10 byte order: plane by plane, column by column."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


def write_stl10(root: Path, n_train: int = 12, n_test: int = 8, n_unlabeled: int = 5, seed: int = 3) -> Written:
    """``<root>/stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin, class_names.txt, fold_indices.txt``."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    md5 = {}
    train, test, unlabeled = _images(rng, n_train, 3, 96), _images(rng, n_test, 3, 96), _images(rng, n_unlabeled, 3, 96)
    train_labels, test_labels = np.arange(n_train) % 10, rng.integers(0, 10, n_test)
    train_labels[-1] = 9  # class 10 on disk
    for name, data in (
        ("train_X.bin", stl10_bytes(train)),
        ("train_y.bin", (train_labels + 1).astype(np.uint8).tobytes()),
        ("test_X.bin", stl10_bytes(test)),
        ("test_y.bin", (test_labels + 1).astype(np.uint8).tobytes()),
        ("unlabeled_X.bin", stl10_bytes(unlabeled)),
    ):
        (folder / name).write_bytes(data)
        md5[name] = md5_of(folder / name)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    folds = [" ".join(str(i) for i in range(k % n_train, n_train, 3)) for k in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(folds) + "\n")
    return Written(train, train_labels.astype(np.int64), test, test_labels.astype(np.int64), md5, unlabeled=unlabeled)


# ----------------------------------------------------------------------------------------------------------
# MNIST family: idx files, big-endian header (0, 0, type 0x08 = ubyte, ndim) + ndim int32 sizes, then the data


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(
    raw: Path, n_train: int = 20, n_test: int = 10, seed: int = 4, gz: bool = False, plain: bool = True
) -> Written:
    """The four idx files of an MNIST-family dataset into ``raw``, uncompressed (``plain``) and/or as ``.gz``."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _images(rng, n, 1, 28), (np.arange(n) * 7) % 10
        for kind, array in (("images-idx3", images[:, 0]), ("labels-idx1", labels)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if plain:
                (raw / name).write_bytes(data)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        parts[prefix] = (images, labels.astype(np.int64))
    return Written(*parts["train"], *parts["t10k"])


# ----------------------------------------------------------------------------------------------------------
# USPS: bz2-compressed libsvm text, "label 1:v1 2:v2 ... 256:v256" per image, label = digit + 1, v in [-1, 1]


def usps_value(level: int) -> str:
    """Grey level 0..255 as the file's [-1, 1] value (6 decimals, like the libsvm files)."""
    return f"{level / 127.5 - 1.0:.6f}"


def write_usps(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 5, drop_zero: bool = True) -> Written:
    """``<root>/usps.bz2`` and ``<root>/usps.t.bz2``.

    Train image 1 holds every grey level 0..255 in pixel order (so a truncating conversion shows). With
    ``drop_zero`` train image 0 omits every odd-numbered feature (libsvm's sparse form: an omitted feature is 0.0);
    those pixels read back as level 128, (0 + 1) * 127.5 rounded half to even, and are returned as such.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    md5 = {}
    parts = {}
    for split, filename, n in (("train", "usps.bz2", n_train), ("test", "usps.t.bz2", n_test)):
        images = _images(rng, n, 1, 16)
        if split == "train":
            images[1, 0] = np.arange(256, dtype=np.uint8).reshape(16, 16)
        digits = np.arange(n) % 10
        lines = []
        for i in range(n):
            pairs = [(k + 1, usps_value(int(v))) for k, v in enumerate(images[i, 0].reshape(-1))]
            if split == "train" and i == 0 and drop_zero:
                pairs = [(k, v) for k, v in pairs if k % 2 == 0]
                images[i, 0].reshape(-1)[0::2] = 128  # features 1, 3, 5, ... = pixels 0, 2, 4, ... in row-major order
            lines.append(f"{digits[i] + 1} " + " ".join(f"{k}:{v}" for k, v in pairs))
        (root / filename).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
        md5[filename] = md5_of(root / filename)
        parts[split] = (images, digits.astype(np.int64))
    return Written(*parts["train"], *parts["test"], md5)
