"""Tests of the torchvision-backed loaders on tiny fake files in the real formats, and on real Fashion-MNIST.

The fakes come from tests/data/fake_formats.py; torchvision's md5 tables are pointed at them per test (monkeypatch),
so the library keeps torchvision's real integrity checks. No test downloads anything.
"""

from __future__ import annotations

import gzip
import pickle
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets as tvd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fake_formats helper beside this file, any import mode

from fake_formats import (
    Written,
    write_cifar10,
    write_cifar100,
    write_idx,
    write_stl10,
    write_svhn,
    write_usps,
)

from ssl_bench.config import DataConfig
from ssl_bench.data import load_dataset
from ssl_bench.data.images import ImageDataset
from ssl_bench.data.vision import DEBIAN_FASHION_MNIST_DIR, decompress_idx_files, link_fashion_mnist
from ssl_bench.errors import DataError


def point_md5s_at(monkeypatch: pytest.MonkeyPatch, cls: type, md5: dict[str, str]) -> None:
    """Make torchvision's checksum tables of ``cls`` expect the fake files' md5s (for this test only)."""
    for attr in ("train_list", "test_list"):
        if attr in vars(cls):
            monkeypatch.setattr(cls, attr, [[name, md5[name]] for name, _ in getattr(cls, attr)])
    if "meta" in vars(cls):
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
    if "split_list" in vars(cls):
        table = {split: [url, name, md5.get(name, old)] for split, (url, name, old) in cls.split_list.items()}
        monkeypatch.setattr(cls, "split_list", table)


def load(name: str, root: str | Path, **kw: object) -> ImageDataset:
    return load_dataset(DataConfig(dataset=name, root=str(root), **kw))


def assert_matches(ds: ImageDataset, w: Written, num_classes: int, hflip: bool, shape: tuple[int, int, int]) -> None:
    assert ds.train_images.dtype == torch.uint8
    assert ds.test_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64
    assert ds.test_labels.dtype == torch.int64
    assert tuple(ds.train_images.shape) == (len(w.train_images), *shape)
    assert tuple(ds.test_images.shape) == (len(w.test_images), *shape)
    assert ds.train_images.is_contiguous()
    np.testing.assert_array_equal(ds.train_images.numpy(), w.train_images)
    np.testing.assert_array_equal(ds.test_images.numpy(), w.test_images)
    np.testing.assert_array_equal(ds.train_labels.numpy(), w.train_labels)
    np.testing.assert_array_equal(ds.test_labels.numpy(), w.test_labels)
    assert ds.num_classes == num_classes
    assert ds.hflip is hflip


def assert_one_line_error(exc: DataError, *needles: str) -> None:
    msg = str(exc)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert "download=True" not in msg  # torchvision's own advice names a Python argument the CLI user cannot pass


# ----------------------------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = write_cifar10(tmp_path)
    point_md5s_at(monkeypatch, tvd.CIFAR10, w.md5)
    ds = load("cifar10", tmp_path)
    assert_matches(ds, w, 10, True, (3, 32, 32))
    assert ds.name == "cifar10"
    assert ds.unlabeled is None
    # independent of the writer's arrays: raw row of batch 2, image 1 -> train image 4 + 1 (batches kept in order)
    entry = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_2").read_bytes(), encoding="latin1")
    row = entry["data"][1]
    for c, h, x in ((0, 0, 0), (1, 5, 31), (2, 31, 7), (0, 17, 3)):
        assert ds.train_images[5, c, h, x] == row[c * 1024 + h * 32 + x]
    assert ds.train_labels[5] == entry["labels"][1]


def test_cifar100_uses_fine_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = write_cifar100(tmp_path)
    point_md5s_at(monkeypatch, tvd.CIFAR100, w.md5)
    ds = load("cifar100", tmp_path)
    assert_matches(ds, w, 100, True, (3, 32, 32))
    assert ds.train_labels[0] == 99
    entry = pickle.loads((tmp_path / "cifar-100-python" / "test").read_bytes(), encoding="latin1")
    assert ds.test_labels.tolist() == entry["fine_labels"] != entry["coarse_labels"]
    assert ds.test_images[3, 2, 9, 30] == entry["data"][3][2 * 1024 + 9 * 32 + 30]


def test_cifar_keeps_torchvision_md5_check(tmp_path: Path) -> None:
    write_cifar10(tmp_path)  # torchvision's real md5 table: the fake files must be rejected
    with pytest.raises(DataError) as err:
        load("cifar10", tmp_path)
    assert_one_line_error(err.value, "cifar10", str(tmp_path / "cifar-10-batches-py"), "md5", "--download")


def test_cifar_partially_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = write_cifar10(tmp_path)
    point_md5s_at(monkeypatch, tvd.CIFAR10, w.md5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError) as err:
        load("cifar10", tmp_path)
    assert_one_line_error(err.value, "1 of 7", "data_batch_3", str(tmp_path), "--download")


def test_download_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    # torchvision's cifar and mnist modules imported the helper by name: patch it where they look it up
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        load("cifar10", tmp_path / "a", download=True)
    assert_one_line_error(err.value, "cifar10", "could not download", "no network", str(tmp_path / "a"))
    with pytest.raises(DataError) as err:  # MNIST's multi-line "tried every mirror" message, flattened
        load("mnist", tmp_path / "b", download=True)
    assert_one_line_error(err.value, "mnist", "could not download", str(tmp_path / "b" / "MNIST" / "raw"))


# ----------------------------------------------------------------------------------------------------------
# SVHN


def test_svhn_round_trip_and_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = write_svhn(tmp_path)
    point_md5s_at(monkeypatch, tvd.SVHN, w.md5)
    ds = load("svhn", tmp_path)
    assert_matches(ds, w, 10, False, (3, 32, 32))
    mat = scipy.io.loadmat(tmp_path / "train_32x32.mat")
    x, y = mat["X"], mat["y"][:, 0]
    assert x.shape == (32, 32, 3, 20)
    assert (y == 10).any()
    assert not (y == 0).any()
    for n, c, h, col in ((0, 0, 0, 0), (7, 2, 31, 4), (19, 1, 3, 30)):
        assert ds.train_images[n, c, h, col] == x[h, col, c, n]
    np.testing.assert_array_equal(ds.train_labels.numpy(), np.where(y == 10, 0, y))  # digit 0 = class 0

    extra = load("svhn", tmp_path, extra=True)
    assert len(extra.train_images) == 20 + 6
    np.testing.assert_array_equal(extra.train_images[:20].numpy(), w.train_images)
    np.testing.assert_array_equal(extra.train_images[20:].numpy(), w.extra_images)
    np.testing.assert_array_equal(extra.train_labels[20:].numpy(), w.extra_labels)
    np.testing.assert_array_equal(extra.test_images.numpy(), w.test_images)


def test_svhn_extra_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = write_svhn(tmp_path)
    point_md5s_at(monkeypatch, tvd.SVHN, w.md5)
    (tmp_path / "extra_32x32.mat").unlink()
    assert len(load("svhn", tmp_path).train_images) == 20  # extra not asked for: not needed
    with pytest.raises(DataError) as err:
        load("svhn", tmp_path, extra=True)
    assert_one_line_error(err.value, "svhn", "extra_32x32.mat", str(tmp_path), "--download")


# ----------------------------------------------------------------------------------------------------------
# STL-10


def test_stl10_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = write_stl10(tmp_path)
    point_md5s_at(monkeypatch, tvd.STL10, w.md5)
    ds = load("stl10", tmp_path)
    assert_matches(ds, w, 10, True, (3, 96, 96))
    assert ds.unlabeled is not None
    assert ds.unlabeled.dtype == torch.uint8
    assert tuple(ds.unlabeled.shape) == (5, 3, 96, 96)
    np.testing.assert_array_equal(ds.unlabeled.numpy(), w.unlabeled)
    # independent of the writer: byte (n, c, col, row) of the column-major file is pixel (row, col)
    folder = tmp_path / "stl10_binary"
    raw = np.fromfile(folder / "train_X.bin", dtype=np.uint8)
    for n, c, row, col in ((0, 0, 0, 1), (3, 1, 10, 80), (11, 2, 95, 0)):
        assert ds.train_images[n, c, row, col] == raw[n * 27648 + c * 9216 + col * 96 + row]
    raw_u = np.fromfile(folder / "unlabeled_X.bin", dtype=np.uint8)
    assert ds.unlabeled[4, 2, 7, 60] == raw_u[4 * 27648 + 2 * 9216 + 60 * 96 + 7]
    file_labels = np.fromfile(folder / "train_y.bin", dtype=np.uint8)
    assert file_labels.min() == 1
    assert file_labels.max() == 10
    np.testing.assert_array_equal(ds.train_labels.numpy(), file_labels.astype(np.int64) - 1)


def test_stl10_keeps_torchvision_md5_check(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    with pytest.raises(DataError) as err:
        load("stl10", tmp_path)
    assert_one_line_error(err.value, "stl10", str(tmp_path / "stl10_binary"), "md5")


# ----------------------------------------------------------------------------------------------------------
# MNIST family


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_round_trip(tmp_path: Path, name: str, folder: str) -> None:
    w = write_idx(tmp_path / folder / "raw")
    ds = load(name, tmp_path)
    assert_matches(ds, w, 10, False, (1, 28, 28))
    raw = (tmp_path / folder / "raw" / "t10k-images-idx3-ubyte").read_bytes()
    for n, row, col in ((0, 0, 0), (4, 13, 27), (9, 27, 5)):
        assert ds.test_images[n, 0, row, col] == raw[16 + n * 784 + row * 28 + col]
    labels = (tmp_path / folder / "raw" / "train-labels-idx1-ubyte").read_bytes()
    assert ds.train_labels.tolist() == list(labels[8:])


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_reads_official_gz(tmp_path: Path, name: str, folder: str) -> None:
    raw = tmp_path / folder / "raw"
    w = write_idx(raw, gz=True, plain=False)
    ds = load(name, tmp_path)
    assert_matches(ds, w, 10, False, (1, 28, 28))
    for f in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # decompressed next to the .gz files
        assert (raw / f).is_file()
        assert (raw / f"{f}.gz").is_file()
    assert not [p for p in raw.iterdir() if p.name.startswith("tmp")]  # no temporary file left behind


def test_uncompressed_idx_wins_over_gz(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    plain = write_idx(raw, seed=10)
    write_idx(raw, seed=11, gz=True, plain=False)
    np.testing.assert_array_equal(load("mnist", tmp_path).train_images.numpy(), plain.train_images)


def test_bad_gz_names_the_file(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw, gz=True, plain=False)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as err:
        decompress_idx_files(raw)
    assert_one_line_error(err.value, str(raw / "train-labels-idx1-ubyte.gz"))
    assert not (raw / "train-labels-idx1-ubyte").exists()
    assert not [p for p in raw.iterdir() if p.name.startswith("tmp")]  # the partial output was removed


def test_corrupt_idx_is_a_read_error(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw)
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[:1000])  # truncated: fewer pixels than the header says
    with pytest.raises(DataError) as err:
        load("mnist", tmp_path)
    assert_one_line_error(err.value, "mnist", "cannot read", str(raw))


def test_link_fashion_mnist_helper(tmp_path: Path) -> None:
    source = tmp_path / "debian"
    w = write_idx(source, gz=True, plain=False)
    raw = link_fashion_mnist(tmp_path / "root", source=source)
    assert raw == tmp_path / "root" / "FashionMNIST" / "raw"
    assert all((raw / f).is_symlink() for f in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    ds = load("fashion_mnist", tmp_path / "root")
    assert_matches(ds, w, 10, False, (1, 28, 28))
    assert sorted(p.name for p in source.iterdir()) == sorted(p.name for p in raw.glob("*.gz"))  # source untouched
    with pytest.raises(DataError) as err:
        link_fashion_mnist(tmp_path / "other", source=tmp_path / "nowhere")
    assert_one_line_error(err.value, str(tmp_path / "nowhere"))


def test_debian_path_constant() -> None:
    assert Path("/usr/share/datasets/fashion-mnist") == DEBIAN_FASHION_MNIST_DIR


def _read_gz_idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real Fashion-MNIST not installed in {DEBIAN_FASHION_MNIST_DIR} (Debian package dataset-fashion-mnist)",
)
def test_real_fashion_mnist(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{f}.gz").symlink_to(DEBIAN_FASHION_MNIST_DIR / f"{f}.gz")  # the way a user would link them
    ds = load("fashion_mnist", tmp_path)
    assert tuple(ds.train_images.shape) == (60000, 1, 28, 28)
    assert tuple(ds.test_images.shape) == (10000, 1, 28, 28)
    assert ds.num_classes == 10
    assert ds.hflip is False
    assert torch.bincount(ds.train_labels, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels, minlength=10).tolist() == [1000] * 10
    # golden values from an independent reader (gzip + numpy, idx headers of 16 and 8 bytes)
    images = _read_gz_idx(DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _read_gz_idx(DEBIAN_FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz", 8)
    test_images = _read_gz_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    assert int(ds.train_images[0].sum()) == int(images[0].sum(dtype=np.int64))
    assert ds.train_labels[:10].tolist() == labels[:10].tolist()
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), images)
    np.testing.assert_array_equal(ds.train_labels.numpy(), labels)
    np.testing.assert_array_equal(ds.test_images[:, 0].numpy(), test_images)


# ----------------------------------------------------------------------------------------------------------
# USPS


def test_usps_rounds_where_torchvision_truncates(tmp_path: Path) -> None:
    w = write_usps(tmp_path)
    ds = load("usps", tmp_path)
    assert_matches(ds, w, 10, False, (1, 16, 16))
    np.testing.assert_array_equal(ds.train_images[1, 0].numpy().reshape(-1), np.arange(256))  # every level exact
    assert ds.train_images[0, 0, 0, 0] == 128
    assert ds.train_images[0, 0, 0, 2] == 128
    assert ds.train_labels[:10].tolist() == list(range(10))  # file label d + 1 -> class d
    # the reasons for our own reader: torchvision's USPS cannot read sparse lines, and truncates on dense ones
    with pytest.raises(ValueError, match="inhomogeneous"):
        tvd.USPS(root=tmp_path, train=True, download=False)
    write_usps(tmp_path / "dense", drop_zero=False)
    truncated = tvd.USPS(root=tmp_path / "dense", train=True, download=False).data
    assert (truncated[1].reshape(-1).astype(int) != np.arange(256)).any()
    np.testing.assert_array_equal(
        load("usps", tmp_path / "dense").train_images[1, 0].numpy().reshape(-1), np.arange(256)
    )


# ----------------------------------------------------------------------------------------------------------
# shared behaviour


LOCATIONS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "svhn": "",
    "stl10": "stl10_binary",
    "mnist": "MNIST/raw",
    "fashion_mnist": "FashionMNIST/raw",
    "usps": "",
}


@pytest.mark.parametrize("name", sorted(LOCATIONS))
def test_missing_files_without_download(tmp_path: Path, name: str) -> None:
    root = tmp_path / f"empty_{name}"
    with pytest.raises(DataError) as err:
        load(name, root)
    location = str((root / LOCATIONS[name]) if LOCATIONS[name] else root)
    assert_one_line_error(err.value, f"{name}:", location, "pass --download (or set data.download = true)")
    assert not root.exists()  # nothing created, nothing fetched


def test_root_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    w = write_usps(tmp_path / "tvdata")
    ds = load("usps", "~/tvdata")
    np.testing.assert_array_equal(ds.test_images.numpy(), w.test_images)
    with pytest.raises(DataError) as err:
        load("cifar10", "~/nothing")
    assert_one_line_error(err.value, str(tmp_path / "nothing"))


# ----------------------------------------------------------------------------------------------------------
# domain pairs over the torchvision-backed datasets


def test_mnist_usps_pair_brings_both_domains_to_one_side(tmp_path: Path) -> None:
    from ssl_bench.data.images import resize_images
    from ssl_bench.data.pairs import load_pair

    mnist = write_idx(tmp_path / "MNIST" / "raw", n_train=20, n_test=10)
    usps = write_usps(tmp_path, n_train=20, n_test=10)
    pair = load_pair(DataConfig(setting="uda", source="mnist", target="usps", root=str(tmp_path)))
    assert pair.name == "mnist-usps" and pair.n_source == 20
    assert tuple(pair.train_images.shape) == (40, 1, 32, 32)  # the pair's default side; both grey: one channel
    np.testing.assert_array_equal(
        pair.train_images[:20].numpy(), resize_images(torch.from_numpy(mnist.train_images), 32).numpy()
    )
    np.testing.assert_array_equal(
        pair.train_images[20:].numpy(), resize_images(torch.from_numpy(usps.train_images), 32).numpy()
    )
    np.testing.assert_array_equal(pair.train_labels.numpy(), np.concatenate([mnist.train_labels, usps.train_labels]))
    np.testing.assert_array_equal(pair.test_labels.numpy(), usps.test_labels)  # scored on the target's test set
    assert tuple(pair.test_images.shape) == (10, 1, 32, 32)


def test_svhn_mnist_pair_repeats_grey_to_rgb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_bench.data.pairs import load_pair

    svhn = write_svhn(tmp_path)
    point_md5s_at(monkeypatch, tvd.SVHN, svhn.md5)
    mnist = write_idx(tmp_path / "MNIST" / "raw", n_train=20, n_test=10)
    pair = load_pair(DataConfig(setting="uda", source="svhn", target="mnist", root=str(tmp_path), image_size=28))
    assert tuple(pair.train_images.shape) == (40, 3, 28, 28)
    target = pair.train_images[20:]
    np.testing.assert_array_equal(target[:, 0].numpy(), mnist.train_images[:, 0])  # 28 px: no resize
    assert torch.equal(target[:, 0], target[:, 1]) and torch.equal(target[:, 0], target[:, 2])
    grey = load_pair(
        DataConfig(setting="uda", source="svhn", target="mnist", root=str(tmp_path), image_size=28, channels=1)
    )
    assert tuple(grey.train_images.shape) == (40, 1, 28, 28)


def test_pair_with_missing_files_names_the_domain(tmp_path: Path) -> None:
    from ssl_bench.data.pairs import load_pair

    write_usps(tmp_path)
    with pytest.raises(DataError) as err:
        load_pair(DataConfig(setting="uda", source="mnist", target="usps", root=str(tmp_path / "nowhere")))
    assert_one_line_error(err.value, "mnist", "--download")
